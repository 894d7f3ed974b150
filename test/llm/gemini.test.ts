import { describe, expect, it } from 'vitest';
import { createGeminiClient, type GeminiClientOptions } from '../../src/llm/gemini.ts';
import type { ModelRequest } from '../../src/llm/types.ts';
import { geminiErrorBody, startFakeGemini, type FakeGemini } from '../../src/demo/fakes/gemini.ts';
import {
  countTimers,
  expectProviderError,
  startCutOffServer,
  testClientOptions,
  useFakeModelApi,
} from '../helpers/model-clients.ts';

const apiKey = 'AIzaTESTONLY00000000000000000000000000';
const model = 'gemini-2.5-flash';
const request: ModelRequest = {
  system: 'Return the file.',
  user: '<file path="a.py">\nprint(1)\n</file>',
  maxOutputTokens: 1024,
};

let fake: FakeGemini;

useFakeModelApi(startFakeGemini, (started) => {
  fake = started;
});

function client(overrides: Partial<GeminiClientOptions> = {}) {
  return createGeminiClient({
    apiKey,
    baseUrl: fake.url,
    model,
    ...testClientOptions,
    ...overrides,
  });
}

const quotaExceeded = (retryDelay: string) => ({
  status: 429,
  body: geminiErrorBody(429, 'RESOURCE_EXHAUSTED', 'You exceeded your current quota.', [
    {
      '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
      violations: [{ quotaMetric: 'generate_content_free_tier_requests', quotaId: 'PerDay' }],
    },
    { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay },
  ]),
});

