import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { maximumUsage } from '../../src/autofix/billed-usage.ts';
import { meterClient } from '../../src/autofix/metered-client.ts';
import { patchRequests, tokenEvents, users, type KeySource } from '../../src/db/schema/index.ts';
import { startFakeGemini, type FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import type { ProviderError } from '../../src/llm/errors.ts';
import { createGeminiClient } from '../../src/llm/gemini.ts';
import { createGroqClient } from '../../src/llm/groq.ts';
import {
  buildFixPrompt,
  estimatePromptTokens,
  estimateTextTokens,
  minimumPromptTokens,
  minimumTextTokens,
} from '../../src/llm/prompt.ts';
import type { ModelClient, ModelRequest } from '../../src/llm/types.ts';
import { getAllowance } from '../../src/usage/allowance.ts';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';
import { createRunWithFindings, createSignedInUser } from '../helpers/web.ts';

let context: TestContext;
let groq: FakeGroq;
let gemini: FakeGemini;

beforeAll(async () => {
  context = await createTestContext();
  groq = await startFakeGroq();
  gemini = await startFakeGemini();
});
afterAll(async () => {
  await groq?.close();
  await gemini?.close();
  await context.close();
});
beforeEach(() => {
  groq.reset();
  gemini.reset();
});

const model = 'llama-3.3-70b-versatile';

/** A 40-line file with a hard-coded key, and the same file with the key read from the environment. */
const original = Array.from({ length: 40 }, (_, index) =>
  index === 2 ? "const apiKey = 'sk-live-0123456789abcdef';" : `export const value${index} = compute(${index}, 'item-${index}');`,
).join('\n');
const fixed = original.replace("'sk-live-0123456789abcdef'", 'process.env.API_KEY');

const request: ModelRequest = {
  ...buildFixPrompt({
    path: 'src/config.ts',
    content: original,
    findings: [{ id: 'f1', ruleId: 'hardcoded-secret', line: 3, endLine: 3, message: 'Hard-coded API key.' }],
  }),
  maxOutputTokens: 2000,
};

/** The usage a response without counts is charged: the prompt estimate plus the text estimate. */
const estimate = {
  promptTokens: estimatePromptTokens(request),
  completionTokens: estimateTextTokens(fixed),
};

function groqClient(): ModelClient {
  return createGroqClient({
    apiKey: 'gsk_TESTONLY0000000000000000000000000000000000000000000000',
    baseUrl: groq.url,
    model,
    maxRetries: 0,
    timeoutMs: 5000,
  });
}

function geminiClient(): ModelClient {
  return createGeminiClient({
    apiKey: 'AIzaTESTONLY00000000000000000000000000',
    baseUrl: gemini.url,
    model: 'gemini-2.5-flash',
    maxRetries: 0,
    timeoutMs: 5000,
  });
}

/** Builds a Groq chat completion with status 200 that carries `fixed` and the given usage block. */
function groqCompletion(usage: unknown, finishReason = 'stop') {
  return {
    status: 200,
    body: {
      id: 'chatcmpl-usage',
      object: 'chat.completion',
      created: 1,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: fixed }, finish_reason: finishReason }],
      ...(usage === undefined ? {} : { usage }),
    },
  };
}

async function newPatchRequest() {
  const user = await createSignedInUser(context.db, {
    login: `billed-${randomBytes(4).toString('hex')}`,
    plan: 'pro',
    tokenLimit: 100_000,
  });
  const { run } = await createRunWithFindings(context.db, { userId: user.userId, findings: [] });
  const [row] = await context.db
    .insert(patchRequests)
    .values({ runId: run.id, userId: user.userId })
    .returning({ id: patchRequests.id });
  return { userId: user.userId, patchRequestId: row!.id };
}

