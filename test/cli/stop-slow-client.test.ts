// A client that sends its request a byte at a time must not hold up a stop. Node.js stops
// enforcing the request timeout once the server is closing, so the stop closes what is left.
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { waitFor } from '../helpers/process.ts';
import { startServiceProcess, type ServiceProcess } from '../helpers/service.ts';

let database: TestDatabase;
let service: ServiceProcess | undefined;

beforeAll(async () => {
  database = await createTestDatabase();
}, 60_000);

afterAll(async () => {
  await service?.stop('SIGKILL');
  await database?.close();
});

it('stops despite a trickling client', async () => {
  service = await startServiceProcess({
    DATABASE_URL: database.url,
    REQUEST_TIMEOUT_SECONDS: '2',
    SHUTDOWN_TIMEOUT_SECONDS: '1',
  });
  const { port } = new URL(service.url);
  const socket = net.connect(Number(port), '127.0.0.1');
  let socketClosed = false;
  socket.on('close', () => (socketClosed = true));
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  // One header line a second, for at most 30 s, keeps the request incomplete.
  let lines = 0;
  const trickle = setInterval(() => {
    if (socket.writable && lines < 30) socket.write(`X-Line-${lines++}: x\r\n`);
  }, 1000);
  try {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const exited = new Promise<number | null>((resolve) => service!.process.once('exit', (code) => resolve(code)));
    service.process.kill('SIGTERM');

    const code = await exited;

    expect(code, service.output()).toBe(0);
    expect(service.output()).toContain('"event":"service.stopped"');
    await waitFor(async () => socketClosed, { timeoutMs: 5_000, describe: () => 'the slow connection to close' });
    expect(lines).toBeLessThan(30);
  } finally {
    clearInterval(trickle);
    socket.destroy();
  }
}, 90_000);
