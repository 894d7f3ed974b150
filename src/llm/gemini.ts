import {
  GoogleGenerativeAI,
  GoogleGenerativeAIAbortError,
  GoogleGenerativeAIError,
  GoogleGenerativeAIFetchError,
  GoogleGenerativeAIRequestInputError,
  type GenerateContentResponse,
  type UsageMetadata,
} from '@google/generative-ai';
import type { Logger } from '../logger.ts';
import { recordFetchErrors, type FetchErrorRecord } from '../net/fetch-errors.ts';
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
  runWithRetries,
  startAttemptSignal,
  timeoutError,
  type RetryPolicy,
} from './retry.ts';
import type { ModelClient, ModelRequest, ModelResult, ModelUsage } from './types.ts';
import { hasTokenCount, modelUsage, tokenCount } from './usage.ts';

export type GeminiClientOptions = {
  apiKey: string;
  /** Host root such as `https://generativelanguage.googleapis.com`. */
  baseUrl: string;
  /** The environment variable that set `baseUrl`, named in connection errors; unset for the default. */
  baseUrlSetting?: string;
  /** Model id such as `gemini-2.5-flash`, with or without the `models/` prefix. */
  model: string;
  /** Maximum number of retries per call for 429, 5xx and connection errors. */
  maxRetries: number;
  /** Timeout in ms for each HTTP request. Every retry gets the full timeout again. */
  timeoutMs: number;
  /** Maximum RetryInfo delay in seconds that is still waited for. Defaults to 10. */
  maxRetryAfterSeconds?: number;
  /** Delay in ms before the first retry when Gemini sent no delay. Defaults to 500. */
  retryBaseDelayMs?: number;
  /** Sampling temperature. Defaults to 0, because a fix should not vary between runs. */
  temperature?: number;
  logger?: Logger;
};

/** Finish reasons with which Gemini withholds the response because of its content. */
const blockedFinishReasons = new Set([
  'SAFETY',
  'RECITATION',
  'LANGUAGE',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'IMAGE_SAFETY',
]);

/** Finish reasons of a complete response. Gemini may leave the field out. */
const completeFinishReasons = new Set(['STOP', 'FINISH_REASON_UNSPECIFIED', '']);

/** API version path segment, the one that @google/generative-ai 0.24.1 uses by default. */
const apiVersion = 'v1beta';

/** Maximum number of pages read from the model list, 1000 models each. */
const maxModelListPages = 10;

/**
 * Creates a client for Gemini's generateContent API. @google/generative-ai 0.24.1 does not
 * retry, so this client retries 429, 5xx and connection errors per `RetryPolicy`. The timeout
 * aborts the request through a signal whose timer this client clears, because the SDK's
 * `timeout` option starts a timer that it never clears.
 */
