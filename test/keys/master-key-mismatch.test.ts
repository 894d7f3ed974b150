import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runPreview } from '../../src/autofix/preview.ts';
import { describeDiscard } from '../../src/cli/keys.ts';
import type { AppContext } from '../../src/context.ts';
import { patchFiles, userApiKeys, type Provider } from '../../src/db/schema/index.ts';
import { discardUndecryptableKeys, MasterKeyMatchesError } from '../../src/keys/discard.ts';
import { decryptUserKey, encryptUserKey } from '../../src/keys/encryption.ts';
import { reportMasterKeyMismatches } from '../../src/keys/master-key-check.ts';
import { Keyring } from '../../src/keys/master-keys.ts';
import { MasterKeyMismatchError, rotateUserKeys } from '../../src/keys/rotate.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import type { FakeGemini } from '../../src/demo/fakes/gemini.ts';
import type { FakeGroq } from '../../src/demo/fakes/groq.ts';
import { logsOf, type TestContext } from '../helpers/context.ts';
import {
  answerWithFixedFiles,
  createPatchRequestForRun,
  createPreviewTestContext,
  insertConsoleLogFindings,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';
import { runCliToExit } from '../helpers/process.ts';
import { createSignedInUser, formBody, formHeaders, type SignedInUser } from '../helpers/web.ts';
import { keyForms } from './key-check-server.ts';

const files = { 'src/a.ts': "export const a = 1;\nconsole.log('a', a);\n" };
const fixed = { 'src/a.ts': 'export const a = 1;\n' };
const platformGroqKey = 'gsk_platformMismatchTest0123456789abcd';
const platformGeminiKey = 'AIzaPlatformMismatchTest0123456789abcd';

/** Key A encrypted the stored keys; key B is a different key configured as the same version. */
const keyA = { version: 1, key: new Uint8Array(randomBytes(32)) };
const keyB = { version: 1, key: new Uint8Array(randomBytes(32)) };

const saveRefused =
  "Own keys cannot be saved now: this server's master key version 1 does not match the one " +
  'that encrypted the stored keys, so a key saved now would not decrypt once the operator ' +
  'restores it. The operator must restore master key version 1 and restart Fixwright. Stored ' +
  'keys are kept, and deleting a key still works.';
const mismatchedReason = (name: string) =>
  `Your saved ${name} key is encrypted under master key version 1, and this server's master ` +
  'key version 1 does not match it. The operator must restore the original master key version ' +
  '1 and restart Fixwright. The key does not need to be saved again.';

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let gemini: FakeGemini;
let runId: string;
let alice: SignedInUser & { token: string };
let bob: SignedInUser & { token: string };
/** Plain keys, scanned for in responses, logs and command output at the end. */
const plain = new Map<string, string>();
const outputs: string[] = [];

function ownKey(provider: Provider, owner: string): string {
  const key = `${provider === 'groq' ? 'gsk_' : 'AIza'}mismatch${owner}${randomBytes(12).toString('hex')}`;
  plain.set(`${owner}:${provider}`, key);
  return key;
}

async function storeKey(user: SignedInUser, provider: Provider, keyring: Keyring) {
  const key = ownKey(provider, user.login);
  const encrypted = await encryptUserKey(keyring, { userId: user.userId, provider }, key);
  await context.db
    .insert(userApiKeys)
    .values({ userId: user.userId, provider, ...encrypted, lastFour: key.slice(-4) });
}

async function newUser(login: string) {
  const user = await createSignedInUser(context.db, { login, tokenLimit: 100_000 });
  const { token } = await mintApiToken(context.db, user.userId, 'test');
  return { ...user, token };
}

/** Returns the context of a process started with `keyring`, after its start check. */
async function startProcess(keyring: Keyring): Promise<AppContext & { mismatched: number[] }> {
  const mismatched = await reportMasterKeyMismatches(context.db, keyring, context.logger, null);
  keyring.markMismatched(mismatched);
  return { ...context, keyring, mismatched };
}

async function api(appContext: AppContext, token: string, method: string, url: string, body?: unknown) {
  const init: RequestInit = { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await createApp(appContext).request(url, init);
  const text = await response.text();
  outputs.push(text);
  return { status: response.status, json: text ? JSON.parse(text) : undefined };
}

async function rowsOf(userId: string) {
  return context.db
    .select()
    .from(userApiKeys)
    .where(eq(userApiKeys.userId, userId))
    .orderBy(asc(userApiKeys.provider));
}

async function preview(appContext: AppContext, userId: string) {
  const patchRequestId = await createPatchRequestForRun(context, runId, userId);
  const outcome = await runPreview(appContext, patchRequestId, 0, context.logger);
  const [file] = await context.db.select().from(patchFiles).where(eq(patchFiles.patchRequestId, patchRequestId));
  return { outcome, file: file! };
}

const modelCalls = () => [
  ...groq.requests.filter((request) => request.path.endsWith('/chat/completions')),
  ...gemini.requests.filter((request) => request.path.includes(':generateContent')),
];

beforeAll(async () => {
  setup = await createPreviewTestContext({ head: files, groqApiKey: platformGroqKey, geminiApiKey: platformGeminiKey });
  ({ context, groq, gemini, runId } = setup);
  await insertConsoleLogFindings(context, runId, Object.keys(files));
  alice = await newUser('mismatch-alice');
  bob = await newUser('mismatch-bob');
  const withA = new Keyring([keyA]);
  await storeKey(alice, 'groq', withA);
  await storeKey(alice, 'gemini', withA);
  await storeKey(bob, 'groq', withA);
});

afterAll(async () => {
  await setup?.close();
});

beforeEach(() => {
  answerWithFixedFiles(fixed, groq, gemini);
});

describe('a process whose master key does not match the stored keys', () => {
  it('uses and marks no key, refuses saves and allows deletes', async () => {
    const processB = await startProcess(new Keyring([keyB]));
    expect(processB.mismatched).toEqual([1]);
    const logged = logsOf(context, 'master_key.mismatch').at(-1);
    expect(logged?.msg).toContain(
      'Until then, previews leave out the stored keys of this version, without marking them ' +
        'unusable, and users cannot save own keys. If the original key is lost, "fixwright keys ' +
        'discard --version 1 --dry-run" lists the keys that it cannot decrypt',
    );
    const before = await rowsOf(alice.userId);

    // Both own keys are left out, and the platform keys are not used in their place.
    const failed = await preview(processB, alice.userId);
    expect(failed.outcome.status).toBe('failed');
    expect(failed.file.error).toContain(mismatchedReason('Groq'));
    expect(failed.file.error).toContain(mismatchedReason('Gemini'));
    expect(failed.file.error).not.toContain('could not be decrypted');
    // Bob's Groq key is left out and Gemini's platform key serves him.
    const served = await preview(processB, bob.userId);
    expect(served.outcome.status).toBe('ready');
    expect(served.file.provider).toBe('gemini');
    expect(modelCalls().map((request) => request.apiKey)).toEqual([platformGeminiKey]);
    for (const row of [...(await rowsOf(alice.userId)), ...(await rowsOf(bob.userId))]) {
      expect(row.unusableCause).toBeNull();
      expect(row.unusableReason).toBeNull();
      expect(row.lastUsedAt).toBeNull();
    }
    expect(
      logsOf(context, 'user_key.master_key_mismatched', { userId: alice.userId }),
    ).toHaveLength(2);

    const listed = await api(processB, alice.token, 'GET', '/api/user/keys');
    expect(listed.json.storageAvailable).toBe(false);
    expect(listed.json.keys.map((key: { unusableReason: string }) => key.unusableReason)).toEqual([
      mismatchedReason('Gemini'),
      mismatchedReason('Groq'),
    ]);

    // The keys page shows the message before the user pastes a key, and disables its form.
    const keysPage = await createApp(processB).request('/keys', { headers: formHeaders(alice) });
    expect(keysPage.status).toBe(200);
    const keysHtml = await keysPage.text();
    outputs.push(keysHtml);
    expect(keysHtml).toContain("Own keys cannot be saved now: this server&#39;s master key version 1 does not match");
    expect(keysHtml).toContain('<fieldset class="key-fields" disabled="">');
    // The provider order points to the stored key's reason instead of asking for a new save.
    expect(keysHtml.split('left out: your stored key cannot be used now (the reason is under ' +
      '&quot;Stored keys&quot; above)').length - 1).toBe(2);
    expect(keysHtml).not.toContain('so save it again');

    // Replacing a stored key and saving a new one are both refused before the provider check.
    groq.reset();
    gemini.reset();
    const replaced = await api(processB, alice.token, 'PUT', '/api/user/keys/groq', { key: ownKey('groq', 'replaced') });
    expect(replaced.status).toBe(503);
    expect(replaced.json.error).toMatchObject({ code: 'not_configured', message: saveRefused });
    const added = await api(processB, bob.token, 'PUT', '/api/user/keys/gemini', { key: ownKey('gemini', 'added') });
    expect(added.status).toBe(503);
    expect(added.json.error.message).toBe(saveRefused);
    expect(groq.requests).toHaveLength(0);
    expect(gemini.requests).toHaveLength(0);
    expect(await rowsOf(alice.userId)).toEqual(before);
    expect(await rowsOf(bob.userId)).toHaveLength(1);

    // The dashboard shows the keys page with the message.
    const page = await createApp(processB).request('/keys', {
      method: 'POST',
      headers: formHeaders(alice),
      body: formBody({ _csrf: alice.csrfToken, provider: 'groq', key: ownKey('groq', 'page') }),
    });
    expect(page.status).toBe(503);
    const html = await page.text();
    outputs.push(html);
    expect(html).toContain('Your own model keys');
    expect(html).toContain("Own keys cannot be saved now: this server&#39;s master key version 1 does not match");
    expect(html).toContain('data-provider="groq"');

    expect(html.split("Own keys cannot be saved now").length - 1).toBe(1);

    // Deleting works, through the API and the dashboard.
    expect((await api(processB, alice.token, 'DELETE', '/api/user/keys/gemini')).status).toBe(204);
    const deleted = await createApp(processB).request('/keys/groq/delete', {
      method: 'POST',
      headers: formHeaders(alice),
      body: formBody({ _csrf: alice.csrfToken }),
    });
    expect(deleted.status).toBe(303);
    expect(await rowsOf(alice.userId)).toEqual([]);
  });

  it('leaves rotation with a mismatched version to the operator', async () => {
    const before = await rowsOf(bob.userId);
    // A wrong key for an older version would mark every key of that version unusable.
    const rotation = rotateUserKeys(context.db, new Keyring([{ version: 2, key: new Uint8Array(randomBytes(32)) }, keyB]), context.logger);
    await expect(rotation).rejects.toThrow(MasterKeyMismatchError);
    await expect(rotation).rejects.toThrow(
      'Master key version 1 in MASTER_KEYS decrypts none of the 1 stored keys tried that use it',
    );
    expect(await rowsOf(bob.userId)).toEqual(before);
  });

  it('works again once the original key is restored', async () => {
    await storeKey(alice, 'groq', new Keyring([keyA]));
    const processA = await startProcess(new Keyring([keyA]));
    expect(processA.mismatched).toEqual([]);

    const listed = await api(processA, bob.token, 'GET', '/api/user/keys');
    expect(listed.json.storageAvailable).toBe(true);
    expect(listed.json.keys[0].unusableReason).toBeNull();
    const keysPage = await createApp(processA).request('/keys', { headers: formHeaders(bob) });
    const keysHtml = await keysPage.text();
    expect(keysHtml).toContain('<fieldset class="key-fields">');
    expect(keysHtml).not.toContain('Own keys cannot be saved now');
    const result = await preview(processA, bob.userId);
    expect(result.outcome.status).toBe('ready');
    expect(modelCalls().map((request) => request.apiKey)).toEqual([plain.get('mismatch-bob:groq')]);

    const saved = await api(processA, bob.token, 'PUT', '/api/user/keys/gemini', { key: ownKey('gemini', 'mismatch-bob') });
    expect(saved.status).toBe(201);
    for (const user of [alice, bob]) {
      for (const row of await rowsOf(user.userId)) {
        const owner = { userId: row.userId, provider: row.provider };
        expect(await decryptUserKey(processA.keyring, owner, row)).toBe(plain.get(`${user.login}:${row.provider}`));
      }
    }
    await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, bob.userId));
    await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, alice.userId));
  });
});

