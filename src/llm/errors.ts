import { describeInnermostError } from '../errors/innermost-error.ts';
import { redactCredentials } from '../errors/redact-credentials.ts';
import { providerNames, type ModelUsage, type Provider } from './types.ts';

/**
 * Reason a provider call failed.
 *
 * - `rate_limited`: HTTP 429. `retryAfterSeconds` is set when the provider sent a delay.
 * - `unauthorized`: the key was rejected (401, 403, or Gemini's 400 `API_KEY_INVALID`).
 * - `truncated`: the response stopped at the output token limit.
 * - `empty`: the response contained no text but white space. A corrected file that is empty
 *   comes as a marker instead (see emptyFileMarker).
 * - `blocked`: the provider's safety or recitation filter stopped the prompt or the response.
 * - `unavailable`: HTTP 5xx, a connection failure or an unreadable response.
 * - `timeout`: no response within the timeout, or the caller aborted the request.
 * - `invalid_request`: any other 4xx, such as an unknown model or a request that is too large.
 */
export type ProviderErrorKind =
  | 'rate_limited'
  | 'unauthorized'
  | 'truncated'
  | 'empty'
  | 'blocked'
  | 'unavailable'
  | 'timeout'
  | 'invalid_request';

export type ProviderErrorOptions = {
  provider: Provider;
  kind: ProviderErrorKind;
  message: string;
  status?: number;
  retryAfterSeconds?: number;
  usage?: ModelUsage;
};

/**
 * Failure of one provider call. The message is passed through `redactSecrets` with the
 * pattern rules, and clients also pass their API key, so it can be logged and shown to users.
 */
export class ProviderError extends Error {
  override name = 'ProviderError';
  readonly provider: Provider;
  readonly kind: ProviderErrorKind;
  /** HTTP status of the provider's response, when there was one. */
  readonly status?: number;
  /** Delay in seconds that the provider asked for before the next request. */
  readonly retryAfterSeconds?: number;
  /**
   * Tokens the provider reported for a rejected response. A truncated, empty or blocked
   * response, or one whose text cannot be read, still costs these tokens, so the caller must
   * bill them.
   */
  readonly usage?: ModelUsage;

  constructor(options: ProviderErrorOptions) {
    super(redactSecrets(options.message, []));
    this.provider = options.provider;
    this.kind = options.kind;
    if (options.status !== undefined) this.status = options.status;
    if (options.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
    if (options.usage !== undefined) this.usage = options.usage;
  }
}

/**
 * Failure to connect to a provider's base URL: no response arrived, because the address
 * refused or dropped the connection, or its name did not resolve. `baseUrlSetting` names the
 * environment variable that set the base URL, and is undefined when the default is used.
 */
export class ProviderConnectionError extends ProviderError {
  override name = 'ProviderConnectionError';
  readonly baseUrl: string;
  readonly baseUrlSetting: string | undefined;

