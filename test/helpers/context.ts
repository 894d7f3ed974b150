import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { loadConfig, type Config } from '../../src/config/env.ts';
import type { AppContext } from '../../src/context.ts';
import { startBoss } from '../../src/jobs/boss.ts';
import { createQueues } from '../../src/jobs/workers.ts';
import { Keyring } from '../../src/keys/master-keys.ts';
import { createLogger } from '../../src/logger.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { offlineBaseUrls } from './offline-urls.ts';

export interface TestContext extends AppContext {
  database: TestDatabase;
  /** Every log line written so far, parsed. */
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/**
 * A platform Groq key for tests that start previews. Without a platform key or an own key, a
 * preview start is rejected. The offline GROQ_BASE_URL keeps its calls on the machine.
 */
export const testPlatformKeys = { GROQ_API_KEY: 'gsk_test_platform_key_0123456789' } as const;

/**
 * Fresh database, pg-boss with queues (no workers) and a logger captured in memory. The
 * keyring comes from MASTER_KEY / MASTER_KEYS in `env`, else it is one random key (version 1)
 * held in memory, unless `options.keyring` is given.
 */
export async function createTestContext(
  env: Record<string, string> = {},
  options: { keyring?: Keyring } = {},
): Promise<TestContext> {
  const database = await createTestDatabase();
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const config: Config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'debug', ...offlineBaseUrls, ...env });
  const logger = createLogger(config.LOG_LEVEL, sink);
  const keyring =
    options.keyring ??
    new Keyring(
      config.masterKeys.length > 0
        ? config.masterKeys
        : [{ version: 1, key: new Uint8Array(randomBytes(32)) }],
    );
  const boss = await startBoss(database.url, logger);
  await createQueues(boss);
  return {
    config,
    db: database.db,
    boss,
    logger,
    github: null,
    keyring,
    database,
    logs,
    async close() {
      await boss.stop({ graceful: false, wait: true });
      await database.close();
    },
  };
}

/**
 * Returns the log lines of `context` whose event is `event`, oldest first. With `fields`, only
 * the lines in which each of those fields is strictly equal (`===`) to the given value.
 */
export function logsOf(
  context: TestContext,
  event: string,
  fields: Record<string, unknown> = {},
): Record<string, unknown>[] {
  const expected = Object.entries(fields);
  return context.logs.filter(
    (line) => line.event === event && expected.every(([name, value]) => line[name] === value),
  );
}