describe('keys discard', () => {
  let carol: SignedInUser & { token: string };

  beforeAll(async () => {
    carol = await newUser('mismatch-carol');
    const withA = new Keyring([keyA]);
    await storeKey(alice, 'groq', withA);
    await storeKey(alice, 'gemini', withA);
    await storeKey(bob, 'groq', withA);
    // Carol's key uses version 2, which the discard of version 1 leaves alone.
    await storeKey(carol, 'gemini', new Keyring([{ version: 2, key: keyA.key }]));
  });

  it('refuses while the configured key decrypts the stored keys', async () => {
    const before = await context.db.select().from(userApiKeys).orderBy(asc(userApiKeys.id));
    const discard = discardUndecryptableKeys(context.db, new Keyring([keyA]), context.logger, { version: 1, dryRun: false });
    await expect(discard).rejects.toThrow(MasterKeyMatchesError);
    await expect(discard).rejects.toThrow(
      'Nothing was deleted. Master key version 1 decrypts the stored keys that use it, so it is ' +
        'the key they were encrypted with and there is nothing to discard.',
    );
    expect(await context.db.select().from(userApiKeys).orderBy(asc(userApiKeys.id))).toEqual(before);
  });

  it('lists the keys in a dry run and deletes them for real', async () => {
    const before = await context.db.select().from(userApiKeys).orderBy(asc(userApiKeys.id));
    const dryRun = await discardUndecryptableKeys(context.db, new Keyring([keyB]), context.logger, {
      version: 1,
      dryRun: true,
      batchSize: 2,
    });
    expect(dryRun).toEqual({
      version: 1,
      dryRun: true,
      discarded: [
        { login: 'mismatch-alice', provider: 'gemini' },
        { login: 'mismatch-alice', provider: 'groq' },
        { login: 'mismatch-bob', provider: 'groq' },
      ],
      kept: 0,
    });
    expect(describeDiscard(dryRun)).toEqual([
      '3 stored keys of master key version 1 do not decrypt with the configured key and would be deleted:',
      '  mismatch-alice: gemini, groq',
      '  mismatch-bob: groq',
      'Dry run: nothing was deleted. Run the command without --dry-run to delete them.',
    ]);
    expect(await context.db.select().from(userApiKeys).orderBy(asc(userApiKeys.id))).toEqual(before);

    const real = await discardUndecryptableKeys(context.db, new Keyring([keyB]), context.logger, {
      version: 1,
      dryRun: false,
      batchSize: 2,
    });
    expect(real.discarded).toEqual(dryRun.discarded);
    expect(describeDiscard(real)).toEqual([
      'Deleted 3 stored keys of master key version 1 that do not decrypt with the configured key:',
      '  mismatch-alice: gemini, groq',
      '  mismatch-bob: groq',
      'Their owners must save them again. Restart every Fixwright process, web and worker, so ' +
        'that it no longer reports master_key.mismatch for version 1 and users can save keys again.',
    ]);
    const left = await context.db.select().from(userApiKeys);
    expect(left.map((row) => [row.userId, row.provider, row.masterKeyVersion])).toEqual([[carol.userId, 'gemini', 2]]);
    expect(logsOf(context, 'keys.discarded').at(-1)).toMatchObject({
      version: 1,
      discarded: 3,
      kept: 0,
    });

    expect(describeDiscard({ version: 1, dryRun: false, discarded: [{ login: 'dave', provider: 'groq' }], kept: 2 })).toEqual([
      'Deleted 1 stored key of master key version 1 that does not decrypt with the configured key:',
      '  dave: groq',
      '2 keys of version 1 decrypt and are kept.',
      'Its owner must save it again. Restart every Fixwright process, web and worker, so that it ' +
        'no longer reports master_key.mismatch for version 1 and users can save keys again.',
    ]);
  });

  it('lets a restarted process save keys again', async () => {
    // A process that found the mismatch before the discard keeps refusing until it restarts.
    const running = new Keyring([keyB]);
    running.markMismatched([1]);
    const stale = await api({ ...context, keyring: running }, alice.token, 'PUT', '/api/user/keys/groq', {
      key: ownKey('groq', 'stale'),
    });
    expect(stale.status).toBe(503);

    const restarted = await startProcess(new Keyring([keyB]));
    expect(restarted.mismatched).toEqual([]);
    const saved = await api(restarted, alice.token, 'PUT', '/api/user/keys/groq', { key: ownKey('groq', 'mismatch-alice') });
    expect(saved.status).toBe(201);
    const [row] = await rowsOf(alice.userId);
    expect(await decryptUserKey(new Keyring([keyB]), { userId: alice.userId, provider: 'groq' }, row!)).toBe(
      plain.get('mismatch-alice:groq'),
    );
  });

  it('runs as a command', async () => {
    // Bob saved a key under key A again, say from a backup's restored rows.
    await storeKey(bob, 'groq', new Keyring([keyA]));
    const base64 = (key: Uint8Array) => Buffer.from(key).toString('base64');
    const base = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TMPDIR: process.env.TMPDIR,
      NODE_ENV: 'test',
      // Debug, so the command's log lines are written and can be scanned for keys too.
      LOG_LEVEL: 'debug',
    };
    const env = { ...base, DATABASE_URL: context.database.url };
    const withB = { ...env, MASTER_KEYS: `2:${base64(keyA.key)},1:${base64(keyB.key)}` };

    // Alice's key was saved under key B, so one of the keys tried decrypts: nothing to discard.
    const refused = await runCliToExit(['keys', 'discard', '--version', '1'], withB);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('Master key version 1 decrypts the stored keys that use it');
    expect(await rowsOf(bob.userId)).toHaveLength(1);
    // A dry run that finds nothing to delete succeeds and prints why.
    const matchedDryRun = await runCliToExit(['keys', 'discard', '--version', '1', '--dry-run'], withB);
    expect(matchedDryRun.code).toBe(0);
    expect(matchedDryRun.stderr).toBe('');
    expect(matchedDryRun.stdout).toBe(
      'Dry run: nothing would be deleted. Master key version 1 decrypts the stored keys that use ' +
        'it, so it is the key they were encrypted with and there is nothing to discard. A key ' +
        'that still fails to decrypt is marked unusable, and its owner can save it again.\n',
    );
    expect(await rowsOf(bob.userId)).toHaveLength(1);

    await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, alice.userId));
    const dryRun = await runCliToExit(['keys', 'discard', '--version', '1', '--dry-run'], withB);
    expect(dryRun.code).toBe(0);
    expect(dryRun.stdout).toBe(
      '1 stored key of master key version 1 does not decrypt with the configured key and would be deleted:\n' +
        '  mismatch-bob: groq\n' +
        'Dry run: nothing was deleted. Run the command without --dry-run to delete them.\n',
    );
    expect(await rowsOf(bob.userId)).toHaveLength(1);

    const real = await runCliToExit(['keys', 'discard', '--version', '1'], withB);
    expect(real.code).toBe(0);
    expect(real.stdout).toContain('Deleted 1 stored key of master key version 1 that does not decrypt');
    expect(await rowsOf(bob.userId)).toEqual([]);
    expect(await rowsOf(carol.userId)).toHaveLength(1);

    // Carol's key uses version 2, which a command given only version 1 reports.
    const onlyB = { ...env, MASTER_KEYS: `1:${base64(keyB.key)}` };
    const otherVersion = await runCliToExit(['keys', 'discard', '--version', '1', '--dry-run'], onlyB);
    expect(otherVersion.code).toBe(0);
    expect(otherVersion.stdout.trim().split('\n')).toEqual([
      'No stored key of master key version 1 fails to decrypt; nothing was deleted.',
      'Stored provider keys use master key version 2 (1 key), but version 2 is not configured. ' +
        'This command has master key version 1. The command checks only the keys of version 1, ' +
        'so it leaves the 1 stored key of version 2 alone, and a process without that version ' +
        'leaves it out of previews. Restart every process with version 2 in MASTER_KEYS, set to ' +
        'the original key.',
    ]);
    expect(await rowsOf(carol.userId)).toHaveLength(1);

    const missing = await runCliToExit(['keys', 'discard', '--version', '3'], withB);
    expect(missing.code).toBe(2);
    expect(missing.stderr.split('\n')[0]).toBe(
      'Master key version 3 is not configured: keys discard deletes only the keys of a version ' +
        'that its configured key cannot decrypt, so run it with the same MASTER_KEY or ' +
        'MASTER_KEYS as the service processes.',
    );

    // Without MASTER_KEY, MASTER_KEYS and a key file, no key is generated to compare with. The
    // command looks for the bundled database's PG_VERSION file first, so the test writes one.
    const dataDir = await mkdtemp(path.join(tmpdir(), 'fixwright-discard-'));
    try {
      await mkdir(path.join(dataDir, 'postgres'));
      await writeFile(path.join(dataDir, 'postgres', 'PG_VERSION'), '18\n');
      const noKey = await runCliToExit(['keys', 'discard', '--version', '1'], { ...base, DATA_DIR: dataDir });
      expect(noKey.code).toBe(2);
      expect(noKey.stderr.split('\n')[0]).toBe(
        `Missing master key: MASTER_KEY and MASTER_KEYS are unset and ${path.join(dataDir, 'master-key')} ` +
          'does not exist, so no key is configured to check the stored keys with. Set them as the ' +
          'service processes have them.',
      );
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }

    const output = [refused, dryRun, real, otherVersion, missing].map((result) => result.stdout + result.stderr).join('\n');
    outputs.push(output);
    expect(output).toContain('"event":"keys.discarded"');
    for (const entry of [keyA, keyB]) expect(output).not.toContain(Buffer.from(entry.key).toString('base64'));
  }, 120_000);

  it('keeps keys out of responses, pages, logs and output', () => {
    const text = outputs.join('\n') + JSON.stringify(context.logs);
    for (const key of plain.values()) {
      for (const form of keyForms(key)) expect(text).not.toContain(form);
    }
  });
});
