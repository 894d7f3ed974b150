import { createServer, type IncomingMessage, type Server } from 'node:http';

/** Counts requests in flight, so a test can wait until a fake has replied to every request. */
export interface InFlight {
  start(): void;
  finish(): void;
  /** Resolves once no request is in flight. */
  idle(): Promise<void>;
}

export function inFlightCounter(): InFlight {
  let count = 0;
  let waiters: (() => void)[] = [];
  return {
    start: () => {
      count++;
    },
    finish: () => {
      count--;
      if (count > 0) return;
      for (const resolve of waiters) resolve();
      waiters = [];
    },
    idle: () => (count === 0 ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve))),
  };
}

export interface JsonReply {
  status: number;
  /** Sent as it is when a string or bytes, else as JSON. */
  body: unknown;
  headers?: Record<string, string>;
}

export interface JsonExchange {
  req: IncomingMessage;
  /** The request body parsed as JSON, the raw text when it is not JSON, undefined when empty. */
  body: unknown;
  /** Sends `reply` after `delayMs`, unless the client closes the connection first. */
  respond(reply: JsonReply, delayMs?: number, beforeSend?: () => void): void;
}

/**
 * Creates an HTTP server for a fake JSON API: it reads each request's body, counts the request
 * in flight until its connection closes (after a reply or a dropped connection), and passes it
 * to `handle`.
 */
export function createJsonServer(counter: InFlight, handle: (exchange: JsonExchange) => void): Server {
  return createServer((req, res) => {
    counter.start();
    let timer: NodeJS.Timeout | undefined;
    res.once('close', () => {
      clearTimeout(timer);
      counter.finish();
    });

    const respond = (reply: JsonReply, delayMs = 0, beforeSend?: () => void) => {
      timer = setTimeout(() => {
        beforeSend?.();
        const payload =
          typeof reply.body === 'string' || reply.body instanceof Uint8Array
            ? reply.body
            : JSON.stringify(reply.body);
        res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
        res.end(payload);
      }, delayMs);
    };

    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        body = text;
      }
      handle({ req, body, respond });
    });
  });
}
