import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findings, patchFiles, patchRequests, tokenEvents, users } from '../../src/db/schema/index.ts';
import { handlePreviewJob } from '../../src/jobs/preview.ts';
import { logsOf, type TestContext } from '../helpers/context.ts';
import {
  createPatchRequestForRun,
  createPreviewTestContext,
  takeAsLastAttempt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

// A run of 3.5 million spaces overflows the stack of a backreference regular expression in
// Node 20. The token counts are checked after the provider responds, so a check that throws
// would leave the paid call unsettled and the job would fail and call the provider again.
const pad = ' '.repeat(3_500_000);
const original = `export const pad = "${pad}";\nconsole.log("x");\n`;
const fixed = `export const pad = "${pad}";\n`;

let setup: PreviewTestContext;
let context: TestContext;
let runId: string;

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: { 'src/pad.ts': original },
    groqApiKey: 'gsk_platform_long_run_test',
    env: { PREVIEW_MAX_FILE_BYTES: '4000000', LLM_MAX_OUTPUT_TOKENS: '1000000' },
  });
  ({ context, runId } = setup);
  setup.groq.setHandler(() => ({ text: fixed }));
  await context.db.insert(findings).values({
    runId,
    path: 'src/pad.ts',
    startLine: 2,
    endLine: 2,
    ruleId: 'debug/console-log',
    severity: 'warning',
    message: 'Remove the console.log call.',
    fingerprint: 'fp-pad',
  });
}, 60_000);

afterAll(async () => {
  await setup?.close();
});

describe('preview of a long run', () => {
  it('settles the call of a file with millions of spaces', async () => {
    const [user] = await context.db
      .insert(users)
      .values({ login: 'long-run-user', plan: 'enterprise', tokenLimit: -1 })
      .returning();
    const patchRequestId = await createPatchRequestForRun(context, runId, user!.id);

    await handlePreviewJob(context, await takeAsLastAttempt(context, patchRequestId));

    expect(setup.groq.requests).toHaveLength(1);
    const [request] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId));
    expect(request!.status).toBe('ready');
    const [file] = await context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, patchRequestId));
    expect(file!.status).toBe('ready');
    expect(file!.proposedText).toBe(fixed);

    // The fake counts a token per 4 characters, above the least that the text can take, so
    // the provider's counts are charged as they are.
    const expected = setup.groq.requests[0]!.reply!.usage!;
    expect(expected.completion_tokens).toBe(Math.ceil(fixed.length / 4));
    const ledger = await context.db.select().from(tokenEvents).where(eq(tokenEvents.userId, user!.id));
    expect(ledger).toHaveLength(1);
    expect(ledger[0]!.idempotencyKey).toMatch(/:attempt-3:groq$/);
    expect(ledger[0]!.promptTokens).toBe(expected.prompt_tokens);
    expect(ledger[0]!.completionTokens).toBe(expected.completion_tokens);
    expect(ledger[0]!.chargedTokens).toBe(expected.total_tokens);
    expect(ledger[0]!.reportedTotalTokens).toBeNull();

    const [after] = await context.db.select().from(users).where(eq(users.id, user!.id));
    expect(after!.tokensUsed).toBe(expected.total_tokens);
    expect(after!.tokensReserved).toBe(0);
    expect(logsOf(context, 'model.usage_check_failed')).toEqual([]);
    expect(logsOf(context, 'job.preview.failed')).toEqual([]);
  }, 60_000);
});
