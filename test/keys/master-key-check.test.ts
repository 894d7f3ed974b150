import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/env.ts';
import { userApiKeys, users, type Provider } from '../../src/db/schema/index.ts';
import { decryptUserKey, encryptUserKey } from '../../src/keys/encryption.ts';
import {
  describeMissingMasterKeyVersions,
  findMasterKeyFiles,
  reportMasterKeyMismatches,
  reportMissingMasterKeyVersions,
} from '../../src/keys/master-key-check.ts';
import { generatedMasterKeyFile, Keyring } from '../../src/keys/master-keys.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';
import { startServiceProcess } from '../helpers/service.ts';

const material = (version: number) => ({ version, key: new Uint8Array(randomBytes(32)) });
const v1 = material(1);
const v2 = material(2);
const otherV1 = material(1);

let context: TestContext;

/** User ids by login. */
const userIds = new Map<string, string>();

async function addKey(keyring: Keyring, login: string, provider: Provider): Promise<string> {
  const [user] = await context.db.insert(users).values({ login }).returning();
  userIds.set(login, user!.id);
  const key = `${provider === 'groq' ? 'gsk_' : 'AIza'}check${login}${randomBytes(12).toString('hex')}`;
  const encrypted = await encryptUserKey(keyring, { userId: user!.id, provider }, key);
  const [row] = await context.db
    .insert(userApiKeys)
    .values({ userId: user!.id, provider, ...encrypted, lastFour: key.slice(-4) })
    .returning();
  return row!.id;
}

