import { describe, expect, it } from 'vitest';
import { ProviderError, redactSecrets } from '../../src/llm/errors.ts';
import { computeRetryDelayMs, describeRetryAfter, parseRetryAfterHeader } from '../../src/llm/retry.ts';

describe('redactSecrets', () => {
  it('replaces every occurrence of a secret', () => {
    const text = 'key abc-123-secret failed, retry with abc-123-secret';

    expect(redactSecrets(text, ['abc-123-secret'])).toBe(
      'key [redacted] failed, retry with [redacted]',
    );
  });

  it('replaces a percent-encoded secret', () => {
    const secret = 'a+b/c=d secret';

    const result = redactSecrets(`url ?token=${encodeURIComponent(secret)}&x=1`, [secret]);

    expect(result).not.toContain(encodeURIComponent(secret));
    expect(result).toContain('[redacted]');
  });

  it('ignores empty secrets', () => {
    expect(redactSecrets('plain message', [''])).toBe('plain message');
  });

  it.each([
    [
      'a key query parameter',
      'GET /v1beta/models?key=abc123&pageSize=5',
      'GET /v1beta/models?key=[redacted]&pageSize=5',
    ],
    ['an api_key query parameter', 'url?api_key=xyz789', 'url?api_key=[redacted]'],
    [
      'a Bearer token',
      'Authorization: Bearer some.token-value',
      'Authorization: Bearer [redacted]',
    ],
    ['an x-goog-api-key header', 'x-goog-api-key: value123', 'x-goog-api-key: [redacted]'],
    [
      'an x-goog-api-key in JSON',
      '{"x-goog-api-key":"value123"}',
      '{"x-goog-api-key":"[redacted]"}',
    ],
    [
      'a Groq key',
      'bad key gsk_abcdefghijklmnopqrstuvwxyz0123456789',
      'bad key [redacted]',
    ],
    [
      'a Google key',
      'bad key AIzaSyA-abcdefghijklmnopqrstuvwxyz01234',
      'bad key [redacted]',
    ],
  ])('replaces %s', (_case, text, expected) => {
    expect(redactSecrets(text, [])).toBe(expected);
  });

  it('leaves text without credentials unchanged', () => {
    const text = 'Rate limit reached for model llama-3.3-70b-versatile. Please try again in 7s.';

    expect(redactSecrets(text, ['gsk_unused000000000'])).toBe(text);
  });
});

describe('ProviderError', () => {
  it('redacts key patterns in its message', () => {
    const error = new ProviderError({
      provider: 'groq',
      kind: 'invalid_request',
      message: 'Rejected gsk_abcdefghijklmnopqrstuvwxyz0123456789 in the request.',
    });

    expect(error.message).toBe('Rejected [redacted] in the request.');
    expect(error.name).toBe('ProviderError');
  });

  it('keeps status, retry delay and usage', () => {
    const usage = { promptTokens: 1, completionTokens: 2, totalTokens: 3 };
    const error = new ProviderError({
      provider: 'gemini',
      kind: 'truncated',
      message: 'Cut off.',
      status: 200,
      retryAfterSeconds: 4,
      usage,
    });

    expect(error.status).toBe(200);
    expect(error.retryAfterSeconds).toBe(4);
    expect(error.usage).toEqual(usage);
  });
});

describe('retry policy', () => {
  const policy = { maxRetries: 2, maxRetryAfterSeconds: 10, baseDelayMs: 100, maxDelayMs: 250 };
  const error = (kind: ProviderError['kind'], retryAfterSeconds?: number) =>
    new ProviderError({
      provider: 'groq',
      kind,
      message: 'Failed.',
      ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
    });

  it('waits for a retry-after within the cap', () => {
    expect(computeRetryDelayMs(error('rate_limited', 10), 0, policy)).toBe(10_000);
  });

  it('raises a retry-after above the cap', () => {
    expect(computeRetryDelayMs(error('rate_limited', 11), 0, policy)).toBeUndefined();
  });

  it('doubles the delay up to the maximum', () => {
    expect(computeRetryDelayMs(error('unavailable'), 0, policy)).toBe(100);
    expect(computeRetryDelayMs(error('unavailable'), 1, policy)).toBe(200);
    expect(computeRetryDelayMs(error('unavailable'), 1, { ...policy, maxRetries: 5 })).toBe(200);
    expect(computeRetryDelayMs(error('unavailable'), 2, { ...policy, maxRetries: 5 })).toBe(250);
  });

  it('stops after maxRetries', () => {
    expect(computeRetryDelayMs(error('unavailable'), 2, policy)).toBeUndefined();
  });

  it.each(['truncated', 'empty', 'blocked', 'unauthorized', 'timeout', 'invalid_request'] as const)(
    'does not retry %s',
    (kind) => {
      expect(computeRetryDelayMs(error(kind), 0, policy)).toBeUndefined();
    },
  );

  it('parses retry-after seconds and dates', () => {
    expect(parseRetryAfterHeader('7')).toBe(7);
    expect(parseRetryAfterHeader('0.5')).toBe(0.5);
    expect(parseRetryAfterHeader(null)).toBeUndefined();
    expect(parseRetryAfterHeader('soon')).toBeUndefined();
    const inOneMinute = new Date(Date.now() + 60_000).toUTCString();
    const seconds = parseRetryAfterHeader(inOneMinute);
    expect(seconds).toBeGreaterThanOrEqual(58);
    expect(seconds).toBeLessThanOrEqual(60);
  });
});

describe('describeRetryAfter', () => {
  it.each([
    [0, 'Retry after 0 s.'],
    [0.5, 'Retry after 1 s.'],
    [7, 'Retry after 7 s.'],
    [119, 'Retry after 119 s.'],
    [120, 'Retry after 2 minutes.'],
    [3600, 'Retry after 60 minutes.'],
    [7200, 'Retry after 2 hours.'],
    [86_400, 'Retry after 24 hours.'],
    [86_401, 'Retry after more than a day.'],
    [1e20, 'Retry after more than a day.'],
    [Number.POSITIVE_INFINITY, 'Retry after more than a day.'],
  ])('words %s seconds', (seconds, expected) => {
    expect(describeRetryAfter(seconds)).toBe(expected);
  });
});
