import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decryptUserKey, encryptUserKey, KeyDecryptionError } from '../../src/keys/encryption.ts';
import { Keyring, KeyringUnavailableError } from '../../src/keys/master-keys.ts';

const material = (version: number) => ({ version, key: new Uint8Array(randomBytes(32)) });
const alice = { userId: '6f1d5c3a-8a43-4f55-8d0e-2b9d1f6e7a01', provider: 'groq' as const };
const bob = { userId: '6f1d5c3a-8a43-4f55-8d0e-2b9d1f6e7a02', provider: 'groq' as const };
const key = 'gsk_encryption_test_key_0123456789abcdef';

async function decryptionFailure(promise: Promise<string>): Promise<KeyDecryptionError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(KeyDecryptionError);
  return error as KeyDecryptionError;
}

describe('user key encryption', () => {
  it('decrypts what it encrypted', async () => {
    const keyring = new Keyring([material(1)]);
    const encrypted = await encryptUserKey(keyring, alice, key);
    expect(encrypted.masterKeyVersion).toBe(1);
    expect(Buffer.from(encrypted.nonce, 'base64url')).toHaveLength(24);
    // XChaCha20-Poly1305 adds a 16-byte tag to the plaintext.
    expect(Buffer.from(encrypted.ciphertext, 'base64url')).toHaveLength(key.length + 16);
    expect(await decryptUserKey(keyring, alice, encrypted)).toBe(key);
  });

  it('uses a fresh nonce each time', async () => {
    const keyring = new Keyring([material(1)]);
    const first = await encryptUserKey(keyring, alice, key);
    const second = await encryptUserKey(keyring, alice, key);
    expect(first.nonce).not.toBe(second.nonce);
    expect(first.ciphertext).not.toBe(second.ciphertext);
  });

  it('encrypts under the newest version', async () => {
    const keyring = new Keyring([material(2), material(7), material(1)]);
    const encrypted = await encryptUserKey(keyring, alice, key);
    expect(encrypted.masterKeyVersion).toBe(7);
  });

  it('rejects a ciphertext of another user', async () => {
    const keyring = new Keyring([material(1)]);
    const encrypted = await encryptUserKey(keyring, alice, key);
    const error = await decryptionFailure(decryptUserKey(keyring, bob, encrypted));
    expect(error.reason).toBe('authentication');
  });

  it('rejects a ciphertext of another provider', async () => {
    const keyring = new Keyring([material(1)]);
    const encrypted = await encryptUserKey(keyring, alice, key);
    const error = await decryptionFailure(
      decryptUserKey(keyring, { ...alice, provider: 'gemini' }, encrypted),
    );
    expect(error.reason).toBe('authentication');
  });

  it('rejects a tampered ciphertext', async () => {
    const keyring = new Keyring([material(1)]);
    const encrypted = await encryptUserKey(keyring, alice, key);
    const bytes = Buffer.from(encrypted.ciphertext, 'base64url');
    bytes[3]! ^= 0x01;
    const tampered = { ...encrypted, ciphertext: bytes.toString('base64url') };
    const error = await decryptionFailure(decryptUserKey(keyring, alice, tampered));
    expect(error.reason).toBe('authentication');
    expect(error.message).not.toContain(key);
  });

  it('rejects a different key with the same version', async () => {
    const encrypted = await encryptUserKey(new Keyring([material(1)]), alice, key);
    const error = await decryptionFailure(decryptUserKey(new Keyring([material(1)]), alice, encrypted));
    expect(error.reason).toBe('authentication');
  });

  it('names a version that is not configured', async () => {
    const encrypted = await encryptUserKey(new Keyring([material(1)]), alice, key);
    const error = await decryptionFailure(decryptUserKey(new Keyring([material(2)]), alice, encrypted));
    expect(error.reason).toBe('missing_version');
    expect(error.message).toBe('master key version 1 is not configured');
  });

  it('refuses to encrypt without a master key', async () => {
    const keyring = new Keyring([], 'No master key: set MASTER_KEY.');
    await expect(encryptUserKey(keyring, alice, key)).rejects.toBeInstanceOf(KeyringUnavailableError);
    await expect(encryptUserKey(keyring, alice, key)).rejects.toThrow('No master key: set MASTER_KEY.');
  });
});
