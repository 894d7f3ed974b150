import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, missingSettings } from '../../src/config/env.ts';
import { decryptUserKey, encryptUserKey } from '../../src/keys/encryption.ts';
import { generatedMasterKeyFile, Keyring, loadKeyring } from '../../src/keys/master-keys.ts';
import { createLogger } from '../../src/logger.ts';

const keyA = randomBytes(32).toString('base64');
const keyB = randomBytes(32).toString('base64');
const keyC = randomBytes(32).toString('base64url');
const owner = { userId: '0b6c2f5e-1d1a-4c55-9a39-0f3f2a7c1e01', provider: 'groq' as const };

function configError(env: Record<string, string>): string {
  try {
    loadConfig({ NODE_ENV: 'test', ...env });
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger('debug', sink), lines };
}

describe('master key configuration', () => {
  it('rejects MASTER_KEY outside the base64 alphabet', () => {
    const value = 'not*base64*at*all*but*long*enough*to*be*a*key';
    const message = configError({ MASTER_KEY: value });
    expect(message).toMatch(/^Invalid MASTER_KEY: /);
    expect(message).toContain('outside the base64 alphabet');
    expect(message).toContain('openssl rand -base64 32');
    expect(message).not.toContain(value);
  });

  it('rejects MASTER_KEY of the wrong length', () => {
    const value = randomBytes(16).toString('base64');
    const message = configError({ MASTER_KEY: value });
    expect(message).toMatch(/^Invalid MASTER_KEY: /);
    expect(message).toContain('decodes to 16 bytes');
    expect(message).toContain(`got ${value.length} characters, not shown`);
    expect(message).not.toContain(value);
    expect(message.split('\n')).toHaveLength(1);
  });

  it('rejects malformed MASTER_KEYS entries', () => {
    const outOfRange =
      'but versions must be from 1 to 2147483647, the range of the stored version column';
    const cases: [string, string][] = [
      [`2:${keyA},x:${keyB}`, 'entry 2 must be VERSION:BASE64'],
      [`0:${keyA}`, 'entry 1 must be VERSION:BASE64'],
      [keyA, 'entry 1 must be VERSION:BASE64'],
      [`3:${keyA},3:${keyB}`, 'version 3 appears twice'],
      [`3:${keyA},2:${randomBytes(31).toString('base64')}`, 'the key of version 2 must be 32 random bytes'],
      [`3:${keyA},2:${keyB}*`, 'the key of version 2 must be 32 random bytes'],
      [`2147483648:${keyA}`, `entry 1 has version 2147483648, ${outOfRange}`],
      [`3:${keyB},99999999999:${keyA}`, `entry 2 has version 99999999999, ${outOfRange}`],
      [`${'9'.repeat(400)}:${keyA}`, `entry 1 has version ${'9'.repeat(19)}…, ${outOfRange}`],
    ];
    for (const [value, expected] of cases) {
      const message = configError({ MASTER_KEYS: value });
      expect(message, value).toMatch(/^Invalid MASTER_KEYS: /);
      expect(message, value).toContain(expected);
      expect(message, value).not.toContain(keyA);
      expect(message, value).not.toContain(keyB);
    }
  });

  it('accepts the largest stored version', () => {
    const config = loadConfig({ NODE_ENV: 'test', MASTER_KEYS: `2147483647:${keyA}` });
    expect(config.masterKeys.map((entry) => entry.version)).toEqual([2147483647]);
  });

  it('rejects a version 1 that differs from MASTER_KEY', () => {
    const message = configError({ MASTER_KEY: keyA, MASTER_KEYS: `2:${keyC},1:${keyB}` });
    expect(message).toMatch(/^Invalid MASTER_KEYS: /);
    expect(message).toContain('different key than MASTER_KEY');
  });

  it('merges MASTER_KEY as version 1, newest first', () => {
    const config = loadConfig({ MASTER_KEY: keyA, MASTER_KEYS: ` 3:${keyC} , 2:${keyB}` });
    expect(config.masterKeys.map((entry) => entry.version)).toEqual([3, 2, 1]);
    expect(Buffer.from(config.masterKeys[0]!.key).toString('base64url')).toBe(keyC);
    expect(Buffer.from(config.masterKeys[2]!.key).toString('base64')).toBe(keyA);
    expect(JSON.stringify(config)).not.toContain(keyA);
    expect('MASTER_KEY' in config).toBe(false);
  });

  it('accepts the same version 1 in both variables', () => {
    const config = loadConfig({ MASTER_KEY: keyA, MASTER_KEYS: `1:${keyA}` });
    expect(config.masterKeys.map((entry) => entry.version)).toEqual([1]);
  });

  it('lists MASTER_KEY as missing with an external database', () => {
    const external = loadConfig({ DATABASE_URL: 'postgres://127.0.0.1:1/x' });
    expect(missingSettings(external).some((line) => line.startsWith('MASTER_KEY:'))).toBe(true);
    const bundled = loadConfig({});
    expect(missingSettings(bundled).some((line) => line.startsWith('MASTER_KEY:'))).toBe(false);
  });
});