  constructor(options: { provider: Provider; baseUrl: string; baseUrlSetting?: string | undefined; reason: string }) {
    const name = providerNames[options.provider];
    const advice = options.baseUrlSetting
      ? `${options.baseUrlSetting} sets this address, so the operator should check that it is ` +
        'right and that the server it names is running.'
      : 'Check that the Fixwright server can reach this address through the network. If it ' +
        `can, ${name} may be down, so try again later.`;
    super({
      provider: options.provider,
      kind: 'unavailable',
      message: `Could not connect to ${name} at ${options.baseUrl} (${options.reason}). ${advice}`,
    });
    this.baseUrl = options.baseUrl;
    this.baseUrlSetting = options.baseUrlSetting;
  }
}

/**
 * Builds the error for a request that got no response from `baseUrl`. The reason is the
 * innermost error: Node's fetch (undici) raises `TypeError: fetch failed`, and the SDKs wrap
 * that, while the socket's own error, such as `connect ECONNREFUSED 127.0.0.1:9`, is its cause.
 */
export function connectionError(
  provider: Provider,
  target: { baseUrl: string; baseUrlSetting?: string | undefined },
  error: unknown,
  secrets: string[],
): ProviderConnectionError {
  const reason = cleanProviderMessage(describeInnermostError(error), secrets);
  return new ProviderConnectionError({ provider, ...target, reason: reason || 'no response' });
}

/**
 * Builds the message of an `empty` ProviderError: a finished response with no text but white
 * space, which is neither a corrected file nor the empty-file marker. The message states that
 * the provider bills such a response, because the metered client records its reported tokens.
 */
export function describeEmptyResponse(provider: Provider, finishReason: string): string {
  const name = providerNames[provider];
  return (
    `${name} returned an empty response (finish reason ${finishReason}): neither the corrected ` +
    `file nor the marker of an empty file. ${name} bills such a response, so its tokens are ` +
    'counted as used. Regenerate this file.'
  );
}

const redacted = '[redacted]';

/**
 * Replaces credentials in `text` with `[redacted]`: every occurrence of each non-empty secret,
 * also percent-encoded, and every credential that redactCredentials finds, such as key query
 * parameters, Bearer tokens, `x-goog-api-key` values, Groq `gsk_` keys and Google `AIza` keys.
 */
export function redactSecrets(text: string, secrets: string[]): string {
  let result = text;

  // Longer secrets first, so that a secret that contains a shorter one is replaced whole.
  // A secret may also appear percent-encoded, for example in a URL query.
  const exactSecrets = secrets
    .filter((secret) => secret.length > 0)
    .flatMap((secret) => [secret, encodeURIComponent(secret)]);
  exactSecrets.sort((a, b) => b.length - a.length);
  for (const secret of exactSecrets) {
    result = result.split(secret).join(redacted);
  }

  return redactCredentials(result);
}

/** Maximum length in characters of a provider message quoted in a ProviderError message. */
const maxProviderMessageLength = 300;

/**
 * Redacts a message that a provider or SDK produced, shortens it, and drops its final period
 * so that it fits inside a sentence.
 */
export function cleanProviderMessage(text: string, secrets: string[]): string {
  const redactedText = redactSecrets(text, secrets);
  return redactedText.slice(0, maxProviderMessageLength).trim().replace(/[.\s]+$/, '');
}

/**
 * Maps an HTTP error status that is neither a rate limit nor a rejected key: 5xx and 408 are
 * `unavailable` (another provider may answer), 404 names the model, anything else is
 * `invalid_request`.
 */
export function statusError(
  provider: Provider,
  status: number,
  detail: string,
  model: string,
  retryAfterSeconds?: number,
): ProviderError {
  const name = providerNames[provider];
  if (status >= 500 || status === 408) {
    return new ProviderError({
      provider,
      kind: 'unavailable',
      status,
      ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
      message: `${name} is unavailable (HTTP ${status}): ${detail}. Try again later.`,
    });
  }
  if (status === 404) {
    return new ProviderError({
      provider,
      kind: 'invalid_request',
      status,
      message: `${name} did not find model ${model} (HTTP 404): ${detail}. Check the model name.`,
    });
  }
  return new ProviderError({
    provider,
    kind: 'invalid_request',
    status,
    message: `${name} rejected the request as invalid (HTTP ${status}): ${detail}.`,
  });
}

/**
 * Maps a failure to read a response that arrived with status 200 to an `unavailable`
 * ProviderError, so that the call is retried and then another provider is tried. `cause` is
 * the error that reading the body raised, or a description of what the body lacks. `usage` is
 * the provider's count for a body that parsed, when it has one, because that response is
 * billed. Node's fetch (undici) raises `TypeError: terminated` when the connection closes
 * before the whole body arrived.
 */
export function unreadableResponseError(
  provider: Provider,
  cause: unknown,
  secrets: string[],
  usage?: ModelUsage,
): ProviderError {
  const name = providerNames[provider];
  if (typeof cause === 'string') {
    return new ProviderError({
      provider,
      kind: 'unavailable',
      message: `${name} returned a response that could not be read: ${cause}.`,
      ...(usage ? { usage } : {}),
    });
  }
  const error = cause instanceof Error ? cause : new Error(String(cause));
  const detail = error.cause instanceof Error ? `${error.message}: ${error.cause.message}` : error.message;
  const clean = cleanProviderMessage(detail, secrets);
  if (error instanceof TypeError && error.message === 'terminated') {
    return new ProviderError({
      provider,
      kind: 'unavailable',
      message: `${name} closed the connection before the whole response arrived (${clean}).`,
    });
  }
  return new ProviderError({
    provider,
    kind: 'unavailable',
    message: `${name} returned a response that could not be read: ${clean}.`,
  });
}
