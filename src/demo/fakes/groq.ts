import type { IncomingHttpHeaders } from 'node:http';
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
  /** A substring of `text` whose every occurrence is sent as the invalid UTF-8 byte 0xFF. */
  invalidUtf8?: string;
};

/** A reply sent exactly as given, for errors and malformed bodies. */
export type GroqRawReply = RawReply;

export type GroqReply = GroqTextReply | GroqRawReply;

/** Chat completion request as the fake parsed it, passed to the handler. */
export type GroqChatRequest = {
  model: string;
  messages: { role: string; content: string }[];
  body: Record<string, unknown>;
};

/**
 * A request the fake received, with the reply it sent. The path is for example
 * `/openai/v1/chat/completions`, and the key comes from the `Authorization: Bearer` header.
 */
export type RecordedGroqRequest = RecordedModelRequest<GroqUsage>;

/**
 * Fake Groq API. Its `url` is the `baseURL` to pass to groq-sdk. `enqueue` and `setHandler`
 * apply to chat completions, and `rejectKey` makes every request with that key fail with 401
 * `invalid_api_key`. Chat completions with a key that contains `revokedKeyMarker` fail the
 * same way, and the model list accepts such a key.
 */
export type FakeGroq = FakeModelApi<GroqUsage, GroqReply, GroqTextReply, GroqChatRequest>;

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

/** Builds the 401 body that Groq sends for a key it does not accept. */
export function invalidApiKeyBody() {
  return groqErrorBody('Invalid API Key', 'invalid_request_error', 'invalid_api_key');
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

function readBearerKey(headers: IncomingHttpHeaders): string | undefined {
  const match = /^Bearer (.+)$/.exec(headers.authorization ?? '');
  return match?.[1];
}

function parseChatRequest(body: unknown): GroqChatRequest {
  const record = bodyRecord(body);
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

/** Starts a fake of Groq's OpenAI-compatible API on 127.0.0.1, on `port` or a free port. */
export async function startFakeGroq(
  options: { port?: number; models?: string[]; rejectedKeys?: string[] } = {},
): Promise<FakeGroq> {
  const models = options.models ?? defaultGroqModels;
  let completionCount = 0;

  const handleRequest = ({
    req,
    body,
    recorded,
    send,
    nextReply,
    handle,
    isRejectedKey,
  }: ModelApiExchange<GroqUsage, GroqTextReply, GroqChatRequest>): void => {
    const path = (req.url ?? '').split('?')[0];

    const key = recorded.apiKey;
    if (key === undefined || isRejectedKey(key)) {
      send({ status: 401, body: invalidApiKeyBody() });
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
      send({ status: 200, body: { object: 'list', data } });
      return;
    }

    if (req.method === 'POST' && path === '/openai/v1/chat/completions') {
      if (isRevokedKey(key)) {
        send({ status: 401, body: invalidApiKeyBody() });
        return;
      }
      const reply = nextReply();
      if (reply !== undefined && isRawReply(reply)) {
        send(reply, reply.delayMs);
        return;
      }

      const chatRequest = parseChatRequest(body);
      if (!models.includes(chatRequest.model)) {
        const error = groqErrorBody(
          `The model \`${chatRequest.model}\` does not exist or you do not have access to it.`,
          'invalid_request_error',
          'model_not_found',
        );
        send({ status: 404, body: error });
        return;
      }
      const textReply = reply ?? handle(chatRequest);
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
      send({ status: 200, body: withInvalidUtf8(completion, textReply.invalidUtf8), usage }, textReply.delayMs);
      return;
    }

    const notFound = groqErrorBody(
      'Unknown request URL: ' + `${req.method} ${path}`,
      'invalid_request_error',
      'unknown_url',
    );
    send({ status: 404, body: notFound });
  };

  return startFakeModelApi({
    port: options.port,
    rejectedKeys: options.rejectedKeys,
    defaultHandler: (): GroqTextReply => ({ text: 'fake answer' }),
    readApiKey: (req) => readBearerKey(req.headers),
    handle: handleRequest,
  });
}