describe('keyring', () => {
  let dataDir: string | undefined;
  afterEach(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    dataDir = undefined;
  });

  it('uses the configured keys', async () => {
    const { logger, lines } = capturedLogger();
    const config = loadConfig({ MASTER_KEYS: `2:${keyB},1:${keyA}`, DATABASE_URL: 'postgres://127.0.0.1:1/x' });
    const keyring = await loadKeyring(config, logger);
    expect(keyring.currentVersion).toBe(2);
    expect(keyring.versions).toEqual([2, 1]);
    expect(keyring.unavailableReason).toBeNull();
    expect(JSON.stringify(keyring)).toBe('{"versions":[2,1]}');
    expect(lines).toHaveLength(0);
  });

  it('treats a mismatched version as one it does not have', async () => {
    const config = loadConfig({ MASTER_KEYS: `2:${keyB},1:${keyA}`, DATABASE_URL: 'postgres://127.0.0.1:1/x' });
    const keyring = await loadKeyring(config, capturedLogger().logger);
    const stored = await encryptUserKey(new Keyring([{ version: 1, key: keyring.get(1)! }]), owner, 'gsk_mismatchedUnitTest0123456789');

    keyring.markMismatched([1]);
    expect(keyring.get(1)).toBeUndefined();
    expect(keyring.isMismatched(1)).toBe(true);
    expect(keyring.versions).toEqual([2, 1]);
    expect(keyring.unavailableReason).toBeNull();
    expect(keyring.current().version).toBe(2);
    await expect(decryptUserKey(keyring, owner, stored)).rejects.toMatchObject({ reason: 'mismatched_version' });
    expect(JSON.stringify(keyring)).toBe('{"versions":[2,1]}');

    // While the newest version is mismatched, nothing is encrypted.
    keyring.markMismatched([2]);
    expect(keyring.unavailableReason).toMatch(/^Own keys cannot be saved now: this server's master key version 2/);
    expect(() => keyring.current()).toThrow(/restore master key version 2/);
    await expect(encryptUserKey(keyring, owner, 'gsk_mismatchedUnitTest0123456789')).rejects.toThrow(
      /Own keys cannot be saved now/,
    );
  });

  it('stays empty with an external database and no key', async () => {
    const { logger } = capturedLogger();
    const config = loadConfig({ DATABASE_URL: 'postgres://127.0.0.1:1/x' });
    const keyring = await loadKeyring(config, logger);
    expect(keyring.currentVersion).toBeNull();
    expect(keyring.unavailableReason).toContain('set MASTER_KEY');
    expect(() => keyring.current()).toThrow(/set MASTER_KEY/);
  });

  it('generates a 0600 key file and reuses it', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'fixwright-keys-'));
    const config = loadConfig({ DATA_DIR: dataDir });
    const file = path.join(dataDir, generatedMasterKeyFile);

    const first = capturedLogger();
    const keyring = await loadKeyring(config, first.logger);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(Buffer.from((await readFile(file, 'utf8')).trim(), 'base64')).toHaveLength(32);
    expect(keyring.currentVersion).toBe(1);
    const warning = first.lines.find((line) => line.event === 'master_key.generated');
    expect(warning?.level).toBe(40);
    expect(String(warning?.msg)).toContain('Production must set MASTER_KEY');
    const encrypted = await encryptUserKey(keyring, owner, 'gsk_generated_file_key_0001');

    const second = capturedLogger();
    const reused = await loadKeyring(config, second.logger);
    expect(second.lines.map((line) => line.event)).toEqual(['master_key.file_used']);
    expect(second.lines[0]!.msg).toBe(
      `Using master key version 1 from ${file}, because MASTER_KEY and MASTER_KEYS are unset. ` +
        "Production must set MASTER_KEY, to that file's content if users have stored keys under " +
        'version 1. After "fixwright keys rotate" moved the stored keys to a later version, that ' +
        'file no longer decrypts them, so set MASTER_KEYS again with the versions they use, ' +
        'which master_key.version_missing names at start.',
    );
    expect(await decryptUserKey(reused, owner, encrypted)).toBe('gsk_generated_file_key_0001');
    const fileText = await readFile(file, 'utf8');
    expect(JSON.stringify([...first.lines, ...second.lines])).not.toContain(fileText.trim());
  });

  it('generates one key for starts at once', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'fixwright-keys-'));
    const config = loadConfig({ DATA_DIR: dataDir });
    const starts = Array.from({ length: 8 }, () => loadKeyring(config, capturedLogger().logger));
    const keyrings = await Promise.all(starts);

    const encrypted = await encryptUserKey(keyrings[0]!, owner, 'gsk_concurrent_start_key_001');
    for (const keyring of keyrings) {
      expect(await decryptUserKey(keyring, owner, encrypted)).toBe('gsk_concurrent_start_key_001');
    }
    // Only the key file is left, with no draft beside it.
    expect(await readdir(dataDir)).toEqual([generatedMasterKeyFile]);
  });

  it('tightens a key file readable by others', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'fixwright-keys-'));
    const file = path.join(dataDir, generatedMasterKeyFile);
    await writeFile(file, `${keyA}\n`);
    await chmod(file, 0o644);
    const { logger, lines } = capturedLogger();
    const keyring = await loadKeyring(loadConfig({ DATA_DIR: dataDir }), logger);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(lines.some((line) => line.event === 'master_key.file_mode_fixed')).toBe(true);
    const fromFile = new Keyring([{ version: 1, key: new Uint8Array(Buffer.from(keyA, 'base64')) }]);
    const encrypted = await encryptUserKey(fromFile, owner, 'gsk_existing_file_key_00001');
    expect(await decryptUserKey(keyring, owner, encrypted)).toBe('gsk_existing_file_key_00001');
  });

  it('rejects a key file that is a FIFO', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'fixwright-keys-'));
    const file = path.join(dataDir, generatedMasterKeyFile);
    execFileSync('mkfifo', ['-m', '644', file]);
    const { logger } = capturedLogger();

    await expect(loadKeyring(loadConfig({ DATA_DIR: dataDir }), logger)).rejects.toThrow(
      `Invalid master key file: ${JSON.stringify(file)} is a FIFO (named pipe), not a regular file. ` +
        'It must be a regular file that contains 32 random bytes in base64.',
    );
    // Only regular files get their mode tightened.
    expect((await stat(file)).mode & 0o777).toBe(0o644);
  });

  it('rejects a key file over 1 KiB', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'fixwright-keys-'));
    const file = path.join(dataDir, generatedMasterKeyFile);
    await writeFile(file, `${keyA}\n`.repeat(30), { mode: 0o600 });
    const { logger } = capturedLogger();

    await expect(loadKeyring(loadConfig({ DATA_DIR: dataDir }), logger)).rejects.toThrow(
      `Invalid master key file: ${JSON.stringify(file)} is 1350 bytes, over the limit of 1024 bytes.`,
    );
  });

  it('rejects a damaged key file', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'fixwright-keys-'));
    const file = path.join(dataDir, generatedMasterKeyFile);
    await writeFile(file, 'short\n', { mode: 0o600 });
    const { logger } = capturedLogger();
    await expect(loadKeyring(loadConfig({ DATA_DIR: dataDir }), logger)).rejects.toThrow(
      `Invalid master key file ${file}: it must hold 32 random bytes in base64`,
    );
  });
});
