import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { ServerType } from '@hono/node-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/web/app.tsx';
import { serveHttp } from '../../src/web/http-server.ts';
import { maxWebhookBytes } from '../../src/web/webhooks.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { waitFor } from '../helpers/process.ts';
import { waitForLockWait } from '../helpers/webhooks.ts';

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
 * is given.
 */
async function startServer(
  maxConcurrent: number,
  requestTimeoutSeconds = context.config.REQUEST_TIMEOUT_SECONDS,
): Promise<{ server: ServerType; port: number }> {
  const app = createApp({
    ...context,
    config: { ...context.config, WEBHOOK_MAX_CONCURRENT: maxConcurrent },
  });
  const server = serveHttp(app.fetch, { hostname: '127.0.0.1', port: 0, requestTimeoutSeconds });
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return { server, port: (server.address() as AddressInfo).port };
}

function sign(body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

function postDelivery(port: number, deliveryId: string, signature: string, body = pingBody) {
  return fetch(`http://127.0.0.1:${port}/webhooks/github`, {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'ping',
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
    // An uncommitted row with the same delivery id blocks the first delivery at its insert.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const holder = context.database.sql
      .begin(async (sql) => {
        await sql`INSERT INTO webhook_deliveries (delivery_id, event) VALUES ('held', 'ping')`;
        await released;
        throw new Error('roll back');
      })
      .catch(() => undefined);
    const heldDelivery = postDelivery(port, 'held', sign(pingBody));
    await waitForLockWait(context);

    const rejected = await postDelivery(port, 'beyond-limit', sign(pingBody));

    expect(rejected.status).toBe(503);
    expect(rejected.headers.get('retry-after')).toBe('1');
    const { error } = await rejected.json();
    expect(error.code).toBe('service_unavailable');
    expect(error.message).toContain('WEBHOOK_MAX_CONCURRENT is 1');
    const warning = context.logs.find(
      (line) => line.event === 'webhook.rejected' && line.deliveryId === 'beyond-limit',
    );
    expect(warning).toMatchObject({ status: 503, githubEvent: 'ping' });

    release();
    await holder;
    expect((await heldDelivery).status).toBe(202);
    // The slot is free again.
    expect((await postDelivery(port, 'after-held', sign(pingBody))).status).toBe(202);
  });

  it('returns 503 when unchecked bodies fill memory', async () => {
    // With WEBHOOK_MAX_CONCURRENT=1 the bodies whose signature is not checked yet may hold
    // 25 MB together. This connection sends all but one byte of a 25 MB body and stops.
    const { port } = await startServer(1);
    const large = openSlowDelivery(port, {
      deliveryId: 'fills-budget',
      contentLength: maxWebhookBytes,
      signature: 'sha256=00',
      firstBytes: maxWebhookBytes - 1,
      intervalMs: 60_000,
    });
    const smallBody = JSON.stringify({ zen: 'x'.repeat(1024) });

    const rejected = await waitFor(
      async () => {
        const response = await postDelivery(port, 'over-budget', sign(smallBody), smallBody);
        return response.status === 503 ? response : null;
      },
      { timeoutMs: 10_000, intervalMs: 50, describe: () => 'a 503 while 25 MB are buffered' },
    );

    expect(rejected.headers.get('retry-after')).toBe('1');
    const { error } = await rejected.json();
    expect(error.code).toBe('service_unavailable');
    expect(error.message).toContain(`more than ${maxWebhookBytes} bytes`);

    large.socket.destroy();
    await large.closed;
    const accepted = await waitFor(
      async () => {
        const response = await postDelivery(port, 'after-budget', sign(smallBody), smallBody);
        return response.status === 202 ? response : null;
      },
      { timeoutMs: 10_000, intervalMs: 50, describe: () => 'a 202 once the large body is gone' },
    );
    expect(await accepted.json()).toEqual({ delivery: 'after-budget', outcome: 'pong' });
  });

  it('closes a trickling body after the request timeout', async () => {
    expect(context.config.REQUEST_TIMEOUT_SECONDS).toBe(30);
    const { port } = await startServer(8, 1);
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
    const warning = await waitFor(
      async () =>
        context.logs.find(
          (line) => line.event === 'webhook.rejected' && line.deliveryId === 'timed-out',
        ),
      { timeoutMs: 5000, intervalMs: 20, describe: () => 'the rejection log of the slow body' },
    );
    expect(warning).toMatchObject({ status: 400, code: 'bad_request' });
    expect(warning.reason).toContain('closed before the whole request body arrived');
  }, 15_000);
});
