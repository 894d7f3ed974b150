import { describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/llm/errors.ts';
import { createGroqClient, type GroqClientOptions } from '../../src/llm/groq.ts';
import type { ModelRequest } from '../../src/llm/types.ts';
import { groqErrorBody, startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import {
  countTimers,
  expectProviderError,
  startCutOffServer,
  testClientOptions,
  useFakeModelApi,
} from '../helpers/model-clients.ts';

const apiKey = 'gsk_TESTONLY0000000000000000000000000000000000000000000000';
const model = 'llama-3.3-70b-versatile';
const request: ModelRequest = {
  system: 'Return the file.',
  user: '<file path="a.ts">\nconst a = 1;\n</file>',
  maxOutputTokens: 512,
};

let fake: FakeGroq;

useFakeModelApi(startFakeGroq, (started) => {
  fake = started;
});

function client(overrides: Partial<GroqClientOptions> = {}) {
  return createGroqClient({
    apiKey,
    baseUrl: fake.url,
    model,
    ...testClientOptions,
    ...overrides,
  });
}

describe('Groq client', () => {
  it('maps the request, response and usage', async () => {
    fake.setHandler(() => ({ text: 'const a = 2;\n' }));

    const result = await client().generate(request);

    expect(fake.requests).toHaveLength(1);
    const sent = fake.requests[0]!;
    expect(sent.method).toBe('POST');
    expect(sent.path).toBe('/openai/v1/chat/completions');
    expect(sent.headers.authorization).toBe(`Bearer ${apiKey}`);
    expect(sent.body).toMatchObject({
      model,
      messages: [
        { role: 'system', content: request.system },
        { role: 'user', content: request.user },
      ],
      max_completion_tokens: 512,
      temperature: 0,
    });

    const usage = sent.reply?.usage;
    expect(usage).toBeDefined();
    expect(result).toEqual({
      provider: 'groq',
      model,
      text: 'const a = 2;\n',
      finishReason: 'stop',
      usage: {
        promptTokens: usage!.prompt_tokens,
        completionTokens: usage!.completion_tokens,
        totalTokens: usage!.total_tokens,
      },
    });
  });

  it('retries a 429 with a short retry-after', async () => {
    fake.enqueue({
      status: 429,
      headers: { 'retry-after': '1' },
      body: groqErrorBody('Rate limit reached', 'tokens', 'rate_limit_exceeded'),
    });

    const started = Date.now();
    const result = await client().generate(request);

    expect(result.text).toBe('fake answer');
    expect(fake.requests).toHaveLength(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('fails at once on a 429 with a long retry-after', async () => {
    fake.enqueue({
      status: 429,
      headers: { 'retry-after': '3600' },
      body: groqErrorBody('Rate limit reached for tokens per day', 'tokens', 'rate_limit_exceeded'),
    });

    const started = Date.now();
    const error = await expectProviderError(client().generate(request));

    expect(Date.now() - started).toBeLessThan(900);
    expect(fake.requests).toHaveLength(1);
    expect(error.kind).toBe('rate_limited');
    expect(error.status).toBe(429);
    expect(error.retryAfterSeconds).toBe(3600);
    expect(error.message).toContain('Rate limit reached for tokens per day');
    expect(error.usage).toBeUndefined();
  });

  it('words an absurd retry-after', async () => {
    fake.enqueue({
      status: 429,
      headers: { 'retry-after': '99999999999999999999' },
      body: groqErrorBody('Rate limit reached', 'tokens', 'rate_limit_exceeded'),
    });
    const timersBefore = countTimers();

    const started = Date.now();
    const error = await expectProviderError(client().generate(request));

    expect(Date.now() - started).toBeLessThan(900);
    expect(fake.requests).toHaveLength(1);
    expect(error.retryAfterSeconds).toBe(1e20);
    expect(error.message).toBe(
      `Groq rate limit reached for model ${model} (HTTP 429): Rate limit reached. Retry after more than a day.`,
    );
    expect(countTimers()).toBeLessThanOrEqual(timersBefore);
  });

  it('words a retry-after-ms in minutes', async () => {
    fake.enqueue({
      status: 429,
      headers: { 'retry-after-ms': '150000', 'retry-after': '99999999999999999999' },
      body: groqErrorBody('Rate limit reached', 'tokens', 'rate_limit_exceeded'),
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.retryAfterSeconds).toBe(150);
    expect(error.message).toBe(
      `Groq rate limit reached for model ${model} (HTTP 429): Rate limit reached. Retry after 3 minutes.`,
    );
  });

  it('stops retrying a 429 after maxRetries', async () => {
    const limited = {
      status: 429,
      headers: { 'retry-after': '0' },
      body: groqErrorBody('Rate limit reached', 'requests', 'rate_limit_exceeded'),
    };
    fake.enqueue(limited, limited, limited);

    const error = await expectProviderError(client({ maxRetries: 1 }).generate(request));

    expect(error.kind).toBe('rate_limited');
    expect(fake.requests).toHaveLength(2);
  });

  it('applies a lower retry-after cap', async () => {
    fake.enqueue({
      status: 429,
      headers: { 'retry-after': '1' },
      body: groqErrorBody('Rate limit reached', 'tokens', 'rate_limit_exceeded'),
    });

    const error = await expectProviderError(client({ maxRetryAfterSeconds: 0.5 }).generate(request));

    expect(error.kind).toBe('rate_limited');
    expect(error.retryAfterSeconds).toBe(1);
    expect(fake.requests).toHaveLength(1);
  });

  it('raises truncated with usage for finish reason length', async () => {
    fake.enqueue({
      text: 'const a =',
      finishReason: 'length',
      usage: { prompt_tokens: 40, completion_tokens: 512, total_tokens: 552 },
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('truncated');
    expect(error.usage).toEqual({ promptTokens: 40, completionTokens: 512, totalTokens: 552 });
    expect(error.message).toContain('512 tokens');
    expect(fake.requests).toHaveLength(1);
  });

  it('raises empty with usage for blank content', async () => {
    fake.enqueue({
      text: '  \n',
      usage: { prompt_tokens: 30, completion_tokens: 2, total_tokens: 32 },
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('empty');
    expect(error.usage).toEqual({ promptTokens: 30, completionTokens: 2, totalTokens: 32 });
    expect(error.message).toBe(
      'Groq returned an empty response (finish reason stop): neither the corrected file nor the ' +
        'marker of an empty file. Groq bills such a response, so its tokens are counted as used. ' +
        'Regenerate this file.',
    );
  });

  it('raises unauthorized for a rejected key without retrying', async () => {
    const rejectedKey = 'gsk_REJECTED000000000000000000000000000000000000000000000';
    fake.rejectKey(rejectedKey);

    const error = await expectProviderError(client({ apiKey: rejectedKey }).generate(request));

    expect(error.kind).toBe('unauthorized');
    expect(error.status).toBe(401);
    expect(error.message).toContain('Invalid API Key');
    expect(error.message).not.toContain(rejectedKey);
    expect(fake.requests).toHaveLength(1);
  });

  it('raises unauthorized for 403', async () => {
    fake.enqueue({
      status: 403,
      body: groqErrorBody('Organization has been restricted', 'permissions_error'),
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('unauthorized');
    expect(error.status).toBe(403);
  });

  it('retries a 503 then succeeds', async () => {
    fake.enqueue({
      status: 503,
      body: groqErrorBody('Service Unavailable', 'internal_server_error'),
    });

    const result = await client().generate(request);

    expect(result.text).toBe('fake answer');
    expect(fake.requests).toHaveLength(2);
  });

  it('raises unavailable after maxRetries server errors', async () => {
    const failure = {
      status: 500,
      body: groqErrorBody('Internal Server Error', 'internal_server_error'),
    };
    fake.enqueue(failure, failure, failure, failure);

    const error = await expectProviderError(client({ maxRetries: 2 }).generate(request));

    expect(error.kind).toBe('unavailable');
    expect(error.status).toBe(500);
    expect(fake.requests).toHaveLength(3);
  });

  it('raises unavailable when the connection is refused', async () => {
    const closed = await startFakeGroq();
    const closedUrl = closed.url;
    await closed.close();

    const error = await expectProviderError(
      client({ baseUrl: closedUrl, maxRetries: 1 }).generate(request),
    );

    expect(error.kind).toBe('unavailable');
    expect(error.status).toBeUndefined();
    expect(error.message).toContain(closedUrl);
  });

  it.each([
    ['an empty object', {}],
    ['null', null],
    ['a message of null', { choices: [{ message: null, finish_reason: 'stop' }] }],
    ['content that is a number', { choices: [{ message: { content: 123 }, finish_reason: 'stop' }] }],
  ])('raises unavailable for a body with %s', async (_case, body) => {
    const reply = { status: 200, body };
    fake.enqueue(reply, reply, reply);

    const error = await expectProviderError(client({ maxRetries: 2 }).generate(request));

    expect(error.kind).toBe('unavailable');
    expect(error.message).toContain('Groq returned a response that could not be read');
    expect(fake.requests).toHaveLength(3);
  });

  it('keeps the usage of an unreadable body', async () => {
    const usage = { prompt_tokens: 40, completion_tokens: 2, total_tokens: 42 };
    fake.enqueue({ status: 200, body: { choices: 'unreadable', usage } });

    const error = await expectProviderError(client({ maxRetries: 0 }).generate(request));

    expect(error.kind).toBe('unavailable');
    expect(error.usage).toEqual({ promptTokens: 40, completionTokens: 2, totalTokens: 42 });
  });

  it('leaves out usage without counts', async () => {
    fake.enqueue({ status: 200, body: { choices: 'unreadable', usage: { queue_time: 0.1 } } });

    const error = await expectProviderError(client({ maxRetries: 0 }).generate(request));

    expect(error.kind).toBe('unavailable');
    expect(error.usage).toBeUndefined();
  });

  it('reports a billed response before its retry', async () => {
    const usage = { prompt_tokens: 40, completion_tokens: 2, total_tokens: 42 };
    fake.enqueue({ status: 200, body: { choices: 'unreadable', usage } }, { text: 'const a = 2;\n' });
    const billed: unknown[] = [];

    const result = await client({ maxRetries: 1 }).generate(request, {
      onBilledRetry: async (failure) => {
        billed.push(failure);
      },
    });

    expect(result.text).toBe('const a = 2;\n');
    expect(billed).toEqual([
      { usage: { promptTokens: 40, completionTokens: 2, totalTokens: 42 }, request: 1 },
    ]);
    expect(fake.requests).toHaveLength(2);
  });

  it('raises unavailable when the connection closes mid-body', async () => {
    const server = await startCutOffServer('{"choices":[{"message":{"content":"const a');
    try {
      const error = await expectProviderError(
        client({ baseUrl: server.url, maxRetries: 1 }).generate(request),
      );

      expect(error.kind).toBe('unavailable');
      expect(error.message).toContain('Groq closed the connection before the whole response arrived');
      expect(server.requests()).toBe(2);
    } finally {
      await server.close();
    }
  });

  it('raises timeout for a late response', async () => {
    fake.enqueue({ text: 'late', delayMs: 3000 });

    const started = Date.now();
    const error = await expectProviderError(client({ timeoutMs: 200 }).generate(request));

    expect(Date.now() - started).toBeLessThan(1500);
    expect(error.kind).toBe('timeout');
    expect(error.message).toContain('200 ms');
    expect(fake.requests).toHaveLength(1);
    await fake.idle();
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

  it('raises invalid_request for an unknown model', async () => {
    const error = await expectProviderError(client({ model: 'no-such-model' }).generate(request));

    expect(error.kind).toBe('invalid_request');
    expect(error.status).toBe(404);
    expect(error.message).toContain('no-such-model');
    expect(fake.requests).toHaveLength(1);
  });

  it('redacts the key when the provider echoes it', async () => {
    fake.enqueue({
      status: 400,
      body: groqErrorBody(
        `Invalid request for key ${apiKey} with header Authorization: Bearer ${apiKey}`,
        'invalid_request_error',
      ),
    });

    const error = await expectProviderError(client().generate(request));

    expect(error.kind).toBe('invalid_request');
    expect(error.message).not.toContain(apiKey);
    expect(error.message).not.toContain('gsk_');
    expect(error.message).toContain('[redacted]');
  });

  it('redacts a key of no known format', async () => {
    const customKey = 'custom-secret-value-42';
    fake.enqueue({
      status: 400,
      body: groqErrorBody(`Unknown key ${customKey}`, 'invalid_request_error'),
    });

    const error = await expectProviderError(client({ apiKey: customKey }).generate(request));

    expect(error.message).not.toContain(customKey);
    expect(error.message).toContain('Unknown key [redacted]');
  });

  it('lists the active models', async () => {
    const models = await client().listModels();

    expect(models).toEqual([
      'llama-3.1-8b-instant',
      'llama-3.3-70b-versatile',
      'openai/gpt-oss-120b',
      'whisper-large-v3',
    ]);
    expect(fake.requests[0]?.method).toBe('GET');
    expect(fake.requests[0]?.path).toBe('/openai/v1/models');
  });

  it('raises unavailable when the model list is cut off', async () => {
    const server = await startCutOffServer('{"object":"list","data":[{"id":"llama');
    try {
      const error = await expectProviderError(client({ baseUrl: server.url }).listModels());

      expect(error.kind).toBe('unavailable');
      expect(error.message).toContain('Groq closed the connection before the whole response arrived');
    } finally {
      await server.close();
    }
  });

  it('raises unauthorized when listing models with a rejected key', async () => {
    const rejectedKey = 'gsk_REJECTEDLIST0000000000000000000000000000000000000000';
    fake.rejectKey(rejectedKey);

    const error = await expectProviderError(client({ apiKey: rejectedKey }).listModels());

    expect(error.kind).toBe('unauthorized');
    expect(error.status).toBe(401);
  });

  it('rejects an empty key before any request', () => {
    expect(() => client({ apiKey: ' ' })).toThrow(ProviderError);
    expect(fake.requests).toHaveLength(0);
  });
});
