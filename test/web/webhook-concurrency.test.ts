import { request as httpRequest, type ClientRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { waitFor } from '../helpers/process.ts';

const maxConcurrent = 2;
const body = JSON.stringify({ zen: 'Slow and steady.' });
const unsignedHeaders = {
  'content-type': 'application/json',
  'x-github-event': 'ping',
  'x-hub-signature-256': `sha256=${'0'.repeat(64)}`,
};

let context: TestContext;
let server: ServerType;
let port: number;
const openRequests: ClientRequest[] = [];

beforeAll(async () => {
  context = await createTestContext({
    WEBHOOK_SECRET: 'webhook-secret-for-tests',
    WEBHOOK_MAX_CONCURRENT: String(maxConcurrent),
  });
  const app = createApp(context);
  server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const request of openRequests) request.destroy();
  if (server) {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    (server as unknown as { closeAllConnections(): void }).closeAllConnections();
    await closed;
  }
  await context?.close();
});

/** Sends the headers and half of the body. `finish` sends the rest. */
function startSlowDelivery(deliveryId: string) {
  const request = httpRequest({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: '/webhooks/github',
    headers: {
      ...unsignedHeaders,
      'x-github-delivery': deliveryId,
      'content-length': String(Buffer.byteLength(body)),
    },
  });
  openRequests.push(request);
  const status = new Promise<number>((resolve, reject) => {
    request.once('response', (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.once('error', reject);
  });
  // afterAll destroys requests that a failed test left open; their rejection is expected.
  status.catch(() => undefined);
  const half = Math.floor(body.length / 2);
  request.write(body.slice(0, half));
  return { status, finish: () => request.end(body.slice(half)) };
}

function postDelivery(deliveryId: string) {
  return fetch(`http://127.0.0.1:${port}/webhooks/github`, {
    method: 'POST',
    body,
    headers: { ...unsignedHeaders, 'x-github-delivery': deliveryId },
  });
}

describe('POST /webhooks/github under load', () => {
  it('returns 503 beyond WEBHOOK_MAX_CONCURRENT bodies', async () => {
    const slow = [startSlowDelivery('slow-1'), startSlowDelivery('slow-2')];

    // The slow requests occupy both slots once the server has read their headers.
    const rejected = await waitFor(
      async () => {
        const response = await postDelivery('third');
        return response.status === 503 ? response : null;
      },
      { timeoutMs: 5000, intervalMs: 50, describe: () => 'a 503 while two bodies are read' },
    );

    expect(rejected.headers.get('retry-after')).toBe('1');
    const { error } = await rejected.json();
    expect(error.code).toBe('service_unavailable');
    expect(error.message).toContain('WEBHOOK_MAX_CONCURRENT is 2');
    const warning = context.logs.find(
      (line) => line.event === 'webhook.rejected' && line.status === 503,
    );
    expect(warning).toMatchObject({ deliveryId: 'third', githubEvent: 'ping' });

    for (const request of slow) request.finish();
    expect(await Promise.all(slow.map((request) => request.status))).toEqual([401, 401]);

    // Both slots are free again, so the next delivery is read and checked.
    const after = await postDelivery('after');
    expect(after.status).toBe(401);
  });
});
