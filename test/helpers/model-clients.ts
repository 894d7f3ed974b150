import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { ProviderError } from '../../src/llm/errors.ts';

/** Client options of the provider client tests: two retries, a 5 s timeout and 10 ms back-off. */
export const testClientOptions = { maxRetries: 2, timeoutMs: 5000, retryBaseDelayMs: 10 };

/**
 * Counts the timers that keep the process alive. Timers of the test runner come and go, so
 * the tests check that a call adds none, not that the count stays equal.
 */
export function countTimers(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;
}

/**
 * Starts a model API fake before the file's first test and passes it to `assign`, resets it
 * after each test and closes it after the last.
 */
export function useFakeModelApi<Fake extends { reset(): void; close(): Promise<void> }>(
  start: () => Promise<Fake>,
  assign: (fake: Fake) => void,
): void {
  let fake: Fake;

  beforeAll(async () => {
    fake = await start();
    assign(fake);
  });

  afterEach(() => {
    fake.reset();
  });

  afterAll(async () => {
    await fake.close();
  });
}

/** Runs `promise`, expects it to reject with a ProviderError and returns that error. */
export async function expectProviderError(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ProviderError);
  return error as ProviderError;
}

/**
 * Starts a server on 127.0.0.1 that replies to every request with status 200, a JSON content type
 * and `partialBody`, then closes the connection before the declared length.
 * `requests` counts the requests received.
 */
export async function startCutOffServer(partialBody: string) {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100000' });
      res.write(partialBody, () => res.socket?.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Returns the URL of a port on 127.0.0.1 that nothing listens on: a server takes a free port
 * and closes it again, so a request there is refused (ECONNREFUSED).
 */
export async function closedPortUrl(): Promise<{ url: string; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return { url: `http://127.0.0.1:${port}`, port };
}

/**
 * Starts a server on 127.0.0.1 that reads each whole request and then resets the connection
 * (TCP RST) without a response, so the client fails with `read ECONNRESET`.
 */
export async function startResetServer() {
  const server = createServer((req) => {
    req.resume();
    req.on('end', () => req.socket.resetAndDestroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
