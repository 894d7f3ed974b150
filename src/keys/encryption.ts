import sodium from 'libsodium-wrappers';
import type { Provider } from '../db/schema/index.ts';
import type { Keyring } from './master-keys.ts';

/** A provider key as stored: base64url ciphertext (tag included), nonce and key version. */
export interface EncryptedKey {
  ciphertext: string;
  nonce: string;
  masterKeyVersion: number;
}

/** Whose key it is; bound to the ciphertext as associated data. */
export interface KeyOwner {
  userId: string;
  provider: Provider;
}

/**
 * Raised when a stored key cannot be decrypted. `reason` separates a master key version that
 * is not configured, or that this process found mismatched at start, from a ciphertext that
 * fails authentication (tampered, copied to another user or provider, or encrypted under a
 * different key with the same version).
 */
export class KeyDecryptionError extends Error {
  override name = 'KeyDecryptionError';
  constructor(
    message: string,
    readonly reason: 'missing_version' | 'mismatched_version' | 'authentication',
  ) {
    super(message);
  }
}

function associatedData(owner: KeyOwner): string {
  return `${owner.userId}:${owner.provider}`;
}

/**
 * Encrypts a provider key with XChaCha20-Poly1305 under the keyring's newest master key and a
 * fresh random 24-byte nonce. Throws KeyringUnavailableError when no master key is configured.
 */
export async function encryptUserKey(
  keyring: Keyring,
  owner: KeyOwner,
  plaintext: string,
): Promise<EncryptedKey> {
  await sodium.ready;
  const { version, key } = keyring.current();
  const nonce = sodium.randombytes_buf(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  const ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
    plaintext,
    associatedData(owner),
    null,
    nonce,
    key,
  );
  const variant = sodium.base64_variants.URLSAFE_NO_PADDING;
  return {
    ciphertext: sodium.to_base64(ciphertext, variant),
    nonce: sodium.to_base64(nonce, variant),
    masterKeyVersion: version,
  };
}

/** Decrypts a stored provider key; throws KeyDecryptionError when that is not possible. */
export async function decryptUserKey(
  keyring: Keyring,
  owner: KeyOwner,
  stored: EncryptedKey,
): Promise<string> {
  await sodium.ready;
  const key = keyring.get(stored.masterKeyVersion);
  if (!key && keyring.isMismatched(stored.masterKeyVersion)) {
    throw new KeyDecryptionError(
      `master key version ${stored.masterKeyVersion} did not match the stored keys at start`,
      'mismatched_version',
    );
  }
  if (!key) {
    throw new KeyDecryptionError(
      `master key version ${stored.masterKeyVersion} is not configured`,
      'missing_version',
    );
  }

  let plaintext: Uint8Array;
  try {
    const variant = sodium.base64_variants.URLSAFE_NO_PADDING;
    const nonce = sodium.from_base64(stored.nonce, variant);
    const ciphertext = sodium.from_base64(stored.ciphertext, variant);
    plaintext = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
      null,
      ciphertext,
      associatedData(owner),
      nonce,
      key,
    );
  } catch {
    // libsodium raises one message for a wrong key, a changed ciphertext or wrong associated data.
    throw new KeyDecryptionError(
      `authentication failed under master key version ${stored.masterKeyVersion}`,
      'authentication',
    );
  }
  const text = sodium.to_string(plaintext);
  sodium.memzero(plaintext);
  return text;
}
