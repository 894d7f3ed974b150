import Groq, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
} from 'groq-sdk';
import type { ChatCompletion } from 'groq-sdk/resources/chat/completions';
import type { Logger } from '../logger.ts';
import {
  cleanProviderMessage,
  connectionError,
  describeEmptyResponse,
  ProviderError,
  statusError,
  unreadableResponseError,
} from './errors.ts';
import {
  callerAbortError,
  defaultRetryPolicy,
  describeRetryAfter,
  parseRetryAfterHeader,
  runWithRetries,
  startAttemptSignal,
  timeoutError,
  type RetryPolicy,
} from './retry.ts';
import type { ModelClient, ModelRequest, ModelResult, ModelUsage } from './types.ts';
import { modelUsage, readableUsage } from './usage.ts';

export type GroqClientOptions = {
  apiKey: string;
  /** Host root such as `https://api.groq.com`. The SDK appends `/openai/v1/...`. */
  baseUrl: string;
  /** The environment variable that set `baseUrl`, named in connection errors; unset for the default. */
  baseUrlSetting?: string;
  model: string;
  /** Maximum number of retries per call for 429, 5xx and connection errors. */
  maxRetries: number;
  /** Timeout in ms for each HTTP request. Every retry gets the full timeout again. */
  timeoutMs: number;
  /** Maximum `retry-after` in seconds that is still waited for. Defaults to 10. */
  maxRetryAfterSeconds?: number;
  /** Delay in ms before the first retry when Groq sent no `retry-after`. Defaults to 500. */
  retryBaseDelayMs?: number;
  /** Sampling temperature. Defaults to 0, because a fix should not vary between runs. */
  temperature?: number;
  logger?: Logger;
};

/**
 * Creates a client for Groq's chat completions API. The SDK's own retries are turned off
 * because groq-sdk 1.6.0 waits for any `retry-after` without a cap. This client retries per
 * `RetryPolicy` instead.
 */
export function createGroqClient(options: GroqClientOptions): ModelClient {
  const { apiKey, baseUrl, model, timeoutMs, logger } = options;
  if (apiKey.trim() === '') {
    throw new ProviderError({
      provider: 'groq',
      kind: 'unauthorized',
      message: 'The Groq API key is empty. Set a Groq API key before sending requests.',
    });
  }

  const policy: RetryPolicy = {
    ...defaultRetryPolicy,
    maxRetries: options.maxRetries,
    maxRetryAfterSeconds: options.maxRetryAfterSeconds ?? defaultRetryPolicy.maxRetryAfterSeconds,
    baseDelayMs: options.retryBaseDelayMs ?? defaultRetryPolicy.baseDelayMs,
  };
  // baseURL and apiKey are always passed, so GROQ_BASE_URL and GROQ_API_KEY are never read.
  const sdk = new Groq({
    apiKey,
    baseURL: baseUrl,
    maxRetries: 0,
    timeout: timeoutMs,
    logLevel: 'off',
  });
  const context = { provider: 'groq' as const, model, policy, ...(logger ? { logger } : {}) };
  const toProviderError = (error: unknown) =>
    mapGroqError(error, { apiKey, baseUrl, baseUrlSetting: options.baseUrlSetting, model, timeoutMs });

  async function generateOnce(request: ModelRequest, signal?: AbortSignal): Promise<ModelResult> {
    if (signal?.aborted) throw callerAbortError('groq');
    const attempt = startAttemptSignal(timeoutMs, signal);

    let completion: ChatCompletion;
    try {
      completion = await sdk.chat.completions.create(
        {
          model,
          messages: [
            { role: 'system', content: request.system },
            { role: 'user', content: request.user },
          ],
          max_completion_tokens: request.maxOutputTokens,
          temperature: options.temperature ?? 0,
        },
        { signal: attempt.signal, maxRetries: 0, timeout: timeoutMs },
      );
    } catch (error) {
      if (attempt.timedOut()) throw timeoutError('groq', timeoutMs);
      if (attempt.callerAborted()) throw callerAbortError('groq');
      throw toProviderError(error);
    } finally {
      attempt.dispose();
    }

    return readCompletion(completion, model, request.maxOutputTokens);
  }

  async function listModelsOnce(): Promise<string[]> {
    const attempt = startAttemptSignal(timeoutMs);
    try {
      const list = await sdk.models.list({
        signal: attempt.signal,
        maxRetries: 0,
        timeout: timeoutMs,
      });
      // Groq adds an `active` flag that the SDK's types do not declare.
      const models = list.data as { id: string; active?: boolean }[];
      return models
        .filter((entry) => entry.active !== false)
        .map((entry) => entry.id)
        .sort();
    } catch (error) {
      if (attempt.timedOut()) throw timeoutError('groq', timeoutMs);
      throw toProviderError(error);
    } finally {
      attempt.dispose();
    }
  }

  return {
    provider: 'groq',
    model,
    generate: (request, callOptions) => {
      const signal = callOptions?.signal;
      return runWithRetries(context, () => generateOnce(request, signal), signal, callOptions?.onBilledRetry);
    },
    listModels: () => runWithRetries(context, listModelsOnce),
  };
}

function mapUsage(usage: ChatCompletion['usage']): ModelUsage {
  return modelUsage(usage?.prompt_tokens, usage?.completion_tokens, usage?.total_tokens);
}

