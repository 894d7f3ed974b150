import { randomBytes } from 'node:crypto';
import { asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeReport } from '../../src/cli/keys.ts';
import { maxMasterKeyVersion, type MasterKeySettings } from '../../src/config/env.ts';
import { userApiKeys, users, type Provider } from '../../src/db/schema/index.ts';
import { decryptUserKey, encryptUserKey } from '../../src/keys/encryption.ts';
import { describeMissingMasterKeyVersions, findMissingMasterKeyVersions } from '../../src/keys/master-key-check.ts';
import { Keyring } from '../../src/keys/master-keys.ts';
import { MasterKeyMismatchError, rotateUserKeys } from '../../src/keys/rotate.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { runCli, runCliToExit } from '../helpers/process.ts';
import { keyForms } from './key-check-server.ts';

const material = (version: number) => ({ version, key: new Uint8Array(randomBytes(32)) });
const v1 = material(1);
const v2 = material(2);
const v3 = material(3);

/** Settings of a keyring whose versions MASTER_KEYS lists, with MASTER_KEY unset. */
const listedInMasterKeys = (versions: number[]): MasterKeySettings => ({
  masterKeysVersions: versions,
  masterKeySet: false,
});

let context: TestContext;
/** Plain keys by `${userId}:${provider}`. */
const plain = new Map<string, string>();

async function addUserWithKeys(keyring: Keyring, login: string): Promise<string> {
  const [user] = await context.db.insert(users).values({ login }).returning();
  for (const provider of ['groq', 'gemini'] as Provider[]) {
    const key = `${provider === 'groq' ? 'gsk_' : 'AIza'}rotate${login}${randomBytes(12).toString('hex')}`;
    plain.set(`${user!.id}:${provider}`, key);
    const encrypted = await encryptUserKey(keyring, { userId: user!.id, provider }, key);
    await context.db
      .insert(userApiKeys)
      .values({ userId: user!.id, provider, ...encrypted, lastFour: key.slice(-4) });
  }
  return user!.id;
}

async function allRows() {
  return context.db.select().from(userApiKeys).orderBy(asc(userApiKeys.id));
}

async function expectAllDecrypt(keyring: Keyring, rows: Awaited<ReturnType<typeof allRows>>) {
  for (const row of rows) {
    const owner = { userId: row.userId, provider: row.provider };
    expect(await decryptUserKey(keyring, owner, row)).toBe(plain.get(`${row.userId}:${row.provider}`));
  }
}

beforeAll(async () => {
  context = await createTestContext({}, { keyring: new Keyring([v1]) });
});

afterAll(async () => {
  await context?.close();
});

