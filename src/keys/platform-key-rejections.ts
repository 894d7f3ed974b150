import { createHash } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { platformKey } from '../autofix/provider-client.ts';
import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import { platformKeyRejections, providers, type Provider } from '../db/schema/index.ts';
import { providerNames } from '../llm/retry.ts';

/** A platform key as the rejection table identifies it: the provider and the key's hash. */
export interface PlatformKeyId {
  provider: Provider;
  keyHash: string;
}

/** A rejected platform key that is still configured. */
export interface PlatformKeyRejection {
  provider: Provider;
  /** HTTP status of the last rejection, when the provider sent one. */
  status: number | null;
  /** When the provider first rejected the key since it last accepted it. */
  rejectedAt: Date;
  /** When the next call may try the key again. */
  recheckAt: Date;
}

/**
 * Whether calls may use a platform key: `usable` when no rejection is recorded, `rejected` while
 * a recorded rejection is not due for a re-check, and `recheck` for the one call that claimed
 * the re-check that is due.
 */
export type PlatformKeyState =
  | { state: 'usable' }
  | { state: 'rejected'; status: number | null }
  | { state: 'recheck'; status: number | null };

/**
 * Returns the hex SHA-256 of a platform key. Provider keys are long random strings, so the hash
 * identifies the key without revealing it.
 */
export function hashPlatformKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Returns the id of `provider`'s configured platform key, or undefined when none is set. */
export function configuredPlatformKeyId(config: Config, provider: Provider): PlatformKeyId | undefined {
  const key = platformKey(config, provider);
  return key === undefined ? undefined : { provider, keyHash: hashPlatformKey(key) };
}

/**
 * Reads whether a platform key may be called. When its re-check is due, this call claims it,
 * moves `recheck_at` on by `recheckSeconds` and sets `recheck_started_at`, so that concurrent
 * files and processes send no request while one call tries the key. They can wait for the
 * outcome with readPlatformKeyRecheck.
 */
export async function checkPlatformKey(
  db: Database,
  key: PlatformKeyId,
  recheckSeconds: number,
): Promise<PlatformKeyState> {
  const [row] = await db
    .select({ status: platformKeyRejections.status, due: sql<boolean>`${platformKeyRejections.recheckAt} <= now()` })
    .from(platformKeyRejections)
    .where(matches(key));
  if (!row) return { state: 'usable' };
  if (!row.due) return { state: 'rejected', status: row.status };

  const claimed = await db
    .update(platformKeyRejections)
    .set({ recheckAt: sql`now() + make_interval(secs => ${recheckSeconds})`, recheckStartedAt: sql`now()` })
    .where(and(matches(key), sql`${platformKeyRejections.recheckAt} <= now()`))
    .returning({ status: platformKeyRejections.status });
  const [recheck] = claimed;
  return recheck ? { state: 'recheck', status: recheck.status } : { state: 'rejected', status: row.status };
}

/**
 * Returns the rejection of a platform key while it is not due for a re-check, or null. A due
 * re-check may pass at the next call, so this read does not claim it and returns null then.
 */
export async function findPendingPlatformKeyRejection(
  db: Database,
  key: PlatformKeyId,
): Promise<{ status: number | null } | null> {
  const [row] = await db
    .select({ status: platformKeyRejections.status })
    .from(platformKeyRejections)
    .where(and(matches(key), sql`${platformKeyRejections.recheckAt} > now()`));
  return row ?? null;
}

/**
 * A platform key's re-check as a waiting caller reads it: `usable` once the provider accepted
 * the key, `running` while a re-check claimed at most `maxWaitMs` ago has no outcome, and `idle`
 * otherwise. `claim` is the text of `recheck_at` in full precision, which only a claim and a
 * recorded rejection change. So a re-check that ended without a verdict leaves the `claim` that
 * waiting callers read while it ran.
 */
export type PlatformKeyRecheckState = { state: 'usable' } | { state: 'running' | 'idle'; claim: string };

/**
 * Reads whether a re-check of a platform key is running. A claim older than `maxWaitMs` counts
 * as ended, so a process that stopped during its re-check keeps no one waiting.
 */
export async function readPlatformKeyRecheck(
  db: Database,
  key: PlatformKeyId,
  maxWaitMs: number,
): Promise<PlatformKeyRecheckState> {
  const [row] = await db
    .select({
      running: sql<boolean>`coalesce(${platformKeyRejections.recheckStartedAt} > now() - make_interval(secs => ${maxWaitMs / 1000}), false)`,
      claim: sql<string>`${platformKeyRejections.recheckAt}::text`,
    })
    .from(platformKeyRejections)
    .where(matches(key));
  if (!row) return { state: 'usable' };
  return { state: row.running ? 'running' : 'idle', claim: row.claim };
}

