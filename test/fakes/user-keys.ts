import type { AppContext } from '../../src/context.ts';
import type { Database } from '../../src/db/client.ts';
import type { Provider } from '../../src/db/schema/index.ts';

/**
 * In-memory stand-in for src/keys/user-keys.ts with the same exports, for page tests through
 * vi.mock. A key that starts with "bad" is rejected, as a provider would reject it.
 */

interface StoredKey {
  provider: Provider;
  lastFour: string;
  createdAt: Date;
  updatedAt: Date;
  lastUsedAt: Date | null;
  unusableReason: string | null;
}

export const storedKeys = new Map<string, StoredKey>();

function keyOf(userId: string, provider: Provider): string {
  return `${userId}:${provider}`;
}

export async function listUserKeys(_context: AppContext, userId: string): Promise<StoredKey[]> {
  return [...storedKeys.entries()]
    .filter(([key]) => key.startsWith(`${userId}:`))
    .map(([, value]) => value);
}

export async function saveUserKey(
  _context: AppContext,
  input: { userId: string; provider: Provider; key: string },
): Promise<
  | { ok: true; info: StoredKey }
  | { ok: false; reason: string; cause: 'invalid' | 'rejected' | 'unavailable' }
> {
  if (input.key.startsWith('bad')) {
    return {
      ok: false,
      reason: `The ${input.provider} key was rejected: check that you copied all of it.`,
      cause: 'rejected',
    };
  }
  if (input.key.startsWith('down')) {
    return { ok: false, reason: `Could not check the key with ${input.provider}.`, cause: 'unavailable' };
  }
  const now = new Date();
  const existing = storedKeys.get(keyOf(input.userId, input.provider));
  const info: StoredKey = {
    provider: input.provider,
    lastFour: input.key.slice(-4),
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
    lastUsedAt: null,
    unusableReason: null,
  };
  storedKeys.set(keyOf(input.userId, input.provider), info);
  return { ok: true, info };
}

export async function deleteUserKey(
  _db: Database,
  input: { userId: string; provider: Provider },
): Promise<boolean> {
  return storedKeys.delete(keyOf(input.userId, input.provider));
}

export const providerOrders = new Map<string, Provider[]>();

export async function getProviderOrder(_db: Database, userId: string): Promise<Provider[]> {
  return providerOrders.get(userId) ?? ['groq', 'gemini'];
}

export async function setProviderOrder(
  _db: Database,
  input: { userId: string; order: Provider[] },
): Promise<void> {
  providerOrders.set(input.userId, input.order);
}