/** Sends `request` through a metered `client` and returns the ledger row and the user's counters. */
async function meteredCall(client: ModelClient, keySource: KeySource = 'platform', callRequest = request) {
  const { userId, patchRequestId } = await newPatchRequest();
  const outcome = await meterClient(client, {
    db: context.db,
    userId,
    keySource,
    patchRequestId,
    path: 'src/config.ts',
    attempt: 0,
    generation: 0,
    reservationTtlSeconds: 600,
    logger: context.logger,
  })
    .generate(callRequest)
    .then((result) => ({ text: result.text, error: undefined }))
    .catch((error: unknown) => ({ text: undefined, error: error as ProviderError }));
  const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, userId));
  const [user] = await context.db.select().from(users).where(eq(users.id, userId));
  return { ...outcome, ledger, user: user!, patchRequestId, userId };
}

/** Returns the counts of a ledger row: settled, charged and as the provider reported them. */
function counts(row: typeof tokenEvents.$inferSelect) {
  return {
    prompt: row.promptTokens,
    completion: row.completionTokens,
    total: row.totalTokens,
    charged: row.chargedTokens,
    reported: row.reportedTotalTokens === null
      ? null
      : [row.reportedPromptTokens, row.reportedCompletionTokens, row.reportedTotalTokens],
  };
}