describe('Gemini client', () => {
  it('maps the request, response and usage', async () => {
    fake.setHandler(() => ({ text: 'import os\n', thoughtsTokens: 7 }));

    const result = await client().generate(request);

    expect(fake.requests).toHaveLength(1);
    const sent = fake.requests[0]!;
    expect(sent.method).toBe('POST');
    expect(sent.path).toBe(`/v1beta/models/${model}:generateContent`);
    expect(sent.headers['x-goog-api-key']).toBe(apiKey);
    expect(sent.body).toMatchObject({
      systemInstruction: { parts: [{ text: request.system }] },
      contents: [{ role: 'user', parts: [{ text: request.user }] }],
      generationConfig: { maxOutputTokens: 1024, temperature: 0 },
    });

    const usage = sent.reply?.usage;
    expect(usage?.thoughtsTokenCount).toBe(7);
    expect(result).toEqual({
      provider: 'gemini',
      model,
      text: 'import os\n',
      finishReason: 'STOP',
      usage: {
        promptTokens: usage!.promptTokenCount,
        // Thinking tokens are billed as output.
        completionTokens: usage!.candidatesTokenCount + 7,
        totalTokens: usage!.totalTokenCount,
      },
    });
  });

  it('reads counts that are not whole numbers as missing', async () => {
    const usage = { promptTokenCount: 50, candidatesTokenCount: 20, thoughtsTokenCount: 5 };
    fake.enqueue(
      { text: 'import os\n', usage: { ...usage, totalTokenCount: '75' as unknown as number } },
      { text: 'import os\n', usage: { promptTokenCount: 1.5, candidatesTokenCount: -3, totalTokenCount: 0.5 } },
    );

    const computed = await client().generate(request);
    const invalid = await client().generate(request);

    // The total that is a string is computed from prompt, candidates and thinking tokens.
    expect(computed.usage).toEqual({ promptTokens: 50, completionTokens: 25, totalTokens: 75 });
    expect(invalid.usage).toEqual({ promptTokens: 0, completionTokens: 0, totalTokens: 0 });
  });

  it('raises truncated with usage for MAX_TOKENS', async () => {
    fake.enqueue({
      text: 'import',
      finishReason: 'MAX_TOKENS',
      usage: { promptTokenCount: 50, candidatesTokenCount: 24, totalTokenCount: 1074 },
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('truncated');
    expect(error.usage).toEqual({ promptTokens: 50, completionTokens: 1024, totalTokens: 1074 });
    expect(fake.requests).toHaveLength(1);
  });

  it('raises blocked with usage for a SAFETY candidate', async () => {
    fake.enqueue({
      text: '',
      finishReason: 'SAFETY',
      usage: { promptTokenCount: 50, candidatesTokenCount: 0, totalTokenCount: 50 },
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('blocked');
    expect(error.message).toContain('SAFETY');
    expect(error.usage).toEqual({ promptTokens: 50, completionTokens: 0, totalTokens: 50 });
  });

  it('raises blocked for a blocked prompt', async () => {
    fake.enqueue({
      status: 200,
      body: {
        promptFeedback: { blockReason: 'PROHIBITED_CONTENT' },
        usageMetadata: { promptTokenCount: 60, totalTokenCount: 60 },
        modelVersion: model,
      },
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('blocked');
    expect(error.message).toContain('PROHIBITED_CONTENT');
    expect(error.usage).toEqual({ promptTokens: 60, completionTokens: 0, totalTokens: 60 });
  });

  it('raises empty with usage for a blank answer', async () => {
    fake.enqueue({
      text: '\n',
      usage: { promptTokenCount: 50, candidatesTokenCount: 1, totalTokenCount: 51 },
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('empty');
    expect(error.usage).toEqual({ promptTokens: 50, completionTokens: 1, totalTokens: 51 });
    expect(error.message).toBe(
      'Gemini returned an empty response (finish reason STOP): neither the corrected file nor ' +
        'the marker of an empty file. Gemini bills such a response, so its tokens are counted as ' +
        'used. Regenerate this file.',
    );
  });

  it('retries a 429 with a short RetryInfo delay', async () => {
    fake.enqueue(quotaExceeded('1s'));

    const started = Date.now();
    const result = await client().generate(request);

    expect(result.text).toBe('fake answer');
    expect(fake.requests).toHaveLength(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('words an absurd RetryInfo delay', async () => {
    fake.enqueue(quotaExceeded('99999999999999999999s'));
    const timersBefore = countTimers();

    const started = Date.now();
    const error = await expectProviderError(client().generate(request));

    expect(Date.now() - started).toBeLessThan(900);
    expect(fake.requests).toHaveLength(1);
    expect(error.retryAfterSeconds).toBe(1e20);
    expect(error.message).toBe(
      `Gemini rate limit or quota reached for model ${model} (HTTP 429): ` +
        'You exceeded your current quota. Retry after more than a day.',
    );
    expect(countTimers()).toBeLessThanOrEqual(timersBefore);
  });

  it('fails at once on a 429 with a long RetryInfo delay', async () => {
    fake.enqueue(quotaExceeded('3600s'));

    const started = Date.now();
    const error = await expectProviderError(client().generate(request));

    expect(Date.now() - started).toBeLessThan(900);
    expect(error.kind).toBe('rate_limited');
    expect(error.status).toBe(429);
    expect(error.retryAfterSeconds).toBe(3600);
    expect(error.message).toContain('You exceeded your current quota');
    expect(error.message).not.toContain('QuotaFailure');
    expect(fake.requests).toHaveLength(1);
  });

  it('retries a 503 then succeeds', async () => {
    fake.enqueue({
      status: 503,
      body: geminiErrorBody(503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.'),
    });

    const result = await client().generate(request);

    expect(result.text).toBe('fake answer');
    expect(fake.requests).toHaveLength(2);
  });

  it('raises unavailable after maxRetries server errors', async () => {
    const failure = {
      status: 500,
      body: geminiErrorBody(500, 'INTERNAL', 'An internal error has occurred.'),
    };
    fake.enqueue(failure, failure, failure);

    const error = await expectProviderError(client({ maxRetries: 2 }).generate(request));

    expect(error.kind).toBe('unavailable');
    expect(error.status).toBe(500);
    expect(error.message).toContain('An internal error has occurred');
    expect(fake.requests).toHaveLength(3);
  });

  it.each([
    ['null', null],
    ['a string', 'text'],
  ])('raises unavailable for a body of %s', async (_case, body) => {
    const reply = { status: 200, body: JSON.stringify(body) };
    fake.enqueue(reply, reply, reply);

    const error = await expectProviderError(client({ maxRetries: 2 }).generate(request));

    expect(error.kind).toBe('unavailable');
    expect(error.message).toContain('Gemini returned a response that could not be read');
    expect(fake.requests).toHaveLength(3);
  });

  it('reads the text parts next to a part of null', async () => {
    fake.enqueue({
      status: 200,
      body: { candidates: [{ content: { parts: [null, { text: 'print(2)' }] }, finishReason: 'STOP' }] },
    });

    const result = await client().generate(request);

    expect(result.text).toBe('print(2)');
  });

  it.each([
    ['a number', 5],
    ['an object', { text: 'print(2)' }],
  ])('raises unavailable for parts of %s', async (_case, parts) => {
    const reply = { status: 200, body: { candidates: [{ content: { parts }, finishReason: 'STOP' }] } };
    fake.enqueue(reply, reply);

    const error = await expectProviderError(client({ maxRetries: 1 }).generate(request));

    expect(error.kind).toBe('unavailable');
    expect(error.message).toContain('Gemini returned a response that could not be read');
    expect(fake.requests).toHaveLength(2);
  });

  it('keeps the usage of unreadable parts', async () => {
    const usageMetadata = { promptTokenCount: 40, candidatesTokenCount: 2, totalTokenCount: 42 };
    fake.enqueue({
      status: 200,
      body: { candidates: [{ content: { parts: 5 }, finishReason: 'STOP' }], usageMetadata },
    });

    const error = await expectProviderError(client({ maxRetries: 0 }).generate(request));

    expect(error.kind).toBe('unavailable');
    expect(error.usage).toEqual({ promptTokens: 40, completionTokens: 2, totalTokens: 42 });
  });

  it('raises unavailable when the connection closes mid-body', async () => {
    const server = await startCutOffServer('{"candidates":[{"content":{"parts":[{"text":"print');
    try {
      const error = await expectProviderError(
        client({ baseUrl: server.url, maxRetries: 1 }).generate(request),
      );

      expect(error.kind).toBe('unavailable');
      expect(error.message).toContain('Gemini closed the connection before the whole response arrived');
      expect(server.requests()).toBe(2);
    } finally {
      await server.close();
    }
  });

  it('raises unauthorized for API_KEY_INVALID without retrying', async () => {
    const rejectedKey = 'AIzaREJECTED000000000000000000000000000';
    fake.rejectKey(rejectedKey);

    const error = await expectProviderError(client({ apiKey: rejectedKey }).generate(request));

    expect(error.kind).toBe('unauthorized');
    expect(error.status).toBe(400);
    expect(error.message).toContain('API key not valid');
    expect(error.message).not.toContain(rejectedKey);
    expect(fake.requests).toHaveLength(1);
  });

  it.each([401, 403])('raises unauthorized for %i', async (status) => {
    fake.enqueue({
      status,
      body: geminiErrorBody(status, 'PERMISSION_DENIED', 'The caller does not have permission'),
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('unauthorized');
    expect(error.status).toBe(status);
  });

  it('raises invalid_request for an unknown model', async () => {
    const error = await expectProviderError(client({ model: 'gemini-0-none' }).generate(request));

    expect(error.kind).toBe('invalid_request');
    expect(error.status).toBe(404);
    expect(fake.requests).toHaveLength(1);
  });

  it('raises timeout and leaves no timer behind', async () => {
    fake.enqueue({ text: 'late', delayMs: 3000 });
    const timersBefore = countTimers();

    const started = Date.now();
    const error = await expectProviderError(client({ timeoutMs: 200 }).generate(request));
    const elapsed = Date.now() - started;
    await fake.idle();

    expect(error.kind).toBe('timeout');
    expect(error.message).toContain('200 ms');
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(1500);
    expect(fake.requests).toHaveLength(1);
    expect(countTimers()).toBeLessThanOrEqual(timersBefore);
  });

  it('leaves no timer behind after an answer', async () => {
    const timersBefore = countTimers();

    await client({ timeoutMs: 60_000 }).generate(request);
    await fake.idle();

    expect(countTimers()).toBeLessThanOrEqual(timersBefore);
  });

  it('raises timeout when the caller aborts', async () => {
    fake.enqueue({ text: 'late', delayMs: 3000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);

    const started = Date.now();
    const error = await expectProviderError(client().generate(request, { signal: controller.signal }));

    expect(Date.now() - started).toBeLessThan(1500);
    expect(error.kind).toBe('timeout');
    expect(error.message).toContain('caller aborted');
    await fake.idle();
  });

  it('redacts the key when the provider echoes it', async () => {
    fake.enqueue({
      status: 400,
      body: geminiErrorBody(
        400,
        'INVALID_ARGUMENT',
        `Request to https://example.invalid/v1beta/models?key=${apiKey} failed, ` +
          `x-goog-api-key: ${apiKey}`,
      ),
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('invalid_request');
    expect(error.message).not.toContain(apiKey);
    expect(error.message).not.toContain('AIza');
    expect(error.message).toContain('key=[redacted]');
  });

  it('lists the models that support generateContent', async () => {
    const models = await client().listModels();

    expect(models).toEqual(['gemini-2.0-flash', 'gemini-2.5-flash', 'gemini-2.5-pro']);
    expect(fake.requests[0]?.method).toBe('GET');
    expect(fake.requests[0]?.path).toBe('/v1beta/models?pageSize=1000');
    expect(fake.requests[0]?.headers['x-goog-api-key']).toBe(apiKey);
  });

  it('follows nextPageToken when listing models', async () => {
    const many = Array.from({ length: 1001 }, (_, index) => ({
      name: `gemini-test-${String(index).padStart(4, '0')}`,
      methods: ['generateContent'],
    }));
    const paged = await startFakeGemini({ models: many });
    try {
      const models = await client({ baseUrl: paged.url }).listModels();

      expect(models).toHaveLength(1001);
      expect(models.at(-1)).toBe('gemini-test-1000');
      expect(paged.requests).toHaveLength(2);
      expect(paged.requests[1]?.path).toContain('pageToken=1000');
    } finally {
      await paged.close();
    }
  });

  it('raises unauthorized when listing models with a rejected key', async () => {
    const rejectedKey = 'AIzaREJECTEDLIST00000000000000000000000';
    fake.rejectKey(rejectedKey);

    const error = await expectProviderError(client({ apiKey: rejectedKey }).listModels());

    expect(error.kind).toBe('unauthorized');
    expect(error.message).not.toContain(rejectedKey);
    expect(fake.requests).toHaveLength(1);
  });
});
