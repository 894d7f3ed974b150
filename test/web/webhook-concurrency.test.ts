import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { ServerType } from '@hono/node-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/web/app.tsx';
import { serveHttp } from '../../src/web/http-server.ts';
import { ByteBudget } from '../../src/web/read-limited-body.ts';
import { maxWebhookBytes } from '../../src/web/webhook-size.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { waitFor } from '../helpers/process.ts';
import { examplePayload, examplePullRequestEvent, waitForLockWait } from '../helpers/webhooks.ts';

const secret = 'webhook-secret-for-tests';
const pingBody = JSON.stringify({ zen: 'Slow and steady.' });

let context: TestContext;
const servers: ServerType[] = [];
const sockets: net.Socket[] = [];

beforeAll(async () => {
  context = await createTestContext({ WEBHOOK_SECRET: secret, WEBHOOK_MAX_CONCURRENT: '1' });
});

afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
});

afterAll(async () => {
  for (const server of servers) {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    (server as unknown as { closeAllConnections(): void }).closeAllConnections();
    await closed;
  }
  await context?.close();
});

/**
 * Serves the app of the test context as `fixwright start` does, with WEBHOOK_MAX_CONCURRENT set
 * to `maxConcurrent` and the request timeout of the configuration unless `requestTimeoutSeconds`
 * is given. `queue` sets WEBHOOK_MAX_WAITING and WEBHOOK_MAX_WAIT_MS, which default to 0 waiting
 * deliveries, so a delivery beyond the limit gets 503 at once. `bodyTimeoutMs` sets
 * WEBHOOK_BODY_TIMEOUT_MS. Returns the budget of webhook bodies not processed yet as well.
 */
async function startServer(
  maxConcurrent: number,
  requestTimeoutSeconds = context.config.REQUEST_TIMEOUT_SECONDS,
  queue: { maxWaiting: number; maxWaitMs: number } = { maxWaiting: 0, maxWaitMs: 0 },
  bodyTimeoutMs = context.config.WEBHOOK_BODY_TIMEOUT_MS,
): Promise<{ server: ServerType; port: number; budget: ByteBudget }> {
  const budget = new ByteBudget(maxConcurrent * maxWebhookBytes);
  const app = createApp(
    {
      ...context,
      config: {
        ...context.config,
        WEBHOOK_MAX_CONCURRENT: maxConcurrent,
        WEBHOOK_MAX_WAITING: queue.maxWaiting,
        WEBHOOK_MAX_WAIT_MS: queue.maxWaitMs,
        WEBHOOK_BODY_TIMEOUT_MS: bodyTimeoutMs,
      },
    },
    { webhookBodyBudget: budget },
  );
  const server = serveHttp(app.fetch, { hostname: '127.0.0.1', port: 0, requestTimeoutSeconds });
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return { server, port: (server.address() as AddressInfo).port, budget };
}

/** Waits up to 10 s until `budget` has exactly `bytes` charged. */
async function waitForBudget(budget: ByteBudget, bytes: number): Promise<void> {
  await waitFor(async () => budget.usedBytes === bytes, {
    timeoutMs: 10_000,
    intervalMs: 20,
    describe: () => `the body budget to hold ${bytes} bytes; it holds ${budget.usedBytes}`,
  });
}

/** Returns the log lines of `event` that were written from index `from` of the test logs on. */
function logsFrom(from: number, event: string) {
  return context.logs.slice(from).filter((line) => line.event === event);
}

function sign(body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

function postDelivery(
  port: number,
  deliveryId: string,
  signature: string,
  body = pingBody,
  event = 'ping',
) {
  return fetch(`http://127.0.0.1:${port}/webhooks/github`, {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': event,
      'x-github-delivery': deliveryId,
      'x-hub-signature-256': signature,
    },
  });
}

/**
 * Opens a raw connection that sends the headers of a ping delivery with the given
 * Content-Length and signature, then `firstBytes` of body, then one more byte every
 * `intervalMs`. `closed` resolves with everything the server sent once it closes the connection.
 */