describe('settled usage of a response', () => {
  it('keeps the honest counts of the fakes', async () => {
    groq.enqueue({ text: fixed });

    const call = await meteredCall(groqClient());

    expect(call.text).toBe(fixed);
    const usage = groq.requests[0]!.reply!.usage!;
    expect(usage.prompt_tokens).toBeGreaterThanOrEqual(minimumPromptTokens(request));
    expect(usage.completion_tokens).toBeGreaterThanOrEqual(minimumTextTokens(fixed));
    expect(call.ledger.map(counts)).toEqual([
      {
        prompt: usage.prompt_tokens,
        completion: usage.completion_tokens,
        total: usage.total_tokens,
        charged: usage.total_tokens,
        reported: null,
      },
    ]);
    expect(call.user.tokensUsed).toBe(usage.total_tokens);
    expect(logsOf(context, 'model.usage_below_minimum', { patchRequestId: call.patchRequestId })).toEqual([]);
  });

  it.each([
    ['a completion count alone', { completion_tokens: 1 }, [0, 1, 1]],
    ['a prompt of 0', { prompt_tokens: 0, completion_tokens: 1, total_tokens: 1 }, [0, 1, 1]],
    ['a total of 1', { prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 }, [1, 0, 1]],
  ])('charges the estimate for %s', async (_name, usage, reported) => {
    groq.enqueue(groqCompletion(usage));

    const call = await meteredCall(groqClient());

    expect(call.text).toBe(fixed);
    const total = estimate.promptTokens + estimate.completionTokens;
    expect(call.ledger.map(counts)).toEqual([
      {
        prompt: estimate.promptTokens,
        completion: estimate.completionTokens,
        total,
        charged: total,
        reported,
      },
    ]);
    expect(call.user.tokensUsed).toBe(total);
    expect(call.user.tokensReserved).toBe(0);
    const [warning] = logsOf(context, 'model.usage_below_minimum', { patchRequestId: call.patchRequestId });
    expect(warning).toMatchObject({
      level: 40, // pino's warn
      provider: 'groq',
      model,
      userId: call.userId,
      keySource: 'platform',
      reportedPromptTokens: reported[0],
      reportedCompletionTokens: reported[1],
      reportedTotalTokens: reported[2],
      minimumPromptTokens: minimumPromptTokens(request),
      minimumCompletionTokens: minimumTextTokens(fixed),
      estimatedTokens: total,
    });
    expect(warning!.msg).toBe(
      'model response reports fewer tokens than its prompt or output can take; settled an estimate',
    );
    expect(JSON.stringify(warning)).not.toContain('process.env.API_KEY');
  });

  it('charges invalid counts like none', async () => {
    groq.enqueue(groqCompletion({ prompt_tokens: '12', completion_tokens: 1.5 }), groqCompletion(undefined));

    const invalid = await meteredCall(groqClient());
    const absent = await meteredCall(groqClient());

    const total = estimate.promptTokens + estimate.completionTokens;
    for (const call of [invalid, absent]) {
      expect(call.ledger.map(counts)).toEqual([
        {
          prompt: estimate.promptTokens,
          completion: estimate.completionTokens,
          total,
          charged: total,
          reported: [0, 0, 0],
        },
      ]);
      expect(call.user.tokensUsed).toBe(total);
      const [warning] = logsOf(context, 'model.usage_missing', { patchRequestId: call.patchRequestId });
      expect(warning?.estimatedTokens).toBe(total);
      expect(warning?.msg).toBe('model response has no token usage; settled an estimate');
    }
  });

  it('charges an answer without counts at most the output cap', async () => {
    const capped = { ...request, maxOutputTokens: 100 };
    expect(estimate.completionTokens).toBeGreaterThan(capped.maxOutputTokens);
    groq.enqueue(groqCompletion(undefined));

    const call = await meteredCall(groqClient(), 'platform', capped);

    expect(call.text).toBe(fixed);
    const total = estimate.promptTokens + capped.maxOutputTokens;
    expect(call.ledger.map(counts)).toEqual([
      { prompt: estimate.promptTokens, completion: 100, total, charged: total, reported: [0, 0, 0] },
    ]);
    expect(call.user.tokensUsed).toBe(total);
    expect(call.user.tokensReserved).toBe(0);
  });

  it('replaces only the count below its minimum', async () => {
    const promptTokens = minimumPromptTokens(request) + 300;
    groq.enqueue(groqCompletion({ prompt_tokens: promptTokens, completion_tokens: 1, total_tokens: promptTokens + 1 }));

    const call = await meteredCall(groqClient());

    const total = promptTokens + estimate.completionTokens;
    expect(call.ledger.map(counts)).toEqual([
      {
        prompt: promptTokens,
        completion: estimate.completionTokens,
        total,
        charged: total,
        reported: [promptTokens, 1, promptTokens + 1],
      },
    ]);
    expect(call.user.tokensUsed).toBe(total);
  });

  it('applies the same rule to Gemini', async () => {
    gemini.enqueue({ text: fixed, usage: { promptTokenCount: 0, candidatesTokenCount: 1, totalTokenCount: 1 } });

    const call = await meteredCall(geminiClient());

    expect(call.text).toBe(fixed);
    const total = estimate.promptTokens + estimate.completionTokens;
    expect(call.ledger.map(counts)).toEqual([
      {
        prompt: estimate.promptTokens,
        completion: estimate.completionTokens,
        total,
        charged: total,
        reported: [0, 1, 1],
      },
    ]);
    expect(call.user.tokensUsed).toBe(total);
    const [warning] = logsOf(context, 'model.usage_below_minimum', { patchRequestId: call.patchRequestId });
    expect(warning?.provider).toBe('gemini');
    expect(warning?.estimatedTokens).toBe(total);
  });

  it('keeps honest Gemini counts with thinking tokens', async () => {
    gemini.enqueue({ text: fixed, thoughtsTokens: 250 });

    const call = await meteredCall(geminiClient());

    const usage = gemini.requests[0]!.reply!.usage!;
    expect(usage.thoughtsTokenCount).toBe(250);
    expect(call.ledger.map(counts)).toEqual([
      {
        prompt: usage.promptTokenCount,
        completion: usage.totalTokenCount - usage.promptTokenCount,
        total: usage.totalTokenCount,
        charged: usage.totalTokenCount,
        reported: null,
      },
    ]);
  });

  it('records an own-key call the same way without charging', async () => {
    groq.enqueue(groqCompletion({ prompt_tokens: 0, completion_tokens: 1, total_tokens: 1 }));

    const call = await meteredCall(groqClient(), 'user');

    const total = estimate.promptTokens + estimate.completionTokens;
    expect(call.ledger.map(counts)).toEqual([
      {
        prompt: estimate.promptTokens,
        completion: estimate.completionTokens,
        total,
        charged: 0,
        reported: [0, 1, 1],
      },
    ]);
    expect(call.user.tokensUsed).toBe(0);
    const [warning] = logsOf(context, 'model.usage_below_minimum', { patchRequestId: call.patchRequestId });
    expect(warning?.keySource).toBe('user');
  });

  it('checks the prompt count of a cut-off response', async () => {
    groq.enqueue(groqCompletion({ prompt_tokens: 1, completion_tokens: 2000, total_tokens: 2001 }, 'length'));

    const call = await meteredCall(groqClient());

    expect(call.error?.kind).toBe('truncated');
    const total = estimate.promptTokens + 2000;
    expect(call.ledger.map(counts)).toEqual([
      {
        prompt: estimate.promptTokens,
        completion: 2000,
        total,
        charged: total,
        reported: [1, 2000, 2001],
      },
    ]);
    expect(call.user.tokensUsed).toBe(total);
  });
});

