import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createJsonServer, inFlightCounter } from './json-server.ts';

/** Token usage in Gemini's wire format (`usageMetadata`). */
export type GeminiUsage = {
  promptTokenCount: number;
  candidatesTokenCount: number;
  totalTokenCount: number;
  /** Thinking tokens, which Gemini counts in `totalTokenCount` but not in the candidates. */
  thoughtsTokenCount?: number;
};

/** A reply to send: the text, the finish reason (default `STOP`) and optional usage. */
export type GeminiTextReply = {
  text: string;
  finishReason?: string;
  /** Thinking tokens to add to the computed usage. */
  thoughtsTokens?: number;
  /** Overrides single usage fields. Fields left out are computed by `computeGeminiUsage`. */
  usage?: Partial<GeminiUsage>;
  /** Delay in ms before the reply is sent. */
  delayMs?: number;
};

/** A reply sent exactly as given, for errors, blocked prompts and malformed bodies. */
export type GeminiRawReply = {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
  delayMs?: number;
};

export type GeminiReply = GeminiTextReply | GeminiRawReply;

/** generateContent request as the fake parsed it, passed to the handler. */
export type GeminiGenerateRequest = {
  /** Model id from the path, without the `models/` prefix. */
  model: string;
  systemText: string;
  userText: string;
  body: Record<string, unknown>;
};

/** A request the fake received, with the reply it sent. */
export type RecordedGeminiRequest = {
  method: string;
  /** Path with query string, for example `/v1beta/models/gemini-2.5-flash:generateContent`. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Key from the `x-goog-api-key` header or the `key` query parameter. */
  apiKey: string | undefined;
  /** Parsed JSON body, or undefined for an empty body. */
  body: unknown;
  /** Status and usage of the reply, set once the reply was sent. */
  reply?: { status: number; usage?: GeminiUsage };
};

export type FakeGemini = {
  /** Base URL to pass to @google/generative-ai as `baseUrl`. */
  url: string;
  requests: RecordedGeminiRequest[];
  /** Queues replies for the next generateContent requests, one reply per request. */
  enqueue(...replies: GeminiReply[]): void;
  /** Sets the handler for generateContent when the queue is empty. */
  setHandler(handler: (request: GeminiGenerateRequest) => GeminiTextReply): void;
  /**
   * Makes every request with this key fail as Gemini fails an invalid key: HTTP 400
   * `INVALID_ARGUMENT` with ErrorInfo reason `API_KEY_INVALID`.
   */
  rejectKey(key: string): void;
  /** Empties the reply queue and the recorded requests, and restores the default handler. */
  reset(): void;
  /** Resolves when no request is in progress. */
  idle(): Promise<void>;
  close(): Promise<void>;
};

export const defaultGeminiModels = [
  { name: 'gemini-2.5-flash', methods: ['generateContent', 'countTokens', 'createCachedContent'] },
  { name: 'gemini-2.5-pro', methods: ['generateContent', 'countTokens', 'createCachedContent'] },
  { name: 'gemini-2.0-flash', methods: ['generateContent', 'countTokens'] },
  { name: 'text-embedding-004', methods: ['embedContent'] },
];

/** Gemini's error body `{ error: { code, message, status, details } }`. */
export function geminiErrorBody(
  code: number,
  status: string,
  message: string,
  details?: unknown[],
) {
  return { error: { code, message, status, ...(details ? { details } : {}) } };
}

/** The error Gemini returns for a key that does not exist. */
export function invalidKeyBody() {
  const message = 'API key not valid. Please pass a valid API key.';
  return geminiErrorBody(400, 'INVALID_ARGUMENT', message, [
    {
      '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
      reason: 'API_KEY_INVALID',
      domain: 'googleapis.com',
      metadata: { service: 'generativelanguage.googleapis.com' },
    },
  ]);
}

/**
 * Computes the usage the fake reports when a reply sets none: one prompt token per 4
 * characters of system and user text, one candidate token per 4 characters of the reply text,
 * plus the reply's thinking tokens in the total.
 */
export function computeGeminiUsage(
  request: GeminiGenerateRequest,
  text: string,
  thoughtsTokens = 0,
): GeminiUsage {
  const promptTokenCount = Math.ceil((request.systemText.length + request.userText.length) / 4);
  const candidatesTokenCount = Math.ceil(text.length / 4);
  return {
    promptTokenCount,
    candidatesTokenCount,
    totalTokenCount: promptTokenCount + candidatesTokenCount + thoughtsTokens,
    ...(thoughtsTokens > 0 ? { thoughtsTokenCount: thoughtsTokens } : {}),
  };
}

function isRawReply(reply: GeminiReply): reply is GeminiRawReply {
  return 'status' in reply;
}

function joinPartsText(content: unknown): string {
  const parts = (content as { parts?: { text?: unknown }[] } | undefined)?.parts ?? [];
  return parts.map((part) => (typeof part.text === 'string' ? part.text : '')).join('');
}