function openSlowDelivery(
  port: number,
  input: { deliveryId: string; contentLength: number; signature: string; firstBytes?: number; intervalMs?: number },
) {
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  // Writes after the server closed the connection fail with EPIPE or ECONNRESET.
  socket.on('error', () => undefined);
  socket.write(
    'POST /webhooks/github HTTP/1.1\r\n' +
      'Host: 127.0.0.1\r\n' +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${input.contentLength}\r\n` +
      'X-GitHub-Event: ping\r\n' +
      `X-GitHub-Delivery: ${input.deliveryId}\r\n` +
      `X-Hub-Signature-256: ${input.signature}\r\n` +
      '\r\n',
  );
  socket.write(' '.repeat(input.firstBytes ?? 1));
  const timer = setInterval(() => socket.write(' '), input.intervalMs ?? 200);
  const closed = new Promise<string>((resolve) => {
    socket.once('close', () => {
      clearInterval(timer);
      resolve(received);
    });
  });
  return { socket, closed };
}

/** Resolves once `server` has received the headers of `count` requests. */
function requestsReceived(server: ServerType, count: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const onRequest = (_request: IncomingMessage) => {
      seen += 1;
      if (seen < count) return;
      server.off('request', onRequest);
      resolve();
    };
    server.on('request', onRequest);
  });
}

/**
 * Posts a ping delivery with id `deliveryId` that waits at its insert behind an uncommitted row
 * with the same id, and so keeps its slot until `release` rolls that row back. Resolves once the
 * delivery waits for that lock. `release` returns the delivery's response.
 */
async function holdDelivery(port: number, deliveryId: string) {
  let rollBack!: () => void;
  const rolledBack = new Promise<void>((resolve) => (rollBack = resolve));
  let inserted!: () => void;
  const rowInserted = new Promise<void>((resolve) => (inserted = resolve));
  const holder = context.database.sql
    .begin(async (sql) => {
      await sql`INSERT INTO webhook_deliveries (delivery_id, event) VALUES (${deliveryId}, 'ping')`;
      inserted();
      await rolledBack;
      throw new Error('roll back');
    })
    .catch(() => undefined);
  await rowInserted;
  const response = postDelivery(port, deliveryId, sign(pingBody));
  await waitForLockWait(context);
  return {
    release: async () => {
      rollBack();
      await holder;
      return response;
    },
  };
}

/** Resolves `delayMs` after `server` has received the headers of `count` more requests. */
async function requestsSettled(server: ServerType, count: number, delayMs: number): Promise<void> {
  await requestsReceived(server, count);
  await new Promise((resolve) => setTimeout(resolve, delayMs));
}

describe('POST /webhooks/github under load', () => {
  it('accepts signed delivery beside slow bodies', async () => {
    const { server, port } = await startServer(8);
    const received = requestsReceived(server, 8);
    const slow = Array.from({ length: 8 }, (_, index) =>
      openSlowDelivery(port, {
        deliveryId: `slow-${index}`,
        contentLength: 1_000_000,
        signature: 'sha256=00',
      }),
    );
    await received;
    // The handlers of the slow requests have started reading their bodies.
    await new Promise((resolve) => setTimeout(resolve, 100));

    const response = await postDelivery(port, 'signed-beside-slow', sign(pingBody));

    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ delivery: 'signed-beside-slow', outcome: 'pong' });
    for (const connection of slow) expect(connection.socket.destroyed).toBe(false);
  });

  it('returns 503 beyond the signed limit', async () => {
    const { port } = await startServer(1);
    const held = await holdDelivery(port, 'held');

    const rejected = await postDelivery(port, 'beyond-limit', sign(pingBody));

    expect(rejected.status).toBe(503);
    expect(rejected.headers.get('retry-after')).toBe('1');
    const { error } = await rejected.json();
    expect(error.code).toBe('service_unavailable');
    expect(error.message).toBe(
      'Too many webhook deliveries: 1 are processing (WEBHOOK_MAX_CONCURRENT) and 0 are ' +
        'waiting (WEBHOOK_MAX_WAITING). GitHub does not redeliver by itself: redeliver this ' +
        "one from the GitHub App's Recent Deliveries.",
    );
    const warning = context.logs.find(
      (line) => line.event === 'webhook.rejected' && line.deliveryId === 'beyond-limit',
    );
    expect(warning).toMatchObject({ status: 503, githubEvent: 'ping' });

    expect((await held.release()).status).toBe(202);
    // The slot is free again.
    expect((await postDelivery(port, 'after-held', sign(pingBody))).status).toBe(202);
  });

  it('lets a delivery wait for a slot', async () => {
    const { server, port } = await startServer(1, undefined, { maxWaiting: 1, maxWaitMs: 10_000 });
    const held = await holdDelivery(port, 'held-for-waiting');
    const arrived = requestsSettled(server, 1, 200);
    const waiting = postDelivery(port, 'waiting', sign(pingBody));
    await arrived;

    const queueFull = await postDelivery(port, 'queue-full', sign(pingBody));

    expect(queueFull.status).toBe(503);
    expect((await queueFull.json()).error.message).toContain(
      '1 are processing (WEBHOOK_MAX_CONCURRENT) and 1 are waiting (WEBHOOK_MAX_WAITING)',
    );
    expect((await held.release()).status).toBe(202);
    const accepted = await waiting;
    expect(accepted.status).toBe(202);
    expect(await accepted.json()).toEqual({ delivery: 'waiting', outcome: 'pong' });
    const [row] = await context.database.sql<{ outcome: string }[]>`
      SELECT outcome FROM webhook_deliveries WHERE delivery_id = 'waiting'`;
    expect(row?.outcome).toBe('pong');
  });

  it('returns 503 when the wait runs out', async () => {
    const { port } = await startServer(1, undefined, { maxWaiting: 5, maxWaitMs: 300 });
    const held = await holdDelivery(port, 'held-past-wait');
    const started = Date.now();

    const rejected = await postDelivery(port, 'wait-ran-out', sign(pingBody));

    const elapsed = Date.now() - started;
    expect(rejected.status).toBe(503);
    expect(rejected.headers.get('retry-after')).toBe('1');
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(3000);
    expect((await rejected.json()).error.message).toBe(
      'No webhook delivery slot came free within 300 ms (WEBHOOK_MAX_WAIT_MS) while 1 ' +
        'deliveries were processing (WEBHOOK_MAX_CONCURRENT). GitHub does not redeliver by ' +
        "itself: redeliver this one from the GitHub App's Recent Deliveries.",
    );
    const warning = context.logs.find(
      (line) => line.event === 'webhook.rejected' && line.deliveryId === 'wait-ran-out',
    );
    expect(warning).toMatchObject({ status: 503, code: 'service_unavailable' });
    const stored = await context.database.sql`
      SELECT 1 FROM webhook_deliveries WHERE delivery_id = 'wait-ran-out'`;
    expect(stored).toHaveLength(0);

    expect((await held.release()).status).toBe(202);
    // The waiter whose wait ran out left the queue, so the next delivery gets the slot at once.
    expect((await postDelivery(port, 'after-wait', sign(pingBody))).status).toBe(202);
  });

  it('accepts a burst of 40 pull requests', async () => {
    // The defaults: WEBHOOK_MAX_CONCURRENT 8, WEBHOOK_MAX_WAITING 100, WEBHOOK_MAX_WAIT_MS 5000.
    const { port } = await startServer(8, undefined, {
      maxWaiting: context.config.WEBHOOK_MAX_WAITING,
      maxWaitMs: context.config.WEBHOOK_MAX_WAIT_MS,
    });
    expect([context.config.WEBHOOK_MAX_WAITING, context.config.WEBHOOK_MAX_WAIT_MS]).toEqual([
      100, 5000,
    ]);
    const bodies = Array.from({ length: 40 }, (_, index) =>
      JSON.stringify(
        examplePullRequestEvent('opened', {
          installationId: 7100,
          repositoryId: 7100,
          repository: 'octo-org/burst',
          number: 100 + index,
        }),
      ),
    );

    const responses = await Promise.all(
      bodies.map((body, index) =>
        postDelivery(port, `burst-${index}`, sign(body), body, 'pull_request'),
      ),
    );

    expect(responses.map((response) => response.status)).toEqual(bodies.map(() => 202));
    const runs = await context.database.sql<{ pr_number: number }[]>`
      SELECT pr_number FROM pr_runs WHERE repository_id = 7100 ORDER BY pr_number`;
    expect(runs.map((run) => run.pr_number)).toEqual(bodies.map((_, index) => 100 + index));
  });

  it('charges waiting bodies to the memory budget', async () => {
    // With WEBHOOK_MAX_CONCURRENT=1 the bodies not processed yet may hold 25 MB together, so a
    // 20 MB body waiting for the slot leaves no room for a second one of 10 MB.
    const { server, port } = await startServer(1, undefined, { maxWaiting: 5, maxWaitMs: 10_000 });
    const held = await holdDelivery(port, 'held-for-budget');
    const largeBody = JSON.stringify({ zen: 'x'.repeat(20 * 1024 * 1024) });
    const secondBody = JSON.stringify({ zen: 'y'.repeat(10 * 1024 * 1024) });
    const arrived = requestsSettled(server, 1, 1000);
    const waiting = postDelivery(port, 'waiting-large', sign(largeBody), largeBody);
    await arrived;

    const rejected = await postDelivery(port, 'second-large', sign(secondBody), secondBody);

    expect(rejected.status).toBe(503);
    expect((await rejected.json()).error.message).toContain(
      `waiting for a slot would hold more than ${maxWebhookBytes} bytes`,
    );
    expect((await held.release()).status).toBe(202);
    expect((await waiting).status).toBe(202);
    // The charge of the large body ended when it got the slot.
    const accepted = await postDelivery(port, 'after-large', sign(secondBody), secondBody);
    expect(accepted.status).toBe(202);
  });

  it('keeps waiting bodies as bytes only', async () => {
    // The budget charges a waiting body's bytes, so the body must not also wait decoded.
    const v8 = await import('node:v8');
    const vm = await import('node:vm');
    v8.setFlagsFromString('--expose_gc');
    const collectGarbage = vm.runInNewContext('gc') as () => void;
    const usedMemory = () => {
      collectGarbage();
      collectGarbage();
      const memory = process.memoryUsage();
      return memory.heapUsed + memory.external;
    };
    const { server, port } = await startServer(1, undefined, { maxWaiting: 5, maxWaitMs: 20_000 });
    const held = await holdDelivery(port, 'held-for-memory');
    const body = Buffer.from(JSON.stringify({ zen: 'x'.repeat(24 * 1024 * 1024) }));
    const signature = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    const before = usedMemory();
    const arrived = requestsSettled(server, 1, 0);
    const socket = net.connect(port, '127.0.0.1');
    sockets.push(socket);
    socket.on('error', () => undefined);
    let response = '';
    socket.on('data', (chunk) => (response += chunk));
    socket.write(
      'POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
        `Content-Length: ${body.length}\r\nX-GitHub-Event: ping\r\n` +
        `X-GitHub-Delivery: waiting-memory\r\nX-Hub-Signature-256: ${signature}\r\n\r\n`,
    );
    await new Promise<void>((resolve) => socket.write(body, () => resolve()));
    await arrived;
    await new Promise((resolve) => setTimeout(resolve, 1500));

    const heldWhileWaiting = usedMemory() - before;

    expect(heldWhileWaiting).toBeLessThan(body.length * 1.25);
    expect((await held.release()).status).toBe(202);
    await waitFor(async () => response.startsWith('HTTP/1.1 202'), {
      timeoutMs: 10_000,
      describe: () => `the waiting delivery's response, so far ${JSON.stringify(response.slice(0, 80))}`,
    });
  }, 30_000);

  it('drops the slowest body for a signed one', async () => {
    // With WEBHOOK_MAX_CONCURRENT=1 the bodies whose signature is not checked yet may hold
    // 25 MB together. Four connections send a quarter each and stop, so the budget is full.
    const { port, budget } = await startServer(1);
    const logStart = context.logs.length;
    const slow = Array.from({ length: 4 }, (_, index) =>
      openSlowDelivery(port, {
        deliveryId: `fills-budget-${index}`,
        contentLength: maxWebhookBytes,
        signature: 'sha256=00',
        firstBytes: maxWebhookBytes / 4,
        intervalMs: 60_000,
      }),
    );
    await waitForBudget(budget, maxWebhookBytes);
    const payload = examplePullRequestEvent('opened', {
      installationId: 7200,
      repositoryId: 7200,
      repository: 'octo-org/beside-slow',
      number: 1,
    });
    const body = JSON.stringify(payload);

    const response = await postDelivery(port, 'signed-over-full', sign(body), body, 'pull_request');

    expect(response.status).toBe(202);
    expect((await response.json()).delivery).toBe('signed-over-full');
    const closed = await Promise.race([
      Promise.any(slow.map((connection) => connection.closed)),
      new Promise<string>((resolve) => setTimeout(() => resolve('none closed within 5 s'), 5000)),
    ]);
    expect(closed.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
    expect(closed).toContain('was expected to hold memory the longest');
    expect(slow.filter((connection) => connection.socket.destroyed)).toHaveLength(1);
    // The signed body's charge ended with its request, so only the other three stay charged.
    await waitForBudget(budget, (maxWebhookBytes / 4) * 3);
    const [summary] = logsFrom(logStart, 'webhook.bodies_incomplete');
    expect(summary).toMatchObject({ evicted: 1, timedOut: 0, closed: 0 });
    expect(summary!.receivedBytes).toBe(maxWebhookBytes / 4);
    expect(logsFrom(logStart, 'webhook.rejected')).toEqual([]);

    for (const connection of slow) connection.socket.destroy();
    await Promise.all(slow.map((connection) => connection.closed));
    await waitForBudget(budget, 0);
  });

  it('cuts a slow body at the deadline', async () => {
    const { port, budget } = await startServer(8, undefined, undefined, 300);
    const logStart = context.logs.length;
    const started = Date.now();
    const slow = Array.from({ length: 3 }, (_, index) =>
      openSlowDelivery(port, {
        deliveryId: `past-deadline-${index}`,
        contentLength: 1_000_000,
        signature: 'sha256=00',
        firstBytes: 1000,
        intervalMs: 50,
      }),
    );

    const received = await Promise.race([
      Promise.all(slow.map((connection) => connection.closed)),
      new Promise<string[]>((resolve) => setTimeout(() => resolve(['still open after 5 s']), 5000)),
    ]);

    const elapsed = Date.now() - started;
    expect(received).toHaveLength(3);
    for (const response of received) {
      expect(response.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
      expect(response.toLowerCase()).toContain('connection: close');
      expect(response).toContain('"code":"request_timeout"');
      expect(response).toContain('did not arrive within 300 ms (WEBHOOK_BODY_TIMEOUT_MS)');
    }
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(3000);
    await waitForBudget(budget, 0);
    // The first body is logged at once and the others wait for the next summary.
    const summaries = logsFrom(logStart, 'webhook.bodies_incomplete');
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ timedOut: 1, evicted: 0, closed: 0, intervalSeconds: 60 });
    expect(logsFrom(logStart, 'webhook.rejected')).toEqual([]);
    // Their request lines go to debug (pino level 20), so they do not fill the log at info.
    const requestLines = logsFrom(logStart, 'http.request').filter((line) => line.status === 408);
    expect(requestLines.map((line) => line.level)).toEqual([20, 20, 20]);

    const accepted = await postDelivery(port, 'after-deadline', sign(pingBody));
    expect(accepted.status).toBe(202);
  });

  it('accepts a burst beside trickling bodies', async () => {
    // Twenty connections together fill the 25 MB budget but for 1000 bytes and then send a
    // byte every 100 ms, so the signed deliveries fit only when some of them are dropped. Each
    // announces 25 MB, so it is ranked by the time the rest takes at its rate and is cut before
    // a delivery whose whole body has arrived, however long the machine takes between steps.
    // The default deadline of 10 s leaves a loaded machine time to fill the budget first.
    const queue = { maxWaiting: 10, maxWaitMs: 5000 };
    const { port, budget } = await startServer(1, undefined, queue);
    expect(context.config.WEBHOOK_BODY_TIMEOUT_MS).toBe(10_000);
    const count = 20;
    const share = Math.floor((maxWebhookBytes - 1000) / count);
    const slow = Array.from({ length: count }, (_, index) =>
      openSlowDelivery(port, {
        deliveryId: `trickle-${index}`,
        contentLength: maxWebhookBytes,
        signature: 'sha256=00',
        firstBytes: share,
        intervalMs: 100,
      }),
    );
    await waitFor(async () => budget.usedBytes >= share * count, {
      timeoutMs: 10_000,
      intervalMs: 20,
      describe: () => `the slow bodies to fill the budget; it holds ${budget.usedBytes}`,
    });
    const bodies = Array.from({ length: 5 }, (_, index) => {
      const payload = examplePayload('pull_request', 'opened', 7300);
      payload.number = index + 1;
      payload.pull_request.number = index + 1;
      return JSON.stringify(payload);
    });
    expect(budget.usedBytes + bodies[0]!.length).toBeGreaterThan(budget.maxBytes);

    const responses = await Promise.all(
      bodies.map((body, index) =>
        postDelivery(port, `beside-trickle-${index}`, sign(body), body, 'pull_request'),
      ),
    );

    expect(responses.map((response) => response.status)).toEqual([202, 202, 202, 202, 202]);
    const stored = await context.database.sql<{ delivery_id: string }[]>`
      SELECT delivery_id FROM webhook_deliveries WHERE delivery_id LIKE 'beside-trickle-%'
      ORDER BY delivery_id`;
    expect(stored.map((row) => row.delivery_id)).toEqual(
      bodies.map((_, index) => `beside-trickle-${index}`),
    );
    // The connections of cut bodies close after their 408, which may come after the 202s.
    await Promise.race([
      Promise.any(slow.map((connection) => connection.closed)),
      new Promise((resolve) => setTimeout(resolve, 5000)),
    ]);
    expect(slow.filter((connection) => connection.socket.destroyed).length).toBeGreaterThan(0);
    // Every slow body ends at the 10 s deadline at the latest, and the budget is empty again.
    await Promise.race([
      Promise.all(slow.map((connection) => connection.closed)),
      new Promise((resolve) => setTimeout(resolve, 15_000)),
    ]);
    expect(slow.filter((connection) => !connection.socket.destroyed)).toHaveLength(0);
    await waitForBudget(budget, 0);
  }, 45_000);

  it('closes a trickling body after the request timeout', async () => {
    expect(context.config.REQUEST_TIMEOUT_SECONDS).toBe(30);
    const { port } = await startServer(8, 1);
    const logStart = context.logs.length;
    const started = Date.now();
    const slow = openSlowDelivery(port, {
      deliveryId: 'timed-out',
      contentLength: 1_000_000,
      signature: 'sha256=00',
    });

    const received = await Promise.race([
      slow.closed,
      new Promise<string>((resolve) => setTimeout(() => resolve('still open after 10 s'), 10_000)),
    ]);

    const elapsed = Date.now() - started;
    expect(received.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(5000);
    const summary = await waitFor(
      async () => logsFrom(logStart, 'webhook.bodies_incomplete')[0],
      { timeoutMs: 5000, intervalMs: 20, describe: () => 'the summary of the slow body' },
    );
    expect(summary).toMatchObject({ closed: 1, timedOut: 0, evicted: 0 });
    expect(logsFrom(logStart, 'webhook.rejected')).toEqual([]);
  }, 15_000);
});
