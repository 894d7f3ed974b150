import type { AppContext } from '../context.ts';
import type { Database } from '../db/client.ts';
import type { Provider } from '../db/schema/index.ts';

// NOTE: stand-in with the signatures of the user key service, which is built on another
// branch; that branch's file replaces this one at merge.

export interface UserKeyInfo {
  provider: Provider;
  lastFour: string;
  createdAt: Date;
  updatedAt: Date;
  lastUsedAt: Date | null;
  unusableReason: string | null;
}

export async function listUserKeys(_db: Database, _userId: string): Promise<UserKeyInfo[]> {
  throw new Error('not implemented');
}

export async function saveUserKey(
  _context: AppContext,
  _input: { userId: string; provider: Provider; key: string },
): Promise<{ ok: true; info: UserKeyInfo } | { ok: false; reason: string }> {
  throw new Error('not implemented');
}

export async function deleteUserKey(
  _db: Database,
  _input: { userId: string; provider: Provider },
): Promise<boolean> {
  throw new Error('not implemented');
}