describe('settled usage above the maximum', () => {
  const maximum = maximumUsage(request);
  /** The largest count that the clients read, the maximum of the ledger's integer columns. */
  const largestCount = 2 ** 31 - 1;
  const prompt = minimumPromptTokens(request) + 300;
  const completion = minimumTextTokens(fixed) + 100;
  const huge = 3_000_000_000;
  const aboveMaximum = 'model.usage_above_maximum';
  const belowMinimum = 'model.usage_below_minimum';

  type AboveMaximumCase = {
    name: string;
    provider: 'groq' | 'gemini';
    /** Groq's `usage` block or Gemini's `usageMetadata` fields. */
    usage: Record<string, number>;
    finishReason?: string;
    reported: [number, number, number];
    settled: { prompt: number; completion: number; total: number };
    warnings: string[];
  };

  const cases: AboveMaximumCase[] = [
    {
      name: 'a Groq completion count of 3e9',
      provider: 'groq',
      usage: { prompt_tokens: prompt, completion_tokens: huge, total_tokens: prompt + huge },
      reported: [prompt, largestCount, largestCount],
      settled: { prompt, completion: maximum.completionTokens, total: prompt + maximum.completionTokens },
      warnings: [aboveMaximum],
    },
    {
      name: 'a Groq completion count one above the cap',
      provider: 'groq',
      usage: {
        prompt_tokens: prompt,
        completion_tokens: maximum.completionTokens + 1,
        total_tokens: prompt + maximum.completionTokens + 1,
      },
      reported: [prompt, maximum.completionTokens + 1, prompt + maximum.completionTokens + 1],
      settled: { prompt, completion: maximum.completionTokens, total: prompt + maximum.completionTokens },
      warnings: [aboveMaximum],
    },
    {
      name: 'a cut-off Groq response with a completion count of 3e9',
      provider: 'groq',
      usage: { prompt_tokens: prompt, completion_tokens: huge, total_tokens: prompt + huge },
      finishReason: 'length',
      reported: [prompt, largestCount, largestCount],
      settled: { prompt, completion: maximum.completionTokens, total: prompt + maximum.completionTokens },
      warnings: [aboveMaximum],
    },
    {
      name: 'a Groq prompt count of 3e9',
      provider: 'groq',
      usage: { prompt_tokens: huge, completion_tokens: completion, total_tokens: huge + completion },
      reported: [largestCount, completion, largestCount],
      settled: {
        prompt: maximum.promptTokens,
        completion,
        total: maximum.promptTokens + maximum.completionTokens,
      },
      warnings: [aboveMaximum],
    },
    {
      name: 'a Groq total count of 3e9 alone',
      provider: 'groq',
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: huge },
      reported: [prompt, completion, largestCount],
      settled: { prompt, completion, total: prompt + maximum.completionTokens },
      warnings: [aboveMaximum],
    },
    {
      name: 'a Groq prompt count of 0 with a completion count of 3e9',
      provider: 'groq',
      usage: { prompt_tokens: 0, completion_tokens: huge, total_tokens: huge },
      reported: [0, largestCount, largestCount],
      settled: {
        prompt: estimate.promptTokens,
        completion: maximum.completionTokens,
        total: estimate.promptTokens + maximum.completionTokens,
      },
      warnings: [belowMinimum, aboveMaximum],
    },
    {
      name: 'a Gemini candidates count of 3e9',
      provider: 'gemini',
      usage: { promptTokenCount: prompt, candidatesTokenCount: huge, totalTokenCount: prompt + huge },
      // The Gemini client reads the completion as the total minus the prompt.
      reported: [prompt, largestCount - prompt, largestCount],
      settled: { prompt, completion: maximum.completionTokens, total: prompt + maximum.completionTokens },
      warnings: [aboveMaximum],
    },
  ];

  it.each(cases)('charges the maximum for $name', async (testCase) => {
    if (testCase.provider === 'groq') {
      groq.enqueue(groqCompletion(testCase.usage, testCase.finishReason));
    } else {
      gemini.enqueue({ text: fixed, usage: testCase.usage });
    }

    const client = testCase.provider === 'groq' ? groqClient() : geminiClient();
    const call = await meteredCall(client);

    if (testCase.finishReason === 'length') {
      expect(call.error?.kind).toBe('truncated');
    } else {
      expect(call.text).toBe(fixed);
    }
    const { settled } = testCase;
    expect(call.ledger.map(counts)).toEqual([
      { ...settled, charged: settled.total, reported: testCase.reported },
    ]);
    expect(call.user.tokensUsed).toBe(settled.total);
    expect(call.user.tokensReserved).toBe(0);
    const allowance = await getAllowance(context.db, call.userId);
    expect(allowance.remaining).toBe(100_000 - settled.total);

    for (const event of [belowMinimum, aboveMaximum]) {
      const logged = logsOf(context, event, { patchRequestId: call.patchRequestId });
      expect(logged, event).toHaveLength(testCase.warnings.includes(event) ? 1 : 0);
    }
    const [warning] = logsOf(context, aboveMaximum, { patchRequestId: call.patchRequestId });
    expect(warning).toMatchObject({
      level: 40, // pino's warn
      provider: testCase.provider,
      userId: call.userId,
      keySource: 'platform',
      reportedPromptTokens: testCase.reported[0],
      reportedCompletionTokens: testCase.reported[1],
      reportedTotalTokens: testCase.reported[2],
      maximumPromptTokens: maximum.promptTokens,
      maximumCompletionTokens: maximum.completionTokens,
      maximumTotalTokens: settled.prompt + maximum.completionTokens,
      settledTokens: settled.total,
    });
    expect(warning!.msg).toBe(
      'model response reports more tokens than its prompt and output cap allow; settled the maximum',
    );
    expect(JSON.stringify(warning)).not.toContain('process.env.API_KEY');
  });

  it('keeps counts at the maximum', async () => {
    const atMaximum = {
      promptTokens: maximum.promptTokens,
      completionTokens: maximum.completionTokens,
      totalTokens: maximum.promptTokens + maximum.completionTokens,
    };
    groq.enqueue(
      groqCompletion({
        prompt_tokens: atMaximum.promptTokens,
        completion_tokens: atMaximum.completionTokens,
        total_tokens: atMaximum.totalTokens,
      }),
    );
    gemini.enqueue({
      text: fixed,
      usage: {
        promptTokenCount: atMaximum.promptTokens,
        candidatesTokenCount: atMaximum.completionTokens,
        totalTokenCount: atMaximum.totalTokens,
      },
    });

    for (const client of [groqClient(), geminiClient()]) {
      const call = await meteredCall(client);

      expect(call.ledger.map(counts), client.provider).toEqual([
        {
          prompt: atMaximum.promptTokens,
          completion: atMaximum.completionTokens,
          total: atMaximum.totalTokens,
          charged: atMaximum.totalTokens,
          reported: null,
        },
      ]);
      expect(call.user.tokensUsed, client.provider).toBe(atMaximum.totalTokens);
      const warnings = logsOf(context, aboveMaximum, { patchRequestId: call.patchRequestId });
      expect(warnings, client.provider).toEqual([]);
    }
  });

  it('allows the prompt bytes plus overhead', () => {
    const bytes = Buffer.byteLength(request.system + request.user, 'utf8');
    expect(maximum.promptTokens).toBe(bytes + 128);
    expect(maximum.completionTokens).toBe(request.maxOutputTokens);
  });
});
