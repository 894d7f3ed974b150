import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { runPreview } from '../../src/autofix/preview.ts';
import { patchFiles, patchRequests } from '../../src/db/schema/index.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import {
  createGitHubTestContext,
  insertFindings,
  insertInstallation,
  insertRun,
  insertUser,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

let setup: GitHubTestContext;
let groq: FakeGroq;

beforeAll(async () => {
  groq = await startFakeGroq();
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n", 'src/b.ts': "console.log('b');\n" },
    env: {
      GROQ_API_KEY: 'gsk_cancel_test',
      GROQ_BASE_URL: groq.url,
      LLM_MAX_RETRIES: '0',
      PREVIEW_FILE_CONCURRENCY: '1',
    },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
});

afterAll(async () => {
  await setup?.close();
  await groq?.close();
});

describe('runPreview cancellation', () => {
  it('stops before the next file', async () => {
    const user = await insertUser(setup.context);
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: setup.git.headSha,
      baseSha: setup.git.baseSha,
    });
    const selected = await insertFindings(setup.context, run.id, [
      { path: 'src/a.ts', line: 1, severity: 'warning' },
      { path: 'src/b.ts', line: 1, severity: 'warning' },
    ]);
    const created = await createPatchRequest(setup.context.db, setup.context.boss, {
      runId: run.id,
      userId: user.id,
      findingIds: selected.map((finding) => finding.id),
    });
    if (!created.ok) throw new Error('patch request not created');

    // A newer commit cancels the request while the model works on the first file.
    let cancellation: Promise<unknown> | undefined;
    groq.setHandler(() => {
      cancellation ??= setup.context.db
        .update(patchRequests)
        .set({ status: 'cancelled', error: 'Cancelled: the pull request has a newer commit.' })
        .where(eq(patchRequests.id, created.id))
        .execute();
      return { text: 'export {};\n', delayMs: 500 };
    });
    const outcome = await runPreview(setup.context, created.id, 0, setup.context.logger);
    await cancellation;

    expect(outcome.status).toBe('cancelled');
    const completions = groq.requests.filter((request) =>
      request.path.endsWith('/chat/completions'),
    );
    expect(completions).toHaveLength(1);
    const [request] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, created.id));
    expect(request!.status).toBe('cancelled');
    expect(request!.error).toContain('newer commit');
    const files = await setup.context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, created.id))
      .orderBy(patchFiles.path);
    expect(files.map((file) => [file.path, file.status])).toEqual([
      ['src/a.ts', 'ready'],
      ['src/b.ts', 'pending'],
    ]);
  });
});
