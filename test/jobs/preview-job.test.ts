import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findings,
  patchFiles,
  patchRequests,
  users,
} from '../../src/db/schema/index.ts';
import { handlePreviewJob } from '../../src/jobs/preview.ts';
import type { TestContext } from '../helpers/context.ts';
import {
  createPatchRequestForRun,
  createPreviewTestContext,
  takeAsLastAttempt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

const secret = 'sk_live_51HqLyjWDarjtT1zdp7dcQzXv';
const original = `const apiKey = "${secret}";\nconsole.log(apiKey);\n`;
const fixed = 'const apiKey = process.env.API_KEY;\n';
const rejectedWrite = 'patch file writes are disabled for this test';

let setup: PreviewTestContext;
let context: TestContext;
let runId: string;

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: { 'src/key.ts': original },
    groqApiKey: 'gsk_platform_preview_job_test',
  });
  ({ context, runId } = setup);
  setup.groq.setHandler(() => ({ text: fixed }));
  await context.db.insert(findings).values({
    runId,
    path: 'src/key.ts',
    startLine: 1,
    endLine: 1,
    ruleId: 'secret/hardcoded-credential',
    severity: 'error',
    message: 'Hard-coded credential.',
    fingerprint: 'fp-key',
  });

  // Every write of a finished file fails, and the failed query carries the file text.
  await context.db.execute(sql.raw(`
    CREATE FUNCTION reject_ready_patch_file() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION '${rejectedWrite}'; END $$;
    CREATE TRIGGER reject_ready_patch_file BEFORE UPDATE ON patch_files
      FOR EACH ROW WHEN (NEW.status = 'ready') EXECUTE FUNCTION reject_ready_patch_file();
  `));
});

afterAll(async () => {
  await setup?.close();
});

/** Returns every 8-character piece of `text`, so a partial leak is found too. */
function pieces(text: string): string[] {
  return Array.from({ length: text.length - 7 }, (_, index) => text.slice(index, index + 8));
}

describe('handlePreviewJob', () => {
  it('logs and stores a failed write without the file text', async () => {
    const [user] = await context.db
      .insert(users)
      .values({ login: 'preview-job-user', plan: 'pro', tokenLimit: 100_000 })
      .returning();
    const patchRequestId = await createPatchRequestForRun(context, runId, user!.id);

    const thrown = await handlePreviewJob(context, await takeAsLastAttempt(context, patchRequestId)).catch(
      (error: unknown) => error as Error,
    );

    const expected = `Database query failed: ${rejectedWrite}`;
    expect(thrown).toBeInstanceOf(Error);
    expect(thrown!.message).toBe(expected);

    const failure = context.logs.find((line) => line.event === 'job.preview.failed');
    expect(failure).toBeDefined();
    expect(failure!.err).toMatchObject({
      type: 'DrizzleQueryError',
      code: 'P0001',
      message: expected,
    });
    expect(failure!.finalAttempt).toBe(true);

    const [stored] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId));
    expect(stored!.status).toBe('failed');
    expect(stored!.error).toBe(`Preview failed: ${expected}`);
    expect(stored!.completedAt).toBeInstanceOf(Date);

    const logText = JSON.stringify(context.logs);
    const leaked = pieces(secret).filter((piece) => logText.includes(piece));
    expect(leaked).toEqual([]);
    expect(logText).not.toContain('process.env.API_KEY');
  });

  it('fails the files a last attempt left running', async () => {
    const [user] = await context.db
      .insert(users)
      .values({ login: 'preview-job-files-user', plan: 'pro', tokenLimit: 100_000 })
      .returning();
    const patchRequestId = await createPatchRequestForRun(context, runId, user!.id);

    await handlePreviewJob(context, await takeAsLastAttempt(context, patchRequestId)).catch(() => {});

    const files = await context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, patchRequestId));
    expect(files.map((file) => [file.path, file.status])).toEqual([['src/key.ts', 'failed']]);
    expect(files[0]!.error).toBe(`Preview failed: Database query failed: ${rejectedWrite}`);
  });
});