/** Reads the usage block of a body that is not a readable completion, if it has counts. */
function readUsageBlock(body: unknown): ModelUsage | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const { usage } = body as { usage?: unknown };
  if (typeof usage !== 'object' || usage === null) return undefined;
  const counts = usage as { prompt_tokens?: unknown; completion_tokens?: unknown; total_tokens?: unknown };
  return readableUsage(counts.prompt_tokens, counts.completion_tokens, counts.total_tokens);
}

/**
 * Returns whether `value` has the fields that readCompletion reads, with their types. A proxy
 * or another OpenAI-compatible server may send any JSON with status 200.
 */
function isReadableCompletion(value: unknown): value is ChatCompletion {
  if (typeof value !== 'object' || value === null) return false;
  const { choices } = value as { choices?: unknown };
  if (!Array.isArray(choices)) return false;
  const choice: unknown = choices[0];
  if (choice === undefined || choice === null) return true;
  if (typeof choice !== 'object') return false;
  const { message } = choice as { message?: unknown };
  if (typeof message !== 'object' || message === null) return false;
  const { content } = message as { content?: unknown };
  return content === undefined || content === null || typeof content === 'string';
}

/** Converts a completion into a result, or raises when its text cannot be used. */
function readCompletion(
  completion: ChatCompletion,
  model: string,
  maxOutputTokens: number,
): ModelResult {
  if (!isReadableCompletion(completion)) {
    throw unreadableResponseError(
      'groq',
      'the body is not a chat completion with a choices list and text content',
      [],
      readUsageBlock(completion),
    );
  }
  const usage = mapUsage(completion.usage);
  const choice = completion.choices[0];
  const text = choice?.message.content ?? '';
  // `content_filter` is not in the SDK's type, but OpenAI-compatible servers may send it.
  const finishReason: string = choice?.finish_reason ?? 'unknown';

  if (finishReason === 'length') {
    throw new ProviderError({
      provider: 'groq',
      kind: 'truncated',
      usage,
      message:
        `The Groq response was cut off at the output limit of ${maxOutputTokens} tokens ` +
        `(finish reason length). Raise the output limit or send a smaller file.`,
    });
  }
  if (finishReason === 'content_filter') {
    throw new ProviderError({
      provider: 'groq',
      kind: 'blocked',
      usage,
      message:
        'Groq withheld the response because of its content filter ' +
        '(finish reason content_filter).',
    });
  }
  if (text.trim() === '') {
    throw new ProviderError({
      provider: 'groq',
      kind: 'empty',
      usage,
      message: describeEmptyResponse('groq', finishReason),
    });
  }

  const reportedModel = completion.model;
  return {
    provider: 'groq',
    model: typeof reportedModel === 'string' && reportedModel !== '' ? reportedModel : model,
    text,
    finishReason,
    usage,
  };
}

/** Returns the message from Groq's error body `{ error: { message } }`, or the SDK's message. */
function readErrorDetail(error: APIError): string {
  const body = error.error as { error?: { message?: unknown } } | undefined;
  const message = body?.error?.message;
  if (typeof message === 'string' && message.trim() !== '') return message.trim();
  return error.message;
}

/**
 * Maps an error raised by groq-sdk to a ProviderError with a redacted message. Rethrows
 * errors that did not come from the SDK or from parsing its response.
 */
export function mapGroqError(
  error: unknown,
  context: { apiKey: string; baseUrl: string; baseUrlSetting?: string | undefined; model: string; timeoutMs: number },
): ProviderError {
  const clean = (text: string) => cleanProviderMessage(text, [context.apiKey]);

  if (error instanceof APIConnectionTimeoutError) return timeoutError('groq', context.timeoutMs);
  if (error instanceof APIUserAbortError) return callerAbortError('groq');
  if (error instanceof APIConnectionError) return connectionError('groq', context, error, [context.apiKey]);

  if (error instanceof APIError && error.status !== undefined) {
    const status = error.status;
    const detail = clean(readErrorDetail(error));
    const retryAfterMs = parseRetryAfterHeader(error.headers?.get('retry-after-ms'));
    const retryAfterSeconds =
      retryAfterMs !== undefined
        ? retryAfterMs / 1000
        : parseRetryAfterHeader(error.headers?.get('retry-after'));
    const retryFields = retryAfterSeconds !== undefined ? { retryAfterSeconds } : {};

    if (status === 429) {
      const wait = retryAfterSeconds !== undefined ? ` ${describeRetryAfter(retryAfterSeconds)}` : '';
      return new ProviderError({
        provider: 'groq',
        kind: 'rate_limited',
        status,
        ...retryFields,
        message: `Groq rate limit reached for model ${context.model} (HTTP 429): ${detail}.${wait}`,
      });
    }
    if (status === 401 || status === 403) {
      return new ProviderError({
        provider: 'groq',
        kind: 'unauthorized',
        status,
        message:
          `Groq rejected the API key (HTTP ${status}): ${detail}. ` +
          'Check or replace the Groq API key.',
      });
    }
    return statusError('groq', status, detail, context.model, retryAfterSeconds);
  }

  // A 200 response whose body is not JSON reaches here as a SyntaxError from the SDK's parser,
  // and one whose connection closed before the whole body arrived as a TypeError.
  if (error instanceof SyntaxError || error instanceof TypeError) {
    return unreadableResponseError('groq', error, [context.apiKey]);
  }
  if (error instanceof Groq.GroqError) {
    return new ProviderError({
      provider: 'groq',
      kind: 'unavailable',
      message: `Groq returned a response that could not be read: ${clean(error.message)}.`,
    });
  }
  throw error;
}
