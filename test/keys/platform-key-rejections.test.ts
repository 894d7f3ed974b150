import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { platformKeyRejections } from '../../src/db/schema/index.ts';
import {
  checkPlatformKey,
  clearPlatformKeyRejection,
  endPlatformKeyRecheck,
  hashPlatformKey,
  readPlatformKeyRecheck,
  recordPlatformKeyRejection,
  type PlatformKeyId,
  type PlatformKeyRecheckState,
} from '../../src/keys/platform-key-rejections.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';

const key: PlatformKeyId = { provider: 'gemini', keyHash: hashPlatformKey('AIzaRejectionStateTest0123456789abcdef') };

let context: TestContext;

beforeAll(async () => {
  context = await createTestContext();
});
afterAll(async () => {
  await context?.close();
});
beforeEach(async () => {
  await context.db.delete(platformKeyRejections);
});

describe('platform key rejection state', () => {
  it('hashes the key with SHA-256', () => {
    expect(hashPlatformKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('reports a change only once', async () => {
    expect(await checkPlatformKey(context.db, key, 60)).toEqual({ state: 'usable' });
    expect(await recordPlatformKeyRejection(context.db, key, 403, 60)).toBe(true);
    expect(await recordPlatformKeyRejection(context.db, key, 401, 60)).toBe(false);
    expect(await checkPlatformKey(context.db, key, 60)).toEqual({ state: 'rejected', status: 401 });

    expect(await clearPlatformKeyRejection(context.db, key)).toBe(true);
    expect(await clearPlatformKeyRejection(context.db, key)).toBe(false);
    expect(await checkPlatformKey(context.db, key, 60)).toEqual({ state: 'usable' });
  });

  it('grants a due re-check to one caller', async () => {
    await recordPlatformKeyRejection(context.db, key, 403, 60);
    await context.db.update(platformKeyRejections).set({ recheckAt: sql`now() - interval '1 second'` });

    const states = await Promise.all(Array.from({ length: 5 }, () => checkPlatformKey(context.db, key, 60)));
    expect(states.filter((state) => state.state === 'recheck')).toEqual([{ state: 'recheck', status: 403 }]);
    expect(states.filter((state) => state.state === 'rejected')).toHaveLength(4);

    const [row] = await context.db
      .select({ seconds: sql<number>`extract(epoch FROM ${platformKeyRejections.recheckAt} - now())::float8` })
      .from(platformKeyRejections);
    expect(row!.seconds).toBeGreaterThan(55);
    expect(row!.seconds).toBeLessThanOrEqual(60);
  });

  it('reports a running re-check to others', async () => {
    const makeDue = () =>
      context.db.update(platformKeyRejections).set({ recheckAt: sql`now() - interval '1 second'` });
    const read = () => readPlatformKeyRecheck(context.db, key, 60_000);
    const claimOf = (state: PlatformKeyRecheckState) => (state.state === 'usable' ? null : state.claim);
    expect(await read()).toEqual({ state: 'usable' });
    await recordPlatformKeyRejection(context.db, key, 403, 60);
    const recorded = await read();
    expect(recorded.state).toBe('idle');

    await makeDue();
    expect(await checkPlatformKey(context.db, key, 60)).toEqual({ state: 'recheck', status: 403 });
    const running = await read();
    expect(running.state).toBe('running');
    const claim = claimOf(running);
    expect(claim).not.toBe(claimOf(recorded));
    // A claim older than the wait limit counts as ended, and keeps its recheck_at.
    await context.db.update(platformKeyRejections).set({ recheckStartedAt: sql`now() - interval '2 minutes'` });
    expect(await read()).toEqual({ state: 'idle', claim });

    // A new rejection changes recheck_at.
    await makeDue();
    await checkPlatformKey(context.db, key, 60);
    const rechecking = await read();
    expect(rechecking.state).toBe('running');
    expect(await recordPlatformKeyRejection(context.db, key, 401, 60)).toBe(false);
    const rejectedAgain = await read();
    expect(rejectedAgain.state).toBe('idle');
    expect(claimOf(rejectedAgain)).not.toBe(claimOf(rechecking));

    // A re-check without a verdict leaves recheck_at as its claim set it.
    await makeDue();
    await checkPlatformKey(context.db, key, 60);
    const ending = await read();
    expect(ending.state).toBe('running');
    await endPlatformKeyRecheck(context.db, key);
    expect(await read()).toEqual({ state: 'idle', claim: claimOf(ending) });
    expect(await checkPlatformKey(context.db, key, 60)).toEqual({ state: 'rejected', status: 401 });

    await makeDue();
    await checkPlatformKey(context.db, key, 60);
    await clearPlatformKeyRejection(context.db, key);
    expect(await read()).toEqual({ state: 'usable' });
  });
});
