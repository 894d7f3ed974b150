// A fix that leaves a file empty: the model returns the empty-file marker in place of the file,
// the preview stores an empty proposed file, a commit writes an empty blob and keeps the path,
// and suggestions remove the lines. An empty response without the marker still fails, and its
// tokens are charged as the provider reported them.
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { runPreview } from '../../src/autofix/preview.ts';
import { findings, patchFiles, tokenEvents, users } from '../../src/db/schema/index.ts';
import { startFakeGroq, type FakeGroq, type GroqTextReply } from '../../src/demo/fakes/groq.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { answerFixPrompt } from '../../src/demo/scenario.ts';
import { describeEmptyResponse } from '../../src/llm/errors.ts';
import { createSession } from '../../src/web/session/session-store.ts';
import {
  createApplyTestContext,
  gitIn,
  requestApply,
  resetApplyRun,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import type { GitHubTestContext } from '../helpers/github-context.ts';

const path = 'src/debug.ts';
const headSource = 'debugger;\n';
/** The preview's diff of `path`, as jsdiff 9 formats the removal of every line. */
const expectedDiff =
  '===================================================================\n' +
  `--- a/${path}\n` +
  `+++ b/${path}\n` +
  '@@ -1,1 +0,0 @@\n' +
  '-debugger;\n';
/** SHA-1 of the empty git blob. */
const emptyBlobSha = 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391';

let groq: FakeGroq;
let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let findingIds: string[];

/** Runs a preview of the finding once, with the fake Groq replying through `reply`. */
async function preview(reply: (user: string) => GroqTextReply): Promise<string> {
  const created = await createPatchRequest(setup.context.db, setup.context.boss, {
    runId: applyContext.runId,
    userId: applyContext.user.id,
    findingIds,
  });
  if (!created.ok) throw new Error('patch request not created');
  groq.setHandler((request) => reply(request.messages.at(-1)!.content));
  await runPreview(setup.context, created.id, 0, setup.context.logger);
  return created.id;
}

async function storedFile(patchRequestId: string) {
  const [file] = await setup.context.db
    .select()
    .from(patchFiles)
    .where(and(eq(patchFiles.patchRequestId, patchRequestId), eq(patchFiles.path, path)));
  return file!;
}

async function tokensUsed(): Promise<number> {
  const [user] = await setup.context.db.select().from(users).where(eq(users.id, applyContext.user.id));
  return user!.tokensUsed;
}

beforeAll(async () => {
  groq = await startFakeGroq();
  applyContext = await createApplyTestContext({
    base: { 'README.md': '# Widgets\n' },
    head: { 'README.md': '# Widgets\n', [path]: headSource },
    env: { GROQ_API_KEY: 'gsk_empty_file_test', GROQ_BASE_URL: groq.url, LLM_MAX_RETRIES: '0' },
  });
  setup = applyContext.setup;
  const inserted = await setup.context.db
    .insert(findings)
    .values({
      runId: applyContext.runId,
      path,
      startLine: 1,
      endLine: 1,
      ruleId: 'debug/debugger',
      severity: 'warning',
      message: 'Remove the debugger statement.',
      fingerprint: 'empty-file-debugger',
    })
    .returning({ id: findings.id });
  findingIds = inserted.map((finding) => finding.id);
});

beforeEach(async () => {
  groq.reset();
  await resetApplyRun(setup, applyContext.runId);
});

afterAll(async () => {
  await setup?.close();
  await groq?.close();
});

describe('fix that empties a file', () => {
  it('previews an empty proposed file', async () => {
    // The demo's fake model removes the line and returns the marker.
    const id = await preview((user) => answerFixPrompt(user));

    const [system, user] = (groq.requests.at(-1)!.body as { messages: { content: string }[] }).messages;
    expect(system!.content).toContain('return only <empty-file/>.');
    expect(answerFixPrompt(user!.content)).toEqual({ text: '<empty-file/>' });
    const file = await storedFile(id);
    expect(file.status).toBe('ready');
    expect(file.error).toBeNull();
    expect(file.originalText).toBe(headSource);
    expect(file.proposedText).toBe('');
    expect(file.diff).toBe(expectedDiff);
  });

  it('notes the empty file on the preview page', async () => {
    const id = await preview((user) => answerFixPrompt(user));
    const session = await createSession(setup.context.db, applyContext.user.id, 1);

    const response = await applyContext.app.request(`/patch-requests/${id}`, {
      headers: { cookie: `fixwright_session=${session.token}` },
    });

    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain('This fix leaves the file empty.');
    expect(html).toContain('<td class="code"><code>debugger;</code></td>');
  });

  it('commits an empty blob and keeps the path', async () => {
    const id = await preview((user) => answerFixPrompt(user));

    const response = await requestApply(applyContext, id, { mode: 'commit' });

    expect(response.status).toBe(200);
    const result = await response.json();
    expect(result.mode).toBe('commit');
    expect(result.files).toEqual([path]);
    const blobs = setup.fake.requests.filter(
      (request) => request.method === 'POST' && request.path.endsWith('/git/blobs'),
    );
    expect(blobs.map((request) => request.body)).toEqual([{ content: '', encoding: 'base64' }]);
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(result.commitSha);
    expect(await gitIn(setup, 'rev-parse', `${result.commitSha}:${path}`)).toBe(emptyBlobSha);
    expect(await gitIn(setup, 'cat-file', '-s', `${result.commitSha}:${path}`)).toBe('0');
    expect(await gitIn(setup, 'ls-tree', '--name-only', '-r', result.commitSha)).toBe(`README.md\n${path}`);
  });

  it('suggests removing the line', async () => {
    const id = await preview((user) => answerFixPrompt(user));
    const reviewsBefore = setup.fake.reviews.length;

    const response = await requestApply(applyContext, id, { mode: 'suggestions' });

    expect(response.status).toBe(200);
    const result = await response.json();
    expect(result.mode).toBe('suggestions');
    expect(result.commitSha).toBeNull();
    expect(setup.fake.reviews).toHaveLength(reviewsBefore + 1);
    const review = setup.fake.reviews.at(-1)!;
    expect(review.comments).toEqual([
      {
        id: expect.any(Number),
        path,
        line: 1,
        side: 'RIGHT',
        startLine: null,
        startSide: null,
        body: '```suggestion\n```',
      },
    ]);
    expect(review.body).not.toContain('cannot be suggestions');
    expect(await gitIn(setup, 'rev-parse', headBranch)).toBe(setup.git.headSha);
  });

  it('fails an empty response and charges it', async () => {
    const usage = { prompt_tokens: 321, completion_tokens: 1, total_tokens: 322 };
    const before = await tokensUsed();

    const id = await preview(() => ({ text: '', usage }));

    const file = await storedFile(id);
    expect(file.status).toBe('failed');
    expect(file.proposedText).toBeNull();
    expect(file.error).toBe(describeEmptyResponse('groq', 'stop'));
    expect(file.error).toBe(
      'Groq returned an empty response (finish reason stop): neither the corrected file nor the ' +
        'marker of an empty file. Groq bills such a response, so its tokens are counted as used. ' +
        'Regenerate this file.',
    );
    expect(file.totalTokens).toBe(322);
    const ledger = await setup.context.db.select().from(tokenEvents).where(eq(tokenEvents.patchRequestId, id));
    expect(ledger.map((event) => [event.promptTokens, event.completionTokens, event.chargedTokens])).toEqual([
      [321, 1, 322],
    ]);
    expect(await tokensUsed()).toBe(before + 322);
  });

  it('fails white space without the marker', async () => {
    const id = await preview(() => ({ text: '```\n\n```\n' }));

    const file = await storedFile(id);
    expect(file.status).toBe('failed');
    expect(file.proposedText).toBeNull();
    expect(file.error).toBe(
      `The model output for ${path} is empty apart from white space or a code fence, and it ` +
        'lacks the marker <empty-file/> with which the model says that the corrected file is ' +
        'empty, so it was discarded as a failed response. Regenerate this file.',
    );
  });
});
