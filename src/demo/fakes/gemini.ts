import type { IncomingMessage } from 'node:http';
import {
  bodyRecord,
  isRawReply,
  isRevokedKey,
  withInvalidUtf8,
  startFakeModelApi,
  type FakeModelApi,
  type ModelApiExchange,
  type RawReply,
  type RecordedModelRequest,
} from './model-api.ts';

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
  /** A substring of `text` whose every occurrence is sent as the invalid UTF-8 byte 0xFF. */
  invalidUtf8?: string;
};

/** A reply sent exactly as given, for errors, blocked prompts and malformed bodies. */
export type GeminiRawReply = RawReply;

export type GeminiReply = GeminiTextReply | GeminiRawReply;

/** generateContent request as the fake parsed it, passed to the handler. */
export type GeminiGenerateRequest = {
  /** Model id from the path, without the `models/` prefix. */
  model: string;
  systemText: string;
  userText: string;
  body: Record<string, unknown>;
};

/**
 * A request the fake received, with the reply it sent. The path is for example
 * `/v1beta/models/gemini-2.5-flash:generateContent`, and the key comes from the
 * `x-goog-api-key` header or the `key` query parameter.
 */
export type RecordedGeminiRequest = RecordedModelRequest<GeminiUsage>;

/**
 * Fake Gemini API. Its `url` is the `baseUrl` to pass to @google/generative-ai. `enqueue` and
 * `setHandler` apply to generateContent, and `rejectKey` makes every request with that key
 * fail as Gemini fails an invalid key: HTTP 400 `INVALID_ARGUMENT` with ErrorInfo reason
 * `API_KEY_INVALID`. generateContent with a key that contains `revokedKeyMarker` fails with
 * 403 `PERMISSION_DENIED`, as for a key that Google disabled, and the model list accepts it.
 */
export type FakeGemini = FakeModelApi<GeminiUsage, GeminiReply, GeminiTextReply, GeminiGenerateRequest>;

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
 * Builds the 403 body that Gemini returns for a key that Google disabled as leaked, as quoted
 * in public bug reports of Gemini clients (2025 and 2026).
 */
export function leakedKeyBody() {
  const message = 'Your API key was reported as leaked. Please use another API key.';
  return geminiErrorBody(403, 'PERMISSION_DENIED', message);
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

function joinPartsText(content: unknown): string {
  const parts = (content as { parts?: { text?: unknown }[] } | undefined)?.parts ?? [];
  return parts.map((part) => (typeof part.text === 'string' ? part.text : '')).join('');
}

function parseGenerateRequest(model: string, body: unknown): GeminiGenerateRequest {
  const record = bodyRecord(body);
  const contents = Array.isArray(record.contents) ? record.contents : [];
  return {
    model,
    systemText: joinPartsText(record.systemInstruction),
    userText: contents.map((content) => joinPartsText(content)).join(''),
    body: record,
  };
}

/** Reads the key from the `x-goog-api-key` header or the `key` query parameter, as Gemini does. */
function readGeminiKey(req: IncomingMessage): string | undefined {
  const headerKey = req.headers['x-goog-api-key'];
  if (typeof headerKey === 'string') return headerKey;
  return new URL(req.url ?? '/', 'http://127.0.0.1').searchParams.get('key') ?? undefined;
}

/** Starts a fake of Gemini's generativelanguage API on 127.0.0.1, on `port` or a free port. */
export async function startFakeGemini(
  options: {
    port?: number;
    models?: { name: string; methods: string[] }[];
    rejectedKeys?: string[];
  } = {},
): Promise<FakeGemini> {
  const models = options.models ?? defaultGeminiModels;

  const handleRequest = ({
    req,
    body,
    recorded,
    requests,
    send,
    nextReply,
    handle,
    isRejectedKey,
  }: ModelApiExchange<GeminiUsage, GeminiTextReply, GeminiGenerateRequest>): void => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const key = recorded.apiKey;
    if (key === undefined) {
      const error = geminiErrorBody(
        403,
        'PERMISSION_DENIED',
        'Method doesn\'t allow unregistered callers (callers without established identity). ' +
          'Please use API Key or other form of API consumer identity to call this API.',
      );
      send({ status: 403, body: error });
      return;
    }
    if (isRejectedKey(key)) {
      send({ status: 400, body: invalidKeyBody() });
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
      send({ status: 200, body: { models: page, ...nextPage } });
      return;
    }

    const generateMatch = /^\/v1beta\/models\/([^/:]+):generateContent$/.exec(url.pathname);
    if (req.method === 'POST' && generateMatch) {
      if (isRevokedKey(key)) {
        send({ status: 403, body: leakedKeyBody() });
        return;
      }
      const reply = nextReply();
      if (reply !== undefined && isRawReply(reply)) {
        send(reply, reply.delayMs);
        return;
      }

      const generateRequest = parseGenerateRequest(generateMatch[1] ?? '', body);
      if (!models.some((model) => model.name === generateRequest.model)) {
        const message =
          `models/${generateRequest.model} is not found for API version v1beta, or is not ` +
          'supported for generateContent. Call ListModels to see the list of available ' +
          'models and their supported methods.';
        send({ status: 404, body: geminiErrorBody(404, 'NOT_FOUND', message) });
        return;
      }
      const textReply = reply ?? handle(generateRequest);
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
      send({ status: 200, body: withInvalidUtf8(response, textReply.invalidUtf8), usage }, textReply.delayMs);
      return;
    }

    const notFound = geminiErrorBody(404, 'NOT_FOUND', `Method not found: ${url.pathname}`);
    send({ status: 404, body: notFound });
  };

  return startFakeModelApi({
    port: options.port,
    rejectedKeys: options.rejectedKeys,
    defaultHandler: (): GeminiTextReply => ({ text: 'fake answer' }),
    readApiKey: readGeminiKey,
    handle: handleRequest,
  });
}