/**
 * Marks the running re-check of a platform key as ended without an outcome, after an error
 * that gives no verdict on the key, such as a timeout. `recheck_at` stays as the claim set it,
 * so waiting callers in other processes can see that no verdict came.
 */
export async function endPlatformKeyRecheck(db: Database, key: PlatformKeyId): Promise<void> {
  await db.update(platformKeyRejections).set({ recheckStartedAt: null }).where(matches(key));
}

/**
 * Records that the provider rejected a platform key with HTTP `status`, sets its next re-check
 * `recheckSeconds` from now and ends a running re-check. Returns true when the key was not
 * recorded as rejected before, so the caller logs the change once.
 */
export async function recordPlatformKeyRejection(
  db: Database,
  key: PlatformKeyId,
  status: number | undefined,
  recheckSeconds: number,
): Promise<boolean> {
  const recheckAt = sql`now() + make_interval(secs => ${recheckSeconds})`;
  const [row] = await db
    .insert(platformKeyRejections)
    .values({ ...key, status: status ?? null, recheckAt })
    .onConflictDoUpdate({
      target: [platformKeyRejections.provider, platformKeyRejections.keyHash],
      set: { status: status ?? null, recheckAt, recheckStartedAt: null },
    })
    // xmax is 0 only on a row that this statement inserted.
    .returning({ inserted: sql<boolean>`xmax = 0` });
  return row?.inserted ?? false;
}

/**
 * Deletes the rejection of a platform key that the provider accepted again. Returns true when
 * a rejection was recorded, so the caller logs the change once.
 */
export async function clearPlatformKeyRejection(db: Database, key: PlatformKeyId): Promise<boolean> {
  const deleted = await db
    .delete(platformKeyRejections)
    .where(matches(key))
    .returning({ provider: platformKeyRejections.provider });
  return deleted.length > 0;
}

/** Returns the rejections of the platform keys that `config` sets, in provider order. */
export async function listPlatformKeyRejections(db: Database, config: Config): Promise<PlatformKeyRejection[]> {
  const rejections: PlatformKeyRejection[] = [];
  for (const provider of providers) {
    const key = configuredPlatformKeyId(config, provider);
    if (!key) continue;
    const [row] = await db.select().from(platformKeyRejections).where(matches(key));
    if (row) rejections.push({ provider, status: row.status, rejectedAt: row.rejectedAt, recheckAt: row.recheckAt });
  }
  return rejections;
}

function matches(key: PlatformKeyId) {
  return and(eq(platformKeyRejections.provider, key.provider), eq(platformKeyRejections.keyHash, key.keyHash));
}

/** Describes the rejection as the user's texts start it: "Groq rejected the platform Groq key …". */
export function describePlatformKeyRejection(provider: Provider, status: number | null | undefined): string {
  const name = providerNames[provider];
  const statusText = status == null ? '' : ` (HTTP ${status})`;
  return `${name} rejected the platform ${name} key that this service provides${statusText}`;
}

/** Builds the sentence that names who has to act on a rejected platform key. */
export function operatorMustReplace(provider: Provider): string {
  return `The operator of this service has to replace the platform ${providerNames[provider]} key.`;
}

/**
 * Builds the error of a file that was not previewed because the platform key of `provider` is
 * rejected and no own key of the user followed it.
 */
export function platformKeyRejectedReason(provider: Provider, status: number | null | undefined): string {
  return (
    `${describePlatformKeyRejection(provider, status)}, so this file was not previewed. ` +
    `${operatorMustReplace(provider)} Until then, you can save a key of your own on the keys ` +
    'page and regenerate this file.'
  );
}

/**
 * Builds the error of a preview that was not started because the platform key of `provider`,
 * the first key that would pay for it, is rejected and the user has no own key. `notDone` names
 * what did not happen, such as a file's regeneration.
 */
export function platformKeyRejectedPreviewReason(
  provider: Provider,
  status: number | null | undefined,
  notDone = 'no preview was started',
): string {
  return (
    `${describePlatformKeyRejection(provider, status)}, so ${notDone}. ` +
    `${operatorMustReplace(provider)} Until then, you can save a key of your own on the keys page.`
  );
}
