import type { Server } from 'node:http';
import { serve, type ServerType } from '@hono/node-server';

/**
 * How often Node.js looks for requests past their timeout. Its default of 30 s would let a
 * request run up to 30 s past REQUEST_TIMEOUT_SECONDS.
 */
const timeoutCheckIntervalMs = 1000;

/**
 * Serves `fetch` over HTTP on `hostname`:`port`. A client that has not sent a whole request,
 * headers and body, within `requestTimeoutSeconds` gets 408 and its connection is closed, so a
 * body sent a byte at a time cannot keep a connection and its buffered bytes for long.
 */
export function serveHttp(
  fetch: (request: Request) => Response | Promise<Response>,
  options: { hostname: string; port: number; requestTimeoutSeconds: number },
): ServerType {
  const timeoutMs = options.requestTimeoutSeconds * 1000;
  return serve({
    fetch,
    hostname: options.hostname,
    port: options.port,
    serverOptions: {
      requestTimeout: timeoutMs,
      // The headers get the same time as the whole request (Node.js rejects a longer one).
      headersTimeout: timeoutMs,
      connectionsCheckingInterval: Math.min(timeoutCheckIntervalMs, timeoutMs),
    },
  });
}

/**
 * Stops accepting connections and resolves once every connection has closed. Node.js stops
 * enforcing the request timeout once `close()` is called, so a client sending a request a
 * byte at a time would hold the stop forever. Connections still open after `graceMs` are
 * therefore closed, responses in progress included.
 */
export function closeHttpServer(server: ServerType, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => (server as Server).closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
