import { once } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createJsonServer, inFlightCounter } from './json-server.ts';

/** A reply sent exactly as given, for errors, blocked prompts and malformed bodies. */
export type RawReply = {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
  delayMs?: number;
};

/** A request a model API fake received, with the reply it sent. */
export type RecordedModelRequest<Usage> = {
  method: string;
  /** Path with query string. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Key the request authenticated with, read as the provider reads it. */
  apiKey: string | undefined;
  /** Parsed JSON body, or undefined for an empty body. */
  body: unknown;
  /** Status and usage of the reply, set once the reply was sent. */
  reply?: { status: number; usage?: Usage };
};

/** Controls of a model API fake. Each provider's fake documents its own wire format. */
export type FakeModelApi<Usage, Reply, TextReply, Request> = {
  /** Base URL to pass to the provider's SDK, for example `http://127.0.0.1:41234`. */
  url: string;
  requests: RecordedModelRequest<Usage>[];
  /** Queues replies for the next generation requests, one reply per request. */
  enqueue(...replies: Reply[]): void;
  /** Sets the handler for generation requests when the queue is empty. */
  setHandler(handler: (request: Request) => TextReply): void;
  /** Makes every request with this key fail as the provider fails an invalid key. */
  rejectKey(key: string): void;
  /** Empties the reply queue and the recorded requests, and restores the default handler. */
  reset(): void;
  /** Resolves when no request is in progress. */
  idle(): Promise<void>;
  close(): Promise<void>;
};

/** One request passed to a provider's handler, already recorded. */
export type ModelApiExchange<Usage, TextReply, Request> = {
  req: IncomingMessage;
  body: unknown;
  recorded: RecordedModelRequest<Usage>;
  /** Every request recorded since the last reset, this one included. */
  requests: readonly RecordedModelRequest<Usage>[];
  /** Sends `reply` after `delayMs` and records its status and usage, unless the client closes first. */
  send(reply: RawReply & { usage?: Usage }, delayMs?: number): void;
  /** Takes the next queued reply, or undefined when the queue is empty. */
  nextReply(): RawReply | TextReply | undefined;
  /** Runs the handler that `setHandler` set, or the default one. */
  handle(request: Request): TextReply;
  isRejectedKey(key: string): boolean;
};

/**
 * Serializes `body` as JSON, with each occurrence of the string `invalid` inside its string
 * values sent as the byte 0xFF, which is not valid UTF-8. A client that decodes the body leniently,
 * as `Response.json()` does, reads U+FFFD in its place. Without `invalid` the body is returned
 * unchanged for the JSON server to serialize.
 */
export function withInvalidUtf8(body: unknown, invalid: string | undefined): unknown {
  if (invalid === undefined || invalid === '') return body;
  const escaped = JSON.stringify(invalid).slice(1, -1);
  const parts = JSON.stringify(body).split(escaped);
  const chunks: Buffer[] = [];
  for (const [index, part] of parts.entries()) {
    if (index > 0) chunks.push(Buffer.from([0xff]));
    chunks.push(Buffer.from(part));
  }
  return Buffer.concat(chunks);
}

/**
 * Word that marks a revoked key. The fakes accept a key that contains it for the model list,
 * which Fixwright's key check reads before it saves a key, and reject it on every generation
 * request, as a provider rejects a key revoked after it was saved.
 */
export const revokedKeyMarker = 'revoked';

/** Returns whether `key` contains `revokedKeyMarker`. */
export function isRevokedKey(key: string): boolean {
  return key.includes(revokedKeyMarker);
}

export function isRawReply<TextReply extends object>(reply: RawReply | TextReply): reply is RawReply {
  return 'status' in reply;
}

/** Returns `body` when it is a JSON object, else an empty object. */
export function bodyRecord(body: unknown): Record<string, unknown> {
  return (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
}

/**
 * Starts a model API fake on 127.0.0.1 on `port`, or on a free port when it is unset or 0. A
 * port in use rejects with Node's EADDRINUSE error. It records every request with the key
 * `readApiKey` finds and passes it to `handle`, which speaks the provider's wire format.
 */
export async function startFakeModelApi<Usage, TextReply extends object, Request>(options: {
  port?: number;
  rejectedKeys?: string[];
  /** Handler that `reset` restores. */
  defaultHandler(): TextReply;
  readApiKey(req: IncomingMessage): string | undefined;
  handle(exchange: ModelApiExchange<Usage, TextReply, Request>): void;
}): Promise<FakeModelApi<Usage, RawReply | TextReply, TextReply, Request>> {
  const rejectedKeys = new Set(options.rejectedKeys ?? []);
  const queue: (RawReply | TextReply)[] = [];
  const requests: RecordedModelRequest<Usage>[] = [];
  const defaultHandler = options.defaultHandler;
  let handler: (request: Request) => TextReply = defaultHandler;
  const counter = inFlightCounter();

  const server = createJsonServer(counter, ({ req, body, respond }) => {
    const recorded: RecordedModelRequest<Usage> = {
      method: req.method ?? '',
      path: req.url ?? '',
      headers: req.headers,
      apiKey: options.readApiKey(req),
      body,
    };
    requests.push(recorded);

    options.handle({
      req,
      body,
      recorded,
      requests,
      send: (reply, delayMs = 0) =>
        respond(reply, delayMs, () => {
          recorded.reply = { status: reply.status, ...(reply.usage ? { usage: reply.usage } : {}) };
        }),
      nextReply: () => queue.shift(),
      handle: (request) => handler(request),
      isRejectedKey: (key) => rejectedKeys.has(key),
    });
  });

  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    enqueue: (...replies) => {
      queue.push(...replies);
    },
    setHandler: (next) => {
      handler = next;
    },
    rejectKey: (key) => {
      rejectedKeys.add(key);
    },
    reset: () => {
      queue.length = 0;
      requests.length = 0;
      handler = defaultHandler;
    },
    idle: () => counter.idle(),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      );
    },
  };
}