function parseGenerateRequest(model: string, body: unknown): GeminiGenerateRequest {
  const record = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const contents = Array.isArray(record.contents) ? record.contents : [];
  return {
    model,
    systemText: joinPartsText(record.systemInstruction),
    userText: contents.map((content) => joinPartsText(content)).join(''),
    body: record,
  };
}

/** Starts a fake of Gemini's generativelanguage API on 127.0.0.1 with a free port. */
export async function startFakeGemini(
  options: { models?: { name: string; methods: string[] }[]; rejectedKeys?: string[] } = {},
): Promise<FakeGemini> {
  const models = options.models ?? defaultGeminiModels;
  const rejectedKeys = new Set(options.rejectedKeys ?? []);
  const queue: GeminiReply[] = [];
  const requests: RecordedGeminiRequest[] = [];
  const defaultHandler = (): GeminiTextReply => ({ text: 'fake answer' });
  let handler: (request: GeminiGenerateRequest) => GeminiTextReply = defaultHandler;
  const counter = inFlightCounter();

  const server = createJsonServer(counter, ({ req, body, respond }) => {
    /** Sends the reply after `delayMs` and records it, unless the client closes first. */
    const send = (
      recorded: RecordedGeminiRequest,
      reply: GeminiRawReply & { usage?: GeminiUsage },
      delayMs = 0,
    ) =>
      respond(reply, delayMs, () => {
        recorded.reply = { status: reply.status, ...(reply.usage ? { usage: reply.usage } : {}) };
      });

    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const headerKey = req.headers['x-goog-api-key'];
    const recorded: RecordedGeminiRequest = {
      method: req.method ?? '',
      path: req.url ?? '',
      headers: req.headers,
      apiKey:
        typeof headerKey === 'string' ? headerKey : (url.searchParams.get('key') ?? undefined),
      body,
    };
    requests.push(recorded);

    const key = recorded.apiKey;
    if (key === undefined) {
      const error = geminiErrorBody(
        403,
        'PERMISSION_DENIED',
        'Method doesn\'t allow unregistered callers (callers without established identity). ' +
          'Please use API Key or other form of API consumer identity to call this API.',
      );
      send(recorded, { status: 403, body: error });
      return;
    }
    if (rejectedKeys.has(key)) {
      send(recorded, { status: 400, body: invalidKeyBody() });
      return;
    }

    if (req.method === 'GET' && url.pathname === '/v1beta/models') {
      const pageSize = Number(url.searchParams.get('pageSize') ?? '50');
      const offset = Number(url.searchParams.get('pageToken') ?? '0');
      const page = models.slice(offset, offset + pageSize).map((model) => ({
        name: `models/${model.name}`,
        version: '001',
        displayName: model.name,
        description: `Fake ${model.name}`,
        inputTokenLimit: 1_048_576,
        outputTokenLimit: 65_536,
        supportedGenerationMethods: model.methods,
        temperature: 1,
        topP: 0.95,
        topK: 64,
        maxTemperature: 2,
        thinking: model.name.startsWith('gemini-2.5'),
      }));
      const nextOffset = offset + pageSize;
      const nextPage = nextOffset < models.length ? { nextPageToken: String(nextOffset) } : {};
      send(recorded, { status: 200, body: { models: page, ...nextPage } });
      return;
    }

    const generateMatch = /^\/v1beta\/models\/([^/:]+):generateContent$/.exec(url.pathname);
    if (req.method === 'POST' && generateMatch) {
      const reply = queue.shift();
      if (reply !== undefined && isRawReply(reply)) {
        send(recorded, reply, reply.delayMs);
        return;
      }

      const generateRequest = parseGenerateRequest(generateMatch[1] ?? '', body);
      if (!models.some((model) => model.name === generateRequest.model)) {
        const message =
          `models/${generateRequest.model} is not found for API version v1beta, or is not ` +
          'supported for generateContent. Call ListModels to see the list of available ' +
          'models and their supported methods.';
        send(recorded, { status: 404, body: geminiErrorBody(404, 'NOT_FOUND', message) });
        return;
      }
      const textReply = reply ?? handler(generateRequest);
      const usage = {
        ...computeGeminiUsage(generateRequest, textReply.text, textReply.thoughtsTokens),
        ...textReply.usage,
      };
      const finishReason = textReply.finishReason ?? 'STOP';
      // A candidate that a filter stopped carries no content, as in Gemini's replies.
      const content =
        textReply.text === '' && finishReason !== 'STOP'
          ? {}
          : { content: { role: 'model', parts: [{ text: textReply.text }] } };
      const response = {
        candidates: [{ ...content, finishReason, index: 0 }],
        usageMetadata: {
          ...usage,
          promptTokensDetails: [{ modality: 'TEXT', tokenCount: usage.promptTokenCount }],
        },
        modelVersion: generateRequest.model,
        responseId: `fake-${requests.length}`,
      };
      send(recorded, { status: 200, body: response, usage }, textReply.delayMs);
      return;
    }

    const notFound = geminiErrorBody(404, 'NOT_FOUND', `Method not found: ${url.pathname}`);
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