/** Parses the JSON log lines of `event` in a service's output. */
function eventLines(output: string, event: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((line) => line.includes(`"event":"${event}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function mismatchLines() {
  return logsOf(context, 'master_key.mismatch');
}

beforeAll(async () => {
  context = await createTestContext({}, { keyring: new Keyring([v1]) });
  await addKey(context.keyring, 'checka', 'groq');
  await addKey(context.keyring, 'checkb', 'gemini');
});

afterAll(async () => {
  await context?.close();
});

describe('master key check at start', () => {
  it('passes the key the rows were encrypted with', async () => {
    const before = mismatchLines().length;
    const mismatched = await reportMasterKeyMismatches(context.db, new Keyring([v1]), context.logger, null);
    expect(mismatched).toEqual([]);
    expect(mismatchLines()).toHaveLength(before);
  });

  it('reports another key of the same version', async () => {
    const before = mismatchLines().length;
    const mismatched = await reportMasterKeyMismatches(context.db, new Keyring([otherV1]), context.logger, null);
    expect(mismatched).toEqual([1]);
    const lines = mismatchLines().slice(before);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe(50);
    expect(lines[0]!.version).toBe(1);
    expect(lines[0]!.triedKeys).toBe(2);
    expect(lines[0]!.msg).toContain('Master key version 1 decrypts none of the 2 stored provider keys');
    expect(lines[0]!.msg).toContain('Set version 1 in MASTER_KEYS (or MASTER_KEY) to its original key');
    expect(lines[0]!.msg).toContain(
      'Until then, previews leave out the stored keys of this version, without marking them ' +
        'unusable, and users cannot save own keys. If the original key is lost, "fixwright keys ' +
        'discard --version 1 --dry-run" lists the keys that it cannot decrypt, and the same ' +
        'command without --dry-run deletes them.',
    );
  });

  it('names the key file that MASTER_KEY replaced', async () => {
    const before = mismatchLines().length;
    const file = '/srv/fixwright/data/master-key';
    const keyring = new Keyring([otherV1]);
    const mismatched = await reportMasterKeyMismatches(context.db, keyring, context.logger, null, file);
    expect(mismatched).toEqual([1]);
    const message = String(mismatchLines().slice(before)[0]!.msg);
    expect(message).toContain(
      'Set version 1 in MASTER_KEYS (or MASTER_KEY) to its original key and restart. The key ' +
        `generated in ${file}, used while MASTER_KEY and MASTER_KEYS were unset, is version 1 of ` +
        `the keys saved then: set MASTER_KEY to $(cat ${file}), or list it in MASTER_KEYS as ` +
        `1:$(cat ${file}).`,
    );
  });

  it('names the generated key file', async () => {
    const before = mismatchLines().length;
    const file = '/srv/fixwright/data/master-key';
    const mismatched = await reportMasterKeyMismatches(context.db, new Keyring([otherV1]), context.logger, file);
    expect(mismatched).toEqual([1]);
    const message = String(mismatchLines().slice(before)[0]!.msg);
    expect(message).toContain(`read from ${file} because MASTER_KEY and MASTER_KEYS are unset`);
    expect(message).toContain('restore the file from a backup');
  });

  it('skips versions no stored key uses', async () => {
    const mismatched = await reportMasterKeyMismatches(context.db, new Keyring([v2, v1]), context.logger, null);
    expect(mismatched).toEqual([]);
  });

  it('passes when one sampled row is damaged', async () => {
    const damagedId = await addKey(context.keyring, 'checkc', 'groq');
    await context.db
      .update(userApiKeys)
      .set({ ciphertext: randomBytes(48).toString('base64url') })
      .where(eq(userApiKeys.id, damagedId));
    const mismatched = await reportMasterKeyMismatches(context.db, new Keyring([v1]), context.logger, null);
    expect(mismatched).toEqual([]);
    await context.db.delete(userApiKeys).where(eq(userApiKeys.id, damagedId));
  });

  it('words a single stored key', async () => {
    await addKey(new Keyring([v2]), 'checkd', 'groq');
    const before = mismatchLines().length;
    const mismatched = await reportMasterKeyMismatches(context.db, new Keyring([material(2)]), context.logger, null);
    expect(mismatched).toEqual([2]);
    const message = String(mismatchLines().slice(before)[0]!.msg);
    expect(message).toContain('Master key version 2 does not decrypt the one stored provider key that uses it');
    expect(message).toContain('Set version 2 in MASTER_KEYS to its original key');
  });

  it('logs the mismatch when the service starts', async () => {
    const service = await startServiceProcess({
      DATABASE_URL: context.database.url,
      MASTER_KEY: Buffer.from(otherV1.key).toString('base64'),
    });
    try {
      const lines = eventLines(service.output(), 'master_key.mismatch');
      expect(lines).toHaveLength(1);
      expect(lines[0]!.version).toBe(1);
      expect(lines[0]!.triedKeys).toBe(2);
      expect((await fetch(`${service.url}/healthz`)).status).toBe(200);

      // The service treats version 1 as one it does not have: it shows why the key cannot be
      // used, marks nothing, and refuses to encrypt under the wrong key.
      const { token } = await mintApiToken(context.db, userIds.get('checka')!, 'test');
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const listed = await fetch(`${service.url}/api/user/keys`, { headers });
      const body = (await listed.json()) as { keys: { unusableReason: string }[]; storageAvailable: boolean };
      expect(body.storageAvailable).toBe(false);
      expect(body.keys[0]!.unusableReason).toContain(
        "Your saved Groq key is encrypted under master key version 1, and this server's master key version 1 does not match it.",
      );
      const saved = await fetch(`${service.url}/api/user/keys/groq`, {
        method: 'PUT',
        headers,
        body: JSON.stringify({ key: `gsk_checkReplacement${randomBytes(12).toString('hex')}` }),
      });
      expect(saved.status).toBe(503);
      const refusal = (await saved.json()) as { error: { code: string; message: string } };
      expect(refusal.error.code).toBe('not_configured');
      expect(refusal.error.message).toMatch(/^Own keys cannot be saved now: this server's master key version 1 does not match/);
      const [row] = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, userIds.get('checka')!));
      expect(row!.unusableCause).toBeNull();
      expect(await decryptUserKey(new Keyring([v1]), { userId: row!.userId, provider: 'groq' }, row!)).toMatch(/^gsk_checkchecka/);
    } finally {
      await service.stop();
    }
  }, 60_000);
});

describe('stored key versions at start', () => {
  let versions: TestContext;

  /** Stores a key of a new user under `keyring`'s newest version. */
  async function storeKey(keyring: Keyring, login: string) {
    const [user] = await versions.db.insert(users).values({ login }).returning();
    const key = `gsk_version${login}${randomBytes(12).toString('hex')}`;
    const encrypted = await encryptUserKey(keyring, { userId: user!.id, provider: 'groq' }, key);
    await versions.db
      .insert(userApiKeys)
      .values({ userId: user!.id, provider: 'groq', ...encrypted, lastFour: key.slice(-4) });
  }

  function missingLines() {
    return logsOf(versions, 'master_key.version_missing');
  }

  beforeAll(async () => {
    versions = await createTestContext({}, { keyring: new Keyring([v2, v1]) });
    await storeKey(new Keyring([v1]), 'versiona');
    await storeKey(new Keyring([v2]), 'versionb');
    await storeKey(new Keyring([v2]), 'versionc');
  });

  afterAll(async () => {
    await versions?.close();
  });

  it('passes when every version is configured', async () => {
    const before = missingLines().length;
    const missing = await reportMissingMasterKeyVersions(versions.db, new Keyring([v2, v1]), versions.logger, { read: null });
    expect(missing).toEqual([]);
    expect(missingLines()).toHaveLength(before);
  });

  it('names the version the key file lacks', async () => {
    const before = missingLines().length;
    const file = '/srv/fixwright/data/master-key';
    const missing = await reportMissingMasterKeyVersions(versions.db, new Keyring([v1]), versions.logger, { read: file });
    expect(missing).toEqual([2]);
    const lines = missingLines().slice(before);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe(40);
    expect(lines[0]!.storedVersions).toEqual([
      { version: 2, keys: 2 },
      { version: 1, keys: 1 },
    ]);
    expect(lines[0]!.configuredVersions).toEqual([1]);
    expect(lines[0]!.missingVersions).toEqual([2]);
    expect(lines[0]!.msg).toBe(
      'Stored provider keys use master key versions 2 (2 keys) and 1 (1 key), but version 2 is ' +
        'not configured. MASTER_KEY and MASTER_KEYS are unset, so this process has only master ' +
        `key version 1, read from ${file}. Previews leave out the 2 stored keys of version 2 ` +
        'without marking them unusable, and the keys page tells their owners why. Restart every ' +
        'process with version 2 in MASTER_KEYS, set to the original key. List version 1 there ' +
        `as well, as "1:$(cat ${file})", while stored keys use it.`,
    );
  });

  it('names every version without a master key', async () => {
    const before = missingLines().length;
    const missing = await reportMissingMasterKeyVersions(versions.db, new Keyring([]), versions.logger, { read: null });
    expect(missing).toEqual([2, 1]);
    const message = String(missingLines().slice(before)[0]!.msg);
    expect(message).toContain('but versions 2 and 1 are not configured. This process has no master key.');
    expect(message).toContain('Previews leave out the 3 stored keys of versions 2 and 1');
    expect(message).toContain('Restart every process with versions 2 and 1 in MASTER_KEYS, set to the original keys.');
    expect(message).not.toContain('List version 1 there');
  });

  it('names the unread key file for version 1', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'fixwright-unread-'));
    try {
      const file = path.join(dataDir, generatedMasterKeyFile);
      await writeFile(file, Buffer.from(v1.key).toString('base64'), { mode: 0o600 });
      const config = loadConfig({
        NODE_ENV: 'test',
        DATA_DIR: dataDir,
        MASTER_KEYS: `2:${Buffer.from(v2.key).toString('base64')}`,
      });
      const before = missingLines().length;
      const missing = await reportMissingMasterKeyVersions(
        versions.db,
        new Keyring([v2]),
        versions.logger,
        findMasterKeyFiles(config),
      );
      expect(missing).toEqual([1]);
      const lines = missingLines().slice(before);
      expect(lines).toHaveLength(1);
      expect(lines[0]!.msg).toBe(
        'Stored provider keys use master key versions 2 (2 keys) and 1 (1 key), but version 1 is ' +
          'not configured. This process has master key version 2. Previews leave out the 1 stored ' +
          'key of version 1 without marking it unusable, and the keys page tells its owner why. ' +
          'Restart every process with version 1 in MASTER_KEYS, set to the original key. The ' +
          `master key generated in ${file}, used while MASTER_KEY and MASTER_KEYS were unset, is ` +
          `version 1: add 1:$(cat ${file}) to MASTER_KEYS.`,
      );
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('describes one key in the singular', () => {
    const one = [{ version: 2, keys: 1 }];
    expect(describeMissingMasterKeyVersions({ stored: one, missing: one }, [1], { command: 'start' }, { read: null })).toBe(
      'Stored provider keys use master key version 2 (1 key), but version 2 is not configured. ' +
        'This process has master key version 1. Previews leave out the 1 stored key of version 2 ' +
        'without marking it unusable, and the keys page tells its owner why. Restart every ' +
        'process with version 2 in MASTER_KEYS, set to the original key.',
    );
  });

  it('logs the missing version when the service starts', async () => {
    const service = await startServiceProcess({
      DATABASE_URL: versions.database.url,
      MASTER_KEYS: `1:${Buffer.from(v1.key).toString('base64')}`,
    });
    try {
      const lines = eventLines(service.output(), 'master_key.version_missing');
      expect(lines).toHaveLength(1);
      expect(lines[0]!.missingVersions).toEqual([2]);
      expect(lines[0]!.configuredVersions).toEqual([1]);
      expect(String(lines[0]!.msg)).toContain('This process has master key version 1.');
      expect(service.output()).not.toContain('"event":"master_key.mismatch"');
    } finally {
      await service.stop();
    }
  }, 60_000);
});

describe('findMasterKeyFiles', () => {
  let dataDir: string;
  let file: string;
  const masterKeys = `2:${Buffer.from(v2.key).toString('base64')}`;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'fixwright-key-files-'));
    file = path.join(dataDir, generatedMasterKeyFile);
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('reads the file without master keys', () => {
    const config = loadConfig({ NODE_ENV: 'test', DATA_DIR: dataDir });
    expect(findMasterKeyFiles(config)).toEqual({ read: file, unread: null });
  });

  it('names no unread file that is missing', () => {
    const config = loadConfig({ NODE_ENV: 'test', DATA_DIR: dataDir, MASTER_KEYS: masterKeys });
    expect(findMasterKeyFiles(config)).toEqual({ read: null, unread: null });
  });

  it('names the file that MASTER_KEYS replaces', async () => {
    await writeFile(file, Buffer.from(v1.key).toString('base64'), { mode: 0o600 });
    const config = loadConfig({ NODE_ENV: 'test', DATA_DIR: dataDir, MASTER_KEYS: masterKeys });
    expect(findMasterKeyFiles(config)).toEqual({ read: null, unread: file });
  });

  it('ignores the file with DATABASE_URL', async () => {
    await writeFile(file, Buffer.from(v1.key).toString('base64'), { mode: 0o600 });
    const config = loadConfig({
      NODE_ENV: 'test',
      DATA_DIR: dataDir,
      DATABASE_URL: 'postgres://fixwright@127.0.0.1:5432/fixwright',
    });
    expect(findMasterKeyFiles(config)).toEqual({ read: null, unread: null });
  });
});