describe('keys rotate', () => {
  it('re-encrypts every key under the newest version', async () => {
    for (let index = 0; index < 5; index++) await addUserWithKeys(context.keyring, `rotate${index}`);
    const before = await allRows();
    expect(before).toHaveLength(10);

    const report = await rotateUserKeys(context.db, new Keyring([v2, v1]), context.logger, { batchSize: 3 });
    expect(report.targetVersion).toBe(2);
    expect(report.rotated).toBe(10);
    expect(report.alreadyCurrent).toBe(0);
    expect(report.undecryptable).toBe(0);
    expect(report.missingVersions.size).toBe(0);
    expect(report.versionsInUse).toEqual([2]);

    const after = await allRows();
    for (const [index, row] of after.entries()) {
      expect(row.masterKeyVersion).toBe(2);
      expect(row.nonce).not.toBe(before[index]!.nonce);
      expect(row.updatedAt.getTime()).toBe(before[index]!.updatedAt.getTime());
    }
    // Only the newest key is needed from now on: version 1 can be removed.
    await expectAllDecrypt(new Keyring([v2]), after);
    expect(describeReport(report, [2, 1], listedInMasterKeys([2, 1]))).toEqual([
      'Rotated 10 keys to master key version 2; 0 already used it.',
      'Every Fixwright process needs master key version 2 in MASTER_KEYS to use the rotated ' +
        'keys: restart any process that was started without it.',
      'No stored key uses master key version 1 any more; remove it from MASTER_KEYS when ' +
        'every server runs with the new key.',
    ]);
  });

  it('changes nothing when run again', async () => {
    const before = await allRows();
    const report = await rotateUserKeys(context.db, new Keyring([v2]), context.logger, { batchSize: 3 });
    expect(report.rotated).toBe(0);
    expect(report.alreadyCurrent).toBe(10);
    expect(await allRows()).toEqual(before);
  });

  it('leaves keys of a missing version alone', async () => {
    const userId = await addUserWithKeys(new Keyring([v1]), 'rotate-missing');
    const before = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, userId));

    const report = await rotateUserKeys(context.db, new Keyring([v3, v2]), context.logger);
    expect(report.rotated).toBe(10);
    expect(report.alreadyCurrent).toBe(0);
    expect([...report.missingVersions]).toEqual([[1, 2]]);
    expect(report.versionsInUse).toEqual([3, 1]);
    const after = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, userId));
    expect(after).toEqual(before);
    expect(describeReport(report, [3, 2], listedInMasterKeys([3, 2])).join('\n')).not.toContain('version 1');
    const found = await findMissingMasterKeyVersions(context.db, new Keyring([v3, v2]));
    expect(found.missing).toEqual([{ version: 1, keys: 2 }]);
    const message =
      'Stored provider keys use master key versions 3 (10 keys) and 1 (2 keys), but version 1 ' +
      'is not configured. This command has master key versions 3 and 2. The rotation left the 2 ' +
      'stored keys of version 1 as they were, and a process without that version leaves them ' +
      'out of previews. Run "fixwright keys rotate" again with version 1 in MASTER_KEYS, set to ' +
      'the original key.';
    const rotation = { command: 'keys rotate' } as const;
    expect(describeMissingMasterKeyVersions(found, [3, 2], rotation, { read: null })).toBe(message);
    const keyFile = '/srv/fixwright/data/master-key';
    expect(describeMissingMasterKeyVersions(found, [3, 2], rotation, { read: null, unread: keyFile })).toBe(
      `${message} The master key generated in ${keyFile}, used while MASTER_KEY and MASTER_KEYS ` +
        `were unset, is version 1: add 1:$(cat ${keyFile}) to MASTER_KEYS.`,
    );

    const healed = await rotateUserKeys(context.db, new Keyring([v3, v1]), context.logger);
    expect(healed.rotated).toBe(2);
    expect(healed.alreadyCurrent).toBe(10);
    expect(healed.versionsInUse).toEqual([3]);
    await expectAllDecrypt(new Keyring([v3]), await allRows());
  });

  it('marks a key that fails to decrypt', async () => {
    const userId = await addUserWithKeys(new Keyring([v2]), 'rotate-tampered');
    const [row] = await context.db
      .select()
      .from(userApiKeys)
      .where(eq(userApiKeys.userId, userId))
      .orderBy(asc(userApiKeys.provider));
    // One key of version 2 encrypted under a different key, as a row damaged or copied by
    // mistake. The other key of version 2 decrypts, so the version's key is the right one.
    const wrongV2 = new Keyring([material(2)]);
    await context.db
      .update(userApiKeys)
      .set(await encryptUserKey(wrongV2, { userId, provider: row!.provider }, 'AIzaWrongMasterKey0123456789abcdef'))
      .where(eq(userApiKeys.id, row!.id));

    const report = await rotateUserKeys(context.db, new Keyring([v3, v2]), context.logger);
    expect(report.rotated).toBe(1);
    expect(report.undecryptable).toBe(1);
    const [marked] = await context.db.select().from(userApiKeys).where(eq(userApiKeys.id, row!.id));
    expect(marked!.unusableCause).toBe('undecryptable');
    expect(marked!.masterKeyVersion).toBe(2);
    expect(describeReport(report, [3, 2], listedInMasterKeys([3, 2]))).toContain(
      '1 key could not be decrypted, so it is marked unusable. If a key in MASTER_KEYS is ' +
        'wrong, correct it and run "fixwright keys rotate" again, which clears the mark; ' +
        'otherwise the owner must save the key again.',
    );
    await context.db.delete(userApiKeys).where(eq(userApiKeys.id, row!.id));
  });

  it('rotates nothing with a wrong key for an older version', async () => {
    const userId = await addUserWithKeys(new Keyring([v1]), 'rotate-wrong-key');
    const before = await allRows();
    // An operator who pastes a wrong key for version 1 into MASTER_KEYS. Rotating would mark
    // every key of version 1 unusable, so nothing is rotated and nothing is marked.
    const wrong = rotateUserKeys(context.db, new Keyring([v3, material(1)]), context.logger);
    await expect(wrong).rejects.toThrow(MasterKeyMismatchError);
    await expect(wrong).rejects.toThrow(
      'Master key version 1 in MASTER_KEYS decrypts none of the 2 stored keys tried that use ' +
        'it, so it differs from the key they were encrypted with. Nothing was rotated: set ' +
        'version 1 to its original key and run "fixwright keys rotate" again. If that key is ' +
        'lost, delete the keys it cannot decrypt with "fixwright keys discard --version 1" first.',
    );
    expect(await allRows()).toEqual(before);

    const corrected = await rotateUserKeys(context.db, new Keyring([v3, v1]), context.logger);
    expect(corrected.rotated).toBe(2);
    expect(corrected.undecryptable).toBe(0);
    const rowsOfUser = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, userId));
    for (const row of rowsOfUser) expect(row.masterKeyVersion).toBe(3);
    await expectAllDecrypt(new Keyring([v3]), rowsOfUser);
    await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, userId));
  });

  it('rejects a wrong key for the newest version', async () => {
    const v7 = material(7);
    const userId = await addUserWithKeys(new Keyring([v7]), 'rotate-wrong-newest');
    const before = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, userId));

    const rotation = rotateUserKeys(context.db, new Keyring([material(7)]), context.logger);
    await expect(rotation).rejects.toThrow(MasterKeyMismatchError);
    await expect(rotation).rejects.toThrow(
      'Master key version 7 in MASTER_KEYS decrypts none of the 2 stored keys tried that use ' +
        'it, so it differs from the key they were encrypted with. Nothing was rotated: set ' +
        'version 7 to its original key and run "fixwright keys rotate" again.',
    );
    const after = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, userId));
    expect(after).toEqual(before);
    await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, userId));
  });

  it('rotates nothing into a wrong newest key', async () => {
    const v8 = material(8);
    const current = await addUserWithKeys(new Keyring([v8]), 'rotate-current-v8');
    const older = await addUserWithKeys(new Keyring([v1]), 'rotate-older-v1');

    const rotation = rotateUserKeys(context.db, new Keyring([material(8), v1]), context.logger);
    await expect(rotation).rejects.toThrow(MasterKeyMismatchError);
    const olderRows = await context.db.select().from(userApiKeys).where(eq(userApiKeys.userId, older));
    expect(olderRows.map((row) => row.masterKeyVersion)).toEqual([1, 1]);
    await expectAllDecrypt(new Keyring([v1]), olderRows);
    for (const userId of [current, older]) {
      await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, userId));
    }
  });

  it('rotates when one key of the newest version is damaged', async () => {
    const v9 = material(9);
    const userId = await addUserWithKeys(new Keyring([v9]), 'rotate-one-damaged');
    const [damaged] = await context.db
      .select()
      .from(userApiKeys)
      .where(eq(userApiKeys.userId, userId))
      .orderBy(asc(userApiKeys.id))
      .limit(1);
    await context.db
      .update(userApiKeys)
      .set({ ciphertext: `${damaged!.ciphertext.startsWith('A') ? 'B' : 'A'}${damaged!.ciphertext.slice(1)}` })
      .where(eq(userApiKeys.id, damaged!.id));

    // Without version 1 configured, the keys of other tests count as a missing version and stay.
    const report = await rotateUserKeys(context.db, new Keyring([v9]), context.logger);
    expect(report.targetVersion).toBe(9);
    expect(report.alreadyCurrent).toBe(2);
    await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, userId));
  });

  it('reports counts of one and several', () => {
    const report = {
      targetVersion: 4,
      rotated: 1,
      alreadyCurrent: 1,
      missingVersions: new Map([
        [1, 1],
        [2, 3],
      ]),
      undecryptable: 2,
      versionsInUse: [4, 2, 1],
    };
    expect(describeReport(report, [4, 3], listedInMasterKeys([4, 3]))).toEqual([
      'Rotated 1 key to master key version 4; 1 already used it.',
      'Every Fixwright process needs master key version 4 in MASTER_KEYS to use the rotated ' +
        'keys: restart any process that was started without it.',
      '2 keys could not be decrypted, so they are marked unusable. If a key in MASTER_KEYS is ' +
        'wrong, correct it and run "fixwright keys rotate" again, which clears the mark; ' +
        'otherwise each owner must save the key again.',
      'No stored key uses master key version 3 any more; remove it from MASTER_KEYS when ' +
        'every server runs with the new key.',
    ]);
    const unused = { ...report, missingVersions: new Map(), undecryptable: 0, versionsInUse: [4] };
    expect(describeReport(unused, [4, 3, 2], listedInMasterKeys([4, 3, 2]))).toContain(
      'No stored key uses master key versions 3 and 2 any more; remove them from MASTER_KEYS ' +
        'when every server runs with the new key.',
    );
  });

  it('names MASTER_KEY only when it is set', () => {
    const report = {
      targetVersion: 3,
      rotated: 0,
      alreadyCurrent: 2,
      missingVersions: new Map<number, number>(),
      undecryptable: 0,
      versionsInUse: [3],
    };
    const removal = (settings: MasterKeySettings) => describeReport(report, [3, 2, 1], settings).at(-1);
    expect(removal({ masterKeysVersions: [3, 2], masterKeySet: true })).toBe(
      'No stored key uses master key versions 2 and 1 any more; remove version 2 from ' +
        'MASTER_KEYS and unset MASTER_KEY when every server runs with the new key.',
    );
    expect(removal({ masterKeysVersions: [3, 2, 1], masterKeySet: true })).toBe(
      'No stored key uses master key versions 2 and 1 any more; remove them from MASTER_KEYS ' +
        'and unset MASTER_KEY when every server runs with the new key.',
    );
    expect(removal({ masterKeysVersions: [3, 2, 1], masterKeySet: false })).toBe(
      'No stored key uses master key versions 2 and 1 any more; remove them from MASTER_KEYS ' +
        'when every server runs with the new key.',
    );
    const onlyVersionOne = describeReport(report, [3, 1], { masterKeysVersions: [3], masterKeySet: true });
    expect(onlyVersionOne.at(-1)).toBe(
      'No stored key uses master key version 1 any more; unset MASTER_KEY when every server ' +
        'runs with the new key.',
    );
  });

  it('rotates into the largest version', async () => {
    const largest = material(maxMasterKeyVersion);
    const userId = await addUserWithKeys(new Keyring([v1]), 'rotate-largest');

    await rotateUserKeys(context.db, new Keyring([largest, v1]), context.logger, {
      batchSize: 10,
    });

    const rows = (await allRows()).filter((row) => row.userId === userId);
    expect(rows.map((row) => row.masterKeyVersion)).toEqual([
      maxMasterKeyVersion,
      maxMasterKeyVersion,
    ]);
    await expectAllDecrypt(new Keyring([largest]), rows);
    await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, userId));
  });

  it('runs as a command', async () => {
    const envKey = (entry: { version: number; key: Uint8Array }) =>
      `${entry.version}:${Buffer.from(entry.key).toString('base64')}`;
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TMPDIR: process.env.TMPDIR,
      NODE_ENV: 'test',
      // Debug, so the command's log lines are written and can be scanned for keys too.
      LOG_LEVEL: 'debug',
      DATABASE_URL: context.database.url,
    };
    const newest = material(4);
    const { stdout, stderr } = await runCli(['keys', 'rotate', '--batch-size', '2'], {
      ...env,
      MASTER_KEYS: [newest, v3].map(envKey).join(','),
    });
    expect(stdout).toContain('Rotated 13 keys to master key version 4; 0 already used it.');
    // MASTER_KEY is not set, so the output does not name it.
    expect(stdout).toContain(
      'No stored key uses master key version 3 any more; remove it from MASTER_KEYS when every ' +
        'server runs with the new key.',
    );
    await expectAllDecrypt(new Keyring([newest]), await allRows());

    const again = await runCli(['keys', 'rotate'], { ...env, MASTER_KEYS: envKey(newest) });
    expect(again.stdout.trim()).toBe('Rotated 0 keys to master key version 4; 13 already used it.');
    const output = stdout + stderr + again.stdout + again.stderr;
    expect(output).toContain('"event":"keys.rotated"');
    for (const key of plain.values()) {
      for (const form of keyForms(key)) expect(output).not.toContain(form);
    }
    for (const entry of [newest, v3]) {
      expect(output).not.toContain(Buffer.from(entry.key).toString('base64'));
    }

    // Keys saved under version 1 by a process that still has it, after the rotation.
    const lateUser = await addUserWithKeys(new Keyring([v1]), 'rotate-late');
    const missing = await runCliToExit(['keys', 'rotate'], { ...env, MASTER_KEYS: envKey(newest) });
    expect(missing.code).toBe(1);
    expect(missing.stdout.trim().split('\n')).toEqual([
      'Rotated 0 keys to master key version 4; 13 already used it.',
      'Stored provider keys use master key versions 4 (13 keys) and 1 (2 keys), but version 1 ' +
        'is not configured. This command has master key version 4. The rotation left the 2 ' +
        'stored keys of version 1 as they were, and a process without that version leaves them ' +
        'out of previews. Run "fixwright keys rotate" again with version 1 in MASTER_KEYS, set ' +
        'to the original key.',
    ]);
    for (const key of plain.values()) {
      for (const form of keyForms(key)) expect(missing.stdout + missing.stderr).not.toContain(form);
    }
    await context.db.delete(userApiKeys).where(eq(userApiKeys.userId, lateUser));

    await expect(runCli(['keys', 'rotate'], env)).rejects.toThrow(
      'Missing master keys: keys rotate re-encrypts stored keys under the newest master key, so ' +
        'set MASTER_KEYS to the new and the old versions, such as "2:<new key>,1:<old key>", ' +
        'as the service processes have them.',
    );
    await expect(runCli(['keys', 'list'], env)).rejects.toThrow('Unknown keys command "list": use rotate or discard.');
    // Five commands, each a new Node.js process that loads tsx: about 2.5 s each on an idle
    // 2 vCPU machine, and over 30 s in all with a full test run beside it.
  }, 120_000);
});
