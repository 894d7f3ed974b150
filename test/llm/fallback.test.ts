import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/llm/errors.ts';
import { generateWithFallback, type ModelAttempt } from '../../src/llm/fallback.ts';
import { createGeminiClient } from '../../src/llm/gemini.ts';
import { createGroqClient } from '../../src/llm/groq.ts';
import type { ModelClient, ModelRequest } from '../../src/llm/types.ts';
import { geminiErrorBody, startFakeGemini, type FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { groqErrorBody, invalidApiKeyBody, startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';

const groqKey = 'gsk_TESTONLY0000000000000000000000000000000000000000000000';
const geminiKey = 'AIzaTESTONLY00000000000000000000000000';
const request: ModelRequest = {
  system: 'Return the file.',
  user: '<file path="a.js">\nconsole.log(1);\n</file>',
  maxOutputTokens: 256,
};

let groq: FakeGroq;
let gemini: FakeGemini;

beforeAll(async () => {
  groq = await startFakeGroq();
  gemini = await startFakeGemini();
});

afterEach(() => {
  groq.reset();
  gemini.reset();
});

afterAll(async () => {
  await groq.close();
  await gemini.close();
});

function clients(): ModelClient[] {
  const common = { maxRetries: 1, timeoutMs: 5000, retryBaseDelayMs: 10 };
  return [
    createGroqClient({
      apiKey: groqKey,
      baseUrl: groq.url,
      model: 'llama-3.3-70b-versatile',
      ...common,
    }),
    createGeminiClient({
      apiKey: geminiKey,
      baseUrl: gemini.url,
      model: 'gemini-2.5-flash',
      ...common,
    }),
  ];
}

const groqRateLimit = {
  status: 429,
  headers: { 'retry-after': '3600' },
  body: groqErrorBody('Rate limit reached for tokens per day', 'tokens', 'rate_limit_exceeded'),
};

/** Groq's response to a key that it rejects. */
const groqKeyRejected = { status: 401, body: invalidApiKeyBody() };

/** Runs the fallback and returns the error it raised together with the reported attempts. */
async function failingRun(): Promise<{ error: ProviderError; attempts: ModelAttempt[] }> {
  const attempts: ModelAttempt[] = [];
  const error = await generateWithFallback(clients(), request, {
    onAttempt: (attempt) => {
      attempts.push(attempt);
    },
  }).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ProviderError);
  return { error: error as ProviderError, attempts };
}

describe('generateWithFallback', () => {
  it('returns the first result without fallback', async () => {
    const attempts: ModelAttempt[] = [];

    const result = await generateWithFallback(clients(), request, {
      onAttempt: (attempt) => {
        attempts.push(attempt);
      },
    });

    expect(result.provider).toBe('groq');
    expect(gemini.requests).toHaveLength(0);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]?.usage).toEqual(result.usage);
    expect(attempts[0]?.result).toBe(result);
  });

  it('uses Gemini after a Groq 429 and reports both attempts', async () => {
    groq.enqueue(groqRateLimit);
    gemini.setHandler(() => ({ text: 'fixed by gemini\n' }));
    const attempts: ModelAttempt[] = [];

    const result = await generateWithFallback(clients(), request, {
      onAttempt: (attempt) => {
        attempts.push(attempt);
      },
    });

    expect(result.provider).toBe('gemini');
    expect(result.text).toBe('fixed by gemini\n');
    expect(groq.requests).toHaveLength(1);
    expect(gemini.requests).toHaveLength(1);

    expect(attempts).toHaveLength(2);
    const [groqAttempt, geminiAttempt] = attempts;
    expect(groqAttempt?.provider).toBe('groq');
    expect(groqAttempt?.model).toBe('llama-3.3-70b-versatile');
    expect(groqAttempt?.error?.kind).toBe('rate_limited');
    expect(groqAttempt?.usage).toBeUndefined();
    expect(geminiAttempt?.provider).toBe('gemini');
    expect(geminiAttempt?.error).toBeUndefined();
    expect(geminiAttempt?.result).toBe(result);

    const served = gemini.requests[0]?.reply?.usage;
    expect(geminiAttempt?.usage).toEqual({
      promptTokens: served?.promptTokenCount,
      completionTokens: served?.candidatesTokenCount,
      totalTokens: served?.totalTokenCount,
    });
  });

  it('uses Gemini after Groq server errors', async () => {
    const failure = { status: 502, body: groqErrorBody('Bad Gateway', 'internal_server_error') };
    groq.enqueue(failure, failure);

    const result = await generateWithFallback(clients(), request);

    expect(result.provider).toBe('gemini');
    expect(groq.requests).toHaveLength(2);
  });

  it('raises truncated from Groq without trying Gemini', async () => {
    groq.enqueue({
      text: 'partial',
      finishReason: 'length',
      usage: { prompt_tokens: 20, completion_tokens: 256, total_tokens: 276 },
    });

    const { error, attempts } = await failingRun();

    expect(error.kind).toBe('truncated');
    expect(error.provider).toBe('groq');
    expect(gemini.requests).toHaveLength(0);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]?.error).toBe(error);
    expect(attempts[0]?.usage).toEqual({
      promptTokens: 20,
      completionTokens: 256,
      totalTokens: 276,
    });
  });

  it('raises unauthorized from Groq without trying Gemini', async () => {
    groq.enqueue({
      status: 401,
      body: groqErrorBody('Invalid API Key', 'invalid_request_error', 'invalid_api_key'),
    });

    const { error, attempts } = await failingRun();

    expect(error.kind).toBe('unauthorized');
    expect(error.provider).toBe('groq');
    expect(gemini.requests).toHaveLength(0);
    expect(attempts).toHaveLength(1);
  });

  it('raises blocked from Gemini after a Groq 429', async () => {
    groq.enqueue(groqRateLimit);
    gemini.enqueue({
      text: '',
      finishReason: 'RECITATION',
      usage: { promptTokenCount: 30, candidatesTokenCount: 0, totalTokenCount: 30 },
    });

    const { error, attempts } = await failingRun();

    expect(error.kind).toBe('blocked');
    expect(error.provider).toBe('gemini');
    expect(attempts.map((attempt) => attempt.error?.kind)).toEqual(['rate_limited', 'blocked']);
    expect(attempts[1]?.usage).toEqual({ promptTokens: 30, completionTokens: 0, totalTokens: 30 });
  });

  it('names every provider when all fail', async () => {
    groq.enqueue(groqRateLimit);
    const overloaded = {
      status: 503,
      body: geminiErrorBody(503, 'UNAVAILABLE', 'The model is overloaded.'),
    };
    gemini.enqueue(overloaded, overloaded);

    const { error, attempts } = await failingRun();

    expect(error.kind).toBe('unavailable');
    expect(error.provider).toBe('gemini');
    expect(error.status).toBe(503);
    expect(error.message).toContain('Groq (rate_limited)');
    expect(error.message).toContain('Rate limit reached for tokens per day');
    expect(error.message).toContain('Gemini (unavailable)');
    expect(error.message).toContain('The model is overloaded');
    expect(attempts).toHaveLength(2);
    expect(attempts.every((attempt) => attempt.usage === undefined)).toBe(true);
  });

  it('stops after a caller abort', async () => {
    groq.enqueue({ text: 'late', delayMs: 3000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);

    const error = await generateWithFallback(clients(), request, {
      signal: controller.signal,
    }).catch((reason: unknown) => reason);

    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).kind).toBe('timeout');
    expect(gemini.requests).toHaveLength(0);
    await groq.idle();
  });

  it('reports usage that matches what the providers served', async () => {
    const runs = 4;
    let billedTokens = 0;
    for (let run = 0; run < runs; run++) {
      if (run % 2 === 0) groq.enqueue(groqRateLimit);
      await generateWithFallback(clients(), request, {
        onAttempt: (attempt) => {
          billedTokens += attempt.usage?.totalTokens ?? 0;
        },
      });
    }

    const servedGroq = groq.requests.reduce(
      (sum, sent) => sum + (sent.reply?.usage?.total_tokens ?? 0),
      0,
    );
    const servedGemini = gemini.requests.reduce(
      (sum, sent) => sum + (sent.reply?.usage?.totalTokenCount ?? 0),
      0,
    );
    expect(groq.requests).toHaveLength(runs);
    expect(gemini.requests).toHaveLength(runs / 2);
    expect(servedGroq).toBeGreaterThan(0);
    expect(servedGemini).toBeGreaterThan(0);
    expect(billedTokens).toBe(servedGroq + servedGemini);
  });

  it.each([
    ['without passRejectedKey', undefined],
    ['when passRejectedKey refuses', () => false],
  ])('stops at a rejected key %s', async (_case, passRejectedKey) => {
    groq.enqueue(groqKeyRejected);
    const indexes: number[] = [];
    const pass = passRejectedKey
      ? (index: number) => {
          indexes.push(index);
          return passRejectedKey();
        }
      : undefined;

    const error = await generateWithFallback(clients(), request, pass ? { passRejectedKey: pass } : {}).catch(
      (reason: unknown) => reason,
    );

    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).kind).toBe('unauthorized');
    expect((error as ProviderError).status).toBe(401);
    expect(groq.requests).toHaveLength(1);
    expect(gemini.requests).toHaveLength(0);
    expect(indexes).toEqual(passRejectedKey ? [0] : []);
  });

  it('passes a rejected key on when allowed', async () => {
    groq.enqueue(groqKeyRejected);
    gemini.setHandler(() => ({ text: 'fixed by gemini\n' }));
    const attempts: ModelAttempt[] = [];

    const result = await generateWithFallback(clients(), request, {
      passRejectedKey: (index) => index === 0,
      onAttempt: (attempt) => {
        attempts.push(attempt);
      },
    });

    expect(result.provider).toBe('gemini');
    expect(result.text).toBe('fixed by gemini\n');
    expect(attempts.map((attempt) => [attempt.provider, attempt.error?.kind, attempt.error?.status])).toEqual([
      ['groq', 'unauthorized', 401],
      ['gemini', undefined, undefined],
    ]);
    expect(gemini.requests.map((sent) => sent.apiKey)).toEqual([geminiKey]);
  });

  it('raises a rejected last key at once', async () => {
    groq.enqueue(groqRateLimit);
    gemini.enqueue({
      status: 400,
      body: geminiErrorBody(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID' },
      ]),
    });
    const indexes: number[] = [];

    const error = await generateWithFallback(clients(), request, {
      passRejectedKey: (index) => {
        indexes.push(index);
        return true;
      },
    }).catch((reason: unknown) => reason);

    expect((error as ProviderError).kind).toBe('unauthorized');
    expect((error as ProviderError).provider).toBe('gemini');
    expect((error as ProviderError).message).not.toContain('Every model provider failed');
    expect(indexes).toEqual([]);
  });

  it('raises when no client is configured', async () => {
    await expect(generateWithFallback([], request)).rejects.toThrow(
      'No model provider is configured',
    );
  });
});