export function createGeminiClient(options: GeminiClientOptions): ModelClient {
  const { apiKey, model, timeoutMs, logger } = options;
  if (apiKey.trim() === '') {
    throw new ProviderError({
      provider: 'gemini',
      kind: 'unauthorized',
      message: 'The Gemini API key is empty. Set a Gemini API key before sending requests.',
    });
  }

  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const modelId = model.replace(/^models\//, '');
  const policy: RetryPolicy = {
    ...defaultRetryPolicy,
    maxRetries: options.maxRetries,
    maxRetryAfterSeconds: options.maxRetryAfterSeconds ?? defaultRetryPolicy.maxRetryAfterSeconds,
    baseDelayMs: options.retryBaseDelayMs ?? defaultRetryPolicy.baseDelayMs,
  };
  const sdk = new GoogleGenerativeAI(apiKey);
  const context = {
    provider: 'gemini' as const,
    model: modelId,
    policy,
    ...(logger ? { logger } : {}),
  };
  const errorContext = { apiKey, baseUrl, baseUrlSetting: options.baseUrlSetting, model: modelId, timeoutMs };

  async function generateOnce(request: ModelRequest, signal?: AbortSignal): Promise<ModelResult> {
    if (signal?.aborted) throw callerAbortError('gemini');

    const generativeModel = sdk.getGenerativeModel(
      {
        model: modelId,
        systemInstruction: request.system,
        generationConfig: {
          maxOutputTokens: request.maxOutputTokens,
          temperature: options.temperature ?? 0,
        },
      },
      { baseUrl, apiVersion },
    );
    const attempt = startAttemptSignal(timeoutMs, signal);
    const fetchErrors: FetchErrorRecord = {};

    let response: GenerateContentResponse;
    try {
      const result = await recordFetchErrors(fetchErrors, () =>
        generativeModel.generateContent(
          { contents: [{ role: 'user', parts: [{ text: request.user }] }] },
          { signal: attempt.signal },
        ),
      );
      response = result.response;
    } catch (error) {
      if (attempt.timedOut()) throw timeoutError('gemini', timeoutMs);
      if (attempt.callerAborted()) throw callerAbortError('gemini');
      throw mapGeminiError(error, errorContext, fetchErrors.lastError);
    } finally {
      attempt.dispose();
    }

    return readResponse(response, modelId, request.maxOutputTokens);
  }

  async function listModelPage(pageToken: string | undefined): Promise<GeminiModelList> {
    const url = new URL(`${baseUrl}/${apiVersion}/models`);
    url.searchParams.set('pageSize', '1000');
    if (pageToken) url.searchParams.set('pageToken', pageToken);

    const attempt = startAttemptSignal(timeoutMs);
    try {
      const response = await fetch(url, {
        headers: { 'x-goog-api-key': apiKey },
        signal: attempt.signal,
      });
      const body: unknown = await response.json().catch(() => undefined);
      if (attempt.timedOut()) throw timeoutError('gemini', timeoutMs);
      if (!response.ok) throw errorFromStatus(response.status, readErrorBody(body), errorContext);
      if (!isModelList(body)) {
        throw new ProviderError({
          provider: 'gemini',
          kind: 'unavailable',
          status: response.status,
          message: 'Gemini returned a model list that could not be read.',
        });
      }
      return body;
    } catch (error) {
      if (error instanceof ProviderError) throw error;
      if (attempt.timedOut()) throw timeoutError('gemini', timeoutMs);
      throw connectionError('gemini', errorContext, error, [apiKey]);
    } finally {
      attempt.dispose();
    }
  }

  async function listModels(): Promise<string[]> {
    const names: string[] = [];
    let pageToken: string | undefined;
    for (let page = 0; page < maxModelListPages; page++) {
      const token = pageToken;
      const list = await runWithRetries(context, () => listModelPage(token));
      for (const entry of list.models ?? []) {
        const methods = entry.supportedGenerationMethods;
        if (methods && !methods.includes('generateContent')) continue;
        names.push(entry.name.replace(/^models\//, ''));
      }
      pageToken = list.nextPageToken;
      if (!pageToken) break;
    }
    return names.sort();
  }

  return {
    provider: 'gemini',
    model: modelId,
    generate: (request, callOptions) => {
      const signal = callOptions?.signal;
      return runWithRetries(context, () => generateOnce(request, signal), signal, callOptions?.onBilledRetry);
    },
    listModels,
  };
}

type GeminiModelList = {
  models?: { name: string; supportedGenerationMethods?: string[] }[];
  nextPageToken?: string;
};

function isModelList(body: unknown): body is GeminiModelList {
  if (typeof body !== 'object' || body === null) return false;
  const models = (body as { models?: unknown }).models;
  if (models === undefined) return true;
  if (!Array.isArray(models)) return false;
  return models.every(
    (entry) => typeof entry === 'object' && entry !== null && typeof entry.name === 'string',
  );
}

/**
 * Maps Gemini's usage counts. The total includes thinking tokens (`thoughtsTokenCount`), so
 * the completion count is the total minus the prompt, which bills thinking as output.
 */
function mapUsage(metadata: UsageMetadata | undefined): ModelUsage {
  // SDK 0.24.1 does not declare thoughtsTokenCount, which thinking models add.
  const thoughtsTokens = (metadata as { thoughtsTokenCount?: unknown } | undefined)
    ?.thoughtsTokenCount;
  const promptTokens = tokenCount(metadata?.promptTokenCount);
  // A total that is not a count is treated as missing, like the other counts.
  const total = hasTokenCount(metadata?.totalTokenCount)
    ? tokenCount(metadata?.totalTokenCount)
    : promptTokens + tokenCount(metadata?.candidatesTokenCount) + tokenCount(thoughtsTokens);
  return modelUsage(promptTokens, Math.max(total - promptTokens, 0), total);
}

/** Returns the usage of a response that cannot be used, or undefined when it has no counts. */
function readBilledUsage(metadata: UsageMetadata | undefined): ModelUsage | undefined {
  if (typeof metadata !== 'object' || metadata === null) return undefined;
  const { promptTokenCount, candidatesTokenCount, totalTokenCount } = metadata;
  const thoughtsTokens = (metadata as { thoughtsTokenCount?: unknown }).thoughtsTokenCount;
  if (!hasTokenCount(promptTokenCount, candidatesTokenCount, totalTokenCount, thoughtsTokens)) {
    return undefined;
  }
  return mapUsage(metadata);
}

/**
 * Joins the text parts of the first candidate, leaving out thought summaries. Raises
 * `unavailable` when the parts are not a list, which a proxy or a changed API could send, with
 * the response's usage when it has counts.
 */
function readCandidateText(response: GenerateContentResponse): string {
  const parts: unknown = response.candidates?.[0]?.content?.parts ?? [];
  if (!Array.isArray(parts)) {
    throw unreadableResponseError(
      'gemini',
      'the parts of the first candidate are not a list',
      [],
      readBilledUsage(response.usageMetadata),
    );
  }
  let text = '';
  for (const part of parts) {
    if (typeof part !== 'object' || part === null) continue;
    if ((part as { thought?: boolean }).thought === true) continue;
    if (typeof part.text === 'string') text += part.text;
  }
  return text;
}

/** Converts a response into a result, or raises when its text cannot be used. */
function readResponse(
  response: GenerateContentResponse,
  model: string,
  maxOutputTokens: number,
): ModelResult {
  const usage = mapUsage(response.usageMetadata);
  const candidate = response.candidates?.[0];

  if (!candidate) {
    const blockReason = response.promptFeedback?.blockReason;
    if (blockReason) {
      const detail = response.promptFeedback?.blockReasonMessage;
      return raise({
        provider: 'gemini',
        kind: 'blocked',
        usage,
        message:
          `Gemini blocked the prompt (block reason ${blockReason})` +
          (detail ? `: ${cleanProviderMessage(detail, [])}.` : '.'),
      });
    }
    return raise({
      provider: 'gemini',
      kind: 'empty',
      usage,
      message: 'Gemini returned no candidate.',
    });
  }

  const finishReason = candidate.finishReason ?? '';
  if (finishReason === 'MAX_TOKENS') {
    return raise({
      provider: 'gemini',
      kind: 'truncated',
      usage,
      message:
        `The Gemini response was cut off at the output limit of ${maxOutputTokens} tokens, ` +
        `thinking tokens included (finish reason MAX_TOKENS). ` +
        `Raise the output limit or send a smaller file.`,
    });
  }
  if (blockedFinishReasons.has(finishReason)) {
    return raise({
      provider: 'gemini',
      kind: 'blocked',
      usage,
      message: `Gemini withheld the response (finish reason ${finishReason}).`,
    });
  }
  if (!completeFinishReasons.has(finishReason)) {
    // OTHER, MALFORMED_FUNCTION_CALL and reasons added after SDK 0.24.1 end the response early,
    // so the text may be incomplete and is not used.
    return raise({
      provider: 'gemini',
      kind: 'blocked',
      usage,
      message: `Gemini stopped the response early (finish reason ${finishReason}).`,
    });
  }

  const text = readCandidateText(response);
  if (text.trim() === '') {
    return raise({
      provider: 'gemini',
      kind: 'empty',
      usage,
      message: describeEmptyResponse('gemini', finishReason || 'missing'),
    });
  }
  return { provider: 'gemini', model, text, finishReason: finishReason || 'STOP', usage };
}

function raise(options: ConstructorParameters<typeof ProviderError>[0]): never {
  throw new ProviderError(options);
}

/** Parts of Gemini's error body `{ error: { code, message, status, details } }`. */
type GeminiErrorBody = { message: string; status?: string; details: unknown[] };

function readErrorBody(body: unknown): GeminiErrorBody {
  const error = (body as { error?: { message?: unknown; status?: unknown; details?: unknown } })
    ?.error;
  return {
    message: typeof error?.message === 'string' ? error.message : '',
    ...(typeof error?.status === 'string' ? { status: error.status } : {}),
    details: Array.isArray(error?.details) ? error.details : [],
  };
}

/** Finds the detail entry of a google.rpc type, for example `RetryInfo` or `ErrorInfo`. */
function findDetail(details: unknown[], typeName: string): Record<string, unknown> | undefined {
  for (const detail of details) {
    if (typeof detail !== 'object' || detail === null) continue;
    const type = (detail as { '@type'?: unknown })['@type'];
    if (typeof type === 'string' && type.endsWith(`google.rpc.${typeName}`)) {
      return detail as Record<string, unknown>;
    }
  }
  return undefined;
}

/** Parses a protobuf Duration in JSON form such as `7s` or `0.5s` into seconds. */
function parseDurationSeconds(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+(?:\.\d+)?)s$/.exec(value.trim());
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

type ErrorContext = {
  apiKey: string;
  baseUrl: string;
  baseUrlSetting?: string | undefined;
  model: string;
  timeoutMs: number;
};

/** Builds the ProviderError for an HTTP error status and Gemini's error body. */
function errorFromStatus(
  status: number,
  body: GeminiErrorBody,
  context: ErrorContext,
): ProviderError {
  const detail = cleanProviderMessage(body.message || `HTTP ${status}`, [context.apiKey]);
  const errorInfo = findDetail(body.details, 'ErrorInfo');
  const keyInvalid =
    errorInfo?.reason === 'API_KEY_INVALID' || /api key not valid/i.test(body.message);

  if (status === 429) {
    const retryInfo = findDetail(body.details, 'RetryInfo');
    const retryAfterSeconds = parseDurationSeconds(retryInfo?.retryDelay);
    const wait = retryAfterSeconds !== undefined ? ` ${describeRetryAfter(retryAfterSeconds)}` : '';
    return new ProviderError({
      provider: 'gemini',
      kind: 'rate_limited',
      status,
      ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
      message:
        `Gemini rate limit or quota reached for model ${context.model} (HTTP 429): ` +
        `${detail}.${wait}`,
    });
  }
  if (status === 401 || status === 403 || (status === 400 && keyInvalid)) {
    return new ProviderError({
      provider: 'gemini',
      kind: 'unauthorized',
      status,
      message:
        `Gemini rejected the API key (HTTP ${status}): ${detail}. ` +
        'Check or replace the Gemini API key.',
    });
  }
  return statusError('gemini', status, detail, context.model);
}

/**
 * Recovers Gemini's own message from the SDK's fetch error, whose message has the form
 * `Error fetching from <url>: [<status> <text>] <message> <details as JSON>`.
 */
function readFetchErrorMessage(error: GoogleGenerativeAIFetchError): string {
  const match = /\] (.*)$/s.exec(error.message);
  let message = match?.[1] ?? '';
  if (error.errorDetails !== undefined) {
    const detailsJson = ` ${JSON.stringify(error.errorDetails)}`;
    if (message.endsWith(detailsJson)) message = message.slice(0, -detailsJson.length);
  }
  return message;
}

/**
 * Maps an error raised by @google/generative-ai to a ProviderError with a redacted message.
 * `fetchError` is the error that fetch reported for the SDK's request, when there was one.
 * Rethrows errors that did not come from the SDK or from parsing its response.
 */
export function mapGeminiError(
  error: unknown,
  context: ErrorContext,
  fetchError?: Error,
): ProviderError {
  if (error instanceof ProviderError) return error;
  const clean = (text: string) => cleanProviderMessage(text, [context.apiKey]);

  if (error instanceof GoogleGenerativeAIFetchError) {
    if (error.status === undefined) {
      return new ProviderError({
        provider: 'gemini',
        kind: 'unavailable',
        message: `Gemini request failed: ${clean(error.message)}.`,
      });
    }
    const body: GeminiErrorBody = {
      message: readFetchErrorMessage(error),
      details: Array.isArray(error.errorDetails) ? error.errorDetails : [],
    };
    return errorFromStatus(error.status, body, context);
  }
  if (error instanceof GoogleGenerativeAIAbortError) {
    return timeoutError('gemini', context.timeoutMs);
  }
  if (error instanceof GoogleGenerativeAIRequestInputError) {
    return new ProviderError({
      provider: 'gemini',
      kind: 'invalid_request',
      message: `Gemini request is invalid: ${clean(error.message)}.`,
    });
  }
  if (error instanceof GoogleGenerativeAIError) {
    // The SDK raises this base class for connection failures, with the message
    // "[GoogleGenerativeAI Error]: Error fetching from URL: fetch failed". SDK 0.24.1 keeps
    // only the message of fetch's error and drops its cause, the socket error (ECONNREFUSED,
    // ECONNRESET, ENOTFOUND), so `recordFetchErrors` supplies that error as `fetchError`.
    const reason = error.message.replace(/^(\[GoogleGenerativeAI Error\]: )?Error fetching from \S+: /, '');
    return connectionError('gemini', context, fetchError ?? new Error(reason), [context.apiKey]);
  }
  // A 200 response whose body is not JSON reaches here as a SyntaxError from response.json().
  // A TypeError comes from a connection that closed before the whole body arrived, or from
  // the SDK, which sets helper functions on the parsed body and fails on JSON that is no object.
  if (error instanceof SyntaxError || error instanceof TypeError) {
    return unreadableResponseError('gemini', error, [context.apiKey]);
  }
  throw error;
}
