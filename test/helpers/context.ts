import { Writable } from 'node:stream';
import { loadConfig, type Config } from '../../src/config/env.ts';
import type { AppContext } from '../../src/context.ts';
import { startBoss } from '../../src/jobs/boss.ts';
import { createQueues } from '../../src/jobs/workers.ts';
import { createLogger } from '../../src/logger.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

export interface TestContext extends AppContext {
  database: TestDatabase;
  /** Every log line written so far, parsed. */
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/** Fresh database, pg-boss with queues (no workers) and a logger captured in memory. */
export async function createTestContext(env: Record<string, string> = {}): Promise<TestContext> {
  const database = await createTestDatabase();
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const config: Config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'debug', ...env });
  const logger = createLogger(config.LOG_LEVEL, sink);
  const boss = await startBoss(database.url, logger);
  await createQueues(boss);
  return {
    config,
    db: database.db,
    boss,
    logger,
    github: null,
    database,
    logs,
    async close() {
      await boss.stop({ graceful: false, wait: true });
      await database.close();
    },
  };
}
