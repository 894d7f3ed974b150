import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createJsonServer, inFlightCounter } from './json-server.ts';

/** Token usage in Groq's wire format. */
export type GroqUsage = {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  queue_time: number;
  prompt_time: number;
  completion_time: number;
  total_time: number;
};

/** A completion to send: the text, the finish reason (default `stop`) and optional usage. */
export type GroqTextReply = {
  text: string;
  finishReason?: string;
  /** Overrides single usage fields. Fields left out are computed by `computeGroqUsage`. */
  usage?: Partial<GroqUsage>;
  /** Delay in ms before the reply is sent. */
  delayMs?: number;
};

/** A reply sent exactly as given, for errors and malformed bodies. */
export type GroqRawReply = {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
  delayMs?: number;
};

export type GroqReply = GroqTextReply | GroqRawReply;

/** Chat completion request as the fake parsed it, passed to the handler. */
export type GroqChatRequest = {
  model: string;
  messages: { role: string; content: string }[];
  body: Record<string, unknown>;
};

/** A request the fake received, with the reply it sent. */
export type RecordedGroqRequest = {
  method: string;
  /** Path with query string, for example `/openai/v1/chat/completions`. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Key from the `Authorization: Bearer` header. */
  apiKey: string | undefined;
  /** Parsed JSON body, or undefined for an empty body. */
  body: unknown;
  /** Status and usage of the reply, set once the reply was sent. */
  reply?: { status: number; usage?: GroqUsage };
};

export type FakeGroq = {
  /** Base URL to pass to groq-sdk as `baseURL`, for example `http://127.0.0.1:41234`. */
  url: string;
  requests: RecordedGroqRequest[];
  /** Queues replies for the next chat completion requests, one reply per request. */
  enqueue(...replies: GroqReply[]): void;
  /** Sets the handler for chat completions when the queue is empty. */
  setHandler(handler: (request: GroqChatRequest) => GroqTextReply): void;
  /** Makes every request with this key fail with 401 `invalid_api_key`. */
  rejectKey(key: string): void;
  /** Empties the reply queue and the recorded requests, and restores the default handler. */
  reset(): void;
  /** Resolves when no request is in progress. */
  idle(): Promise<void>;
  close(): Promise<void>;
};

export const defaultGroqModels = [
  'llama-3.3-70b-versatile',
  'llama-3.1-8b-instant',
  'openai/gpt-oss-120b',
  'whisper-large-v3',
];

/** Groq's error body `{ error: { message, type, code } }`. */
export function groqErrorBody(message: string, type: string, code?: string) {
  return { error: { message, type, ...(code !== undefined ? { code } : {}) } };
}

/**
 * Computes the usage the fake reports when a reply sets none: one prompt token per 4
 * characters of all messages and one completion token per 4 characters of the textReply.
 */
export function computeGroqUsage(request: GroqChatRequest, text: string): GroqUsage {
  const promptCharacters = request.messages.reduce(
    (sum, message) => sum + message.content.length,
    0,
  );
  const promptTokens = Math.ceil(promptCharacters / 4);
  const completionTokens = Math.ceil(text.length / 4);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    queue_time: 0.01,
    prompt_time: 0.002,
    completion_time: 0.05,
    total_time: 0.052,
  };
}

function isRawReply(reply: GroqReply): reply is GroqRawReply {
  return 'status' in reply;
}

function readBearerKey(headers: IncomingHttpHeaders): string | undefined {
  const match = /^Bearer (.+)$/.exec(headers.authorization ?? '');
  return match?.[1];
}

function parseChatRequest(body: unknown): GroqChatRequest {
  const record = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const messages = Array.isArray(record.messages) ? record.messages : [];
  return {
    model: typeof record.model === 'string' ? record.model : '',
    messages: messages.map((message: { role?: unknown; content?: unknown }) => ({
      role: String(message.role),
      content: typeof message.content === 'string' ? message.content : '',
    })),
    body: record,
  };
}

/** Starts a fake of Groq's OpenAI-compatible API on 127.0.0.1 with a free port. */
export async function startFakeGroq(
  options: { models?: string[]; rejectedKeys?: string[] } = {},
): Promise<FakeGroq> {
  const models = options.models ?? defaultGroqModels;
  const rejectedKeys = new Set(options.rejectedKeys ?? []);
  const queue: GroqReply[] = [];
  const requests: RecordedGroqRequest[] = [];
  const defaultHandler = (): GroqTextReply => ({ text: 'fake answer' });
  let handler: (request: GroqChatRequest) => GroqTextReply = defaultHandler;
  const counter = inFlightCounter();
  let completionCount = 0;

  const server = createJsonServer(counter, ({ req, body, respond }) => {
    /** Sends the reply after `delayMs` and records it, unless the client closes first. */
    const send = (
      recorded: RecordedGroqRequest,
      reply: GroqRawReply & { usage?: GroqUsage },
      delayMs = 0,
    ) =>
      respond(reply, delayMs, () => {
        recorded.reply = { status: reply.status, ...(reply.usage ? { usage: reply.usage } : {}) };
      });

    const recorded: RecordedGroqRequest = {
      method: req.method ?? '',
      path: req.url ?? '',
      headers: req.headers,
      apiKey: readBearerKey(req.headers),
      body,
    };
    requests.push(recorded);
    const path = (req.url ?? '').split('?')[0];

    const key = recorded.apiKey;
    if (key === undefined || rejectedKeys.has(key)) {
      const error = groqErrorBody('Invalid API Key', 'invalid_request_error', 'invalid_api_key');
      send(recorded, { status: 401, body: error });
      return;
    }

    if (req.method === 'GET' && path === '/openai/v1/models') {
      const data = models.map((id) => ({
        id,
        object: 'model',
        created: 1_733_447_754,
        owned_by: id.startsWith('openai/') ? 'OpenAI' : 'Meta',
        active: true,
        context_window: 131_072,
        public_apps: null,
        max_completion_tokens: 32_768,
      }));
      send(recorded, { status: 200, body: { object: 'list', data } });
      return;
    }

    if (req.method === 'POST' && path === '/openai/v1/chat/completions') {
      const reply = queue.shift();
      if (reply !== undefined && isRawReply(reply)) {
        send(recorded, reply, reply.delayMs);
        return;
      }

      const chatRequest = parseChatRequest(body);
      if (!models.includes(chatRequest.model)) {
        const error = groqErrorBody(
          `The model \`${chatRequest.model}\` does not exist or you do not have access to it.`,
          'invalid_request_error',
          'model_not_found',
        );
        send(recorded, { status: 404, body: error });
        return;
      }
      const textReply = reply ?? handler(chatRequest);
      const usage = { ...computeGroqUsage(chatRequest, textReply.text), ...textReply.usage };
      completionCount++;
      const completion = {
        id: `chatcmpl-fake-${completionCount}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: chatRequest.model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: textReply.text },
            logprobs: null,
            finish_reason: textReply.finishReason ?? 'stop',
          },
        ],
        usage,
        usage_breakdown: null,
        system_fingerprint: 'fp_fake',
        x_groq: { id: `req_fake_${completionCount}` },
        service_tier: 'on_demand',
      };
      send(recorded, { status: 200, body: completion, usage }, textReply.delayMs);
      return;
    }

    const notFound = groqErrorBody(
      'Unknown request URL: ' + `${req.method} ${path}`,
      'invalid_request_error',
      'unknown_url',
    );
    send(recorded, { status: 404, body: notFound });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
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
