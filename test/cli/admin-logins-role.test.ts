// ADMIN_LOGINS is applied at start by the processes that sign users in, not by workers, so a
// worker given another list cannot change roles or forget recorded GitHub ids.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { adminLogins, users } from '../../src/db/schema/index.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { cliEnv, spawnCli } from '../helpers/process.ts';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
}, 60_000);

afterAll(async () => {
  await database?.close();
});

async function roleOf(id: string): Promise<string> {
  const [row] = await database.db.select({ role: users.role }).from(users).where(eq(users.id, id));
  return row!.role;
}

async function recordedLogins(): Promise<string[]> {
  const rows = await database.db.select({ login: adminLogins.login }).from(adminLogins);
  return rows.map((row) => row.login).sort();
}

/** Starts `fixwright start --role ROLE`, waits until it has started, and stops it. */
async function startAndStop(role: string): Promise<string> {
  const command = spawnCli(
    ['start', '--role', role],
    cliEnv({ DATABASE_URL: database.url, ADMIN_LOGINS: 'newcomer' }),
  );
  try {
    await command.waitUntil(() => command.output().includes('"event":"service.started"'), `the ${role} to start`);
    command.child.kill('SIGTERM');
    const exit = await command.exit();
    expect(exit.code, command.output()).toBe(0);
    return command.output();
  } finally {
    command.kill();
  }
}

it('worker start leaves roles to web', async () => {
  const [admin] = await database.db
    .insert(users)
    .values({ login: 'first-admin', githubId: 501, role: 'admin' })
    .returning();
  await database.db.insert(adminLogins).values({ login: 'first-admin', githubId: 501 });

  const workerOutput = await startAndStop('worker');

  expect(workerOutput).not.toContain('"event":"users.roles_synced"');
  expect(await roleOf(admin!.id)).toBe('admin');
  expect(await recordedLogins()).toEqual(['first-admin']);

  const webOutput = await startAndStop('web');

  expect(webOutput).toContain('"event":"users.roles_synced"');
  expect(await roleOf(admin!.id)).toBe('user');
  expect(await recordedLogins()).toEqual([]);

  // Only the web process listens, so only its start line names an address.
  const workerStarted = startedLine(workerOutput);
  expect(workerStarted.role).toBe('worker');
  expect(workerStarted).not.toHaveProperty('host');
  expect(workerStarted).not.toHaveProperty('port');
  const webStarted = startedLine(webOutput);
  expect(webStarted.host).toBe('127.0.0.1');
  expect(webStarted.port).toBeTypeOf('number');
}, 120_000);

/** Returns the `service.started` log line of a command's output as an object. */
function startedLine(output: string): Record<string, unknown> {
  const line = output.split('\n').find((entry) => entry.includes('"event":"service.started"'));
  expect(line).toBeDefined();
  return JSON.parse(line!) as Record<string, unknown>;
}
