import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchFiles, patchRequests, tokenEvents } from '../../src/db/schema/index.ts';
import { createApp } from '../../src/web/app.tsx';
import { testPlatformKeys, createTestContext, type TestContext } from '../helpers/context.ts';
import { eq } from 'drizzle-orm';
import {
  createRunWithFindings,
  createSignedInUser,
  formBody,
  formHeaders,
  type SignedInUser,
} from '../helpers/web.ts';
import { storeApplyJob } from '../helpers/apply-jobs.ts';

const commitSha = 'c0ffee1234567890c0ffee1234567890c0ffee12';

let context: TestContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;

beforeAll(async () => {
  context = await createTestContext(testPlatformKeys);
  app = createApp(context);
  user = await createSignedInUser(context.db, { login: 'earlier-previews-user', plan: 'pro', tokenLimit: 100_000 });
});

afterAll(async () => {
  await context?.close();
});

async function newRun() {
  const created = await createRunWithFindings(context.db, {
    userId: user.userId,
    findings: [{ path: 'src/a.ts', line: 2 }],
  });
  return created.run.id;
}

type PatchRequestValues = Partial<typeof patchRequests.$inferInsert>;
type PatchFileValues = Omit<typeof patchFiles.$inferInsert, 'patchRequestId'>;

/**
 * Inserts a preview on `runId`, requested `minutesAgo` minutes ago, with `files` and one ledger
 * row per entry of `calls`.
 */
async function insertPreview(input: {
  runId: string;
  minutesAgo: number;
  request?: PatchRequestValues;
  files?: PatchFileValues[];
  calls?: { keySource: 'platform' | 'user'; tokens: number }[];
}): Promise<string> {
  const [request] = await context.db
    .insert(patchRequests)
    .values({
      runId: input.runId,
      userId: user.userId,
      status: 'ready',
      createdAt: new Date(Date.now() - input.minutesAgo * 60_000),
      ...input.request,
    })
    .returning({ id: patchRequests.id });
  const id = request!.id;
  if (input.files?.length) {
    await context.db.insert(patchFiles).values(input.files.map((file) => ({ ...file, patchRequestId: id })));
  }
  const calls = input.calls ?? [];
  if (calls.length > 0) {
    await context.db.insert(tokenEvents).values(
      calls.map((call, index) => ({
        userId: user.userId,
        patchRequestId: id,
        path: 'src/a.ts',
        provider: 'groq' as const,
        model: 'llama-3.3-70b-versatile',
        keySource: call.keySource,
        promptTokens: call.tokens,
        completionTokens: 0,
        totalTokens: call.tokens,
        chargedTokens: call.keySource === 'platform' ? call.tokens : 0,
        idempotencyKey: `${id}:call-${index}`,
      })),
    );
  }
  return id;
}

async function runPage(runId: string, query = ''): Promise<{ status: number; html: string }> {
  const response = await app.request(`/runs/${runId}${query}`, { headers: { cookie: user.cookie } });
  return { status: response.status, html: await response.text() };
}

/** Returns the list item of preview `id` on the run page. */
function itemOf(html: string, id: string): string {
  const start = html.indexOf(`<li><a href="/patch-requests/${id}">`);
  expect(start, `no list item for preview ${id}`).toBeGreaterThanOrEqual(0);
  return html.slice(start, html.indexOf('</li>', start));
}

/** Returns the text of the first element with `className` in `item`, without its tags. */
function textOf(item: string, className: string): string | null {
  const match = new RegExp(`<span class="${className}">(.*?)</span>`).exec(item);
  return match ? match[1]!.replace(/<[^>]+>/g, '').replaceAll('&#39;', "'") : null;
}

/** Returns the ids of the previews that the run page lists, in order. */
function listedIds(html: string): string[] {
  return [...html.matchAll(/<li><a href="\/patch-requests\/([0-9a-f-]{36})">/g)].map((match) => match[1]!);
}

const groqFile = { provider: 'groq', model: 'llama-3.3-70b-versatile' };
const geminiFile = { provider: 'gemini', model: 'gemini-2.5-flash' };

describe('earlier previews on the run page', () => {
  it('shows files, models, tokens and commit', async () => {
    const runId = await newRun();
    const applied = await insertPreview({
      runId,
      minutesAgo: 5,
      request: {
        totalTokens: 1200,
        appliedAt: new Date(),
        applyMode: 'commit',
        appliedCommitSha: commitSha,
      },
      files: [
        { path: 'src/a.ts', status: 'ready', ...groqFile },
        { path: 'src/b.ts', status: 'ready', ...groqFile },
      ],
      calls: [
        { keySource: 'platform', tokens: 700 },
        { keySource: 'platform', tokens: 500 },
      ],
    });
    const mixed = await insertPreview({
      runId,
      minutesAgo: 4,
      request: { status: 'partially_ready', totalTokens: 800 },
      files: [
        { path: 'src/a.ts', status: 'ready', ...geminiFile },
        { path: 'src/b.ts', status: 'failed', error: 'The model returned the file unchanged.', ...groqFile },
      ],
      calls: [
        { keySource: 'user', tokens: 300 },
        { keySource: 'platform', tokens: 500 },
      ],
    });
    const ownKey = await insertPreview({
      runId,
      minutesAgo: 3,
      request: { totalTokens: 450, appliedAt: new Date(), applyMode: 'suggestions', appliedReviewId: 77 },
      files: [{ path: 'src/a.ts', status: 'ready', ...groqFile }],
      calls: [{ keySource: 'user', tokens: 450 }],
    });
    const failed = await insertPreview({
      runId,
      minutesAgo: 2,
      request: { status: 'failed', error: 'Groq is unavailable (HTTP 503).' },
      files: [{ path: 'src/a.ts', status: 'failed', error: 'Groq is unavailable (HTTP 503).' }],
    });
    const cancelled = await insertPreview({
      runId,
      minutesAgo: 1,
      request: { status: 'cancelled', error: 'Cancelled: the pull request was closed.', totalTokens: 90 },
      files: [
        { path: 'src/a.ts', status: 'ready', ...groqFile },
        { path: 'src/b.ts', status: 'pending' },
      ],
      calls: [{ keySource: 'platform', tokens: 90 }],
    });
    const queued = await insertPreview({ runId, minutesAgo: 0, request: { status: 'queued' } });

    const { status, html } = await runPage(runId);

    expect(status).toBe(200);
    expect(listedIds(html)).toEqual([queued, cancelled, failed, ownKey, mixed, applied]);

    const appliedItem = itemOf(html, applied);
    expect(appliedItem).toContain(
      '<span class="badge status-ready">ready</span> <span class="badge status-applied">applied</span>',
    );
    expect(textOf(appliedItem, 'preview-applied')).toBe('as commit c0ffee1');
    expect(appliedItem).toContain(`<code title="${commitSha}">c0ffee1</code>`);
    expect(textOf(appliedItem, 'preview-files')).toBe(' · 2 files: 2 ready');
    expect(textOf(appliedItem, 'preview-models')).toBe(' · Groq llama-3.3-70b-versatile');
    expect(textOf(appliedItem, 'preview-tokens')).toBe(' · 1,200 tokens on the platform key');

    const mixedItem = itemOf(html, mixed);
    expect(mixedItem).not.toContain('status-applied');
    expect(textOf(mixedItem, 'preview-applied')).toBeNull();
    expect(textOf(mixedItem, 'preview-files')).toBe(' · 2 files: 1 ready, 1 failed');
    expect(textOf(mixedItem, 'preview-models')).toBe(
      ' · Gemini gemini-2.5-flash and Groq llama-3.3-70b-versatile',
    );
    expect(textOf(mixedItem, 'preview-tokens')).toBe(' · 800 tokens, 300 of them on your own key');

    const ownKeyItem = itemOf(html, ownKey);
    expect(textOf(ownKeyItem, 'preview-applied')).toBe('as review suggestions');
    expect(textOf(ownKeyItem, 'preview-tokens')).toBe(' · 450 tokens on your own key');

    const failedItem = itemOf(html, failed);
    expect(failedItem).toContain('<span class="badge status-failed">failed</span>');
    expect(textOf(failedItem, 'preview-files')).toBe(' · 1 file: 1 failed');
    expect(textOf(failedItem, 'preview-models')).toBe(' · no model result');
    expect(textOf(failedItem, 'preview-tokens')).toBe(' · 0 tokens');

    const cancelledItem = itemOf(html, cancelled);
    expect(textOf(cancelledItem, 'preview-files')).toBe(' · 2 files: 2 cancelled');
    expect(textOf(cancelledItem, 'preview-tokens')).toBe(' · 90 tokens on the platform key');
    expect(cancelledItem).toContain('<p class="muted">Cancelled: the pull request was closed.</p>');

    const queuedItem = itemOf(html, queued);
    expect(textOf(queuedItem, 'preview-files')).toBeNull();
    expect(textOf(queuedItem, 'preview-models')).toBeNull();
    expect(textOf(queuedItem, 'preview-tokens')).toBe(' · 0 tokens');

    expect(html).not.toContain('previews-cut');
  });

  it('lists the 10 newest previews', async () => {
    const runId = await newRun();
    const ids: string[] = [];
    for (let index = 0; index < 12; index++) {
      ids.push(await insertPreview({ runId, minutesAgo: 12 - index }));
    }
    const newestFirst = [...ids].reverse();

    const short = await runPage(runId);
    expect(short.status).toBe(200);
    expect(listedIds(short.html)).toEqual(newestFirst.slice(0, 10));
    expect(short.html).toContain(
      '<p class="muted previews-cut">The 10 newest of your 12 previews of this run are listed. ' +
        `<a href="/runs/${runId}?previews=all#earlier-previews">List all 12</a></p>`,
    );

    const all = await runPage(runId, '?previews=all');
    expect(all.status).toBe(200);
    expect(listedIds(all.html)).toEqual(newestFirst);
    expect(all.html).not.toContain('previews-cut');
  });

  it('lists at most 200 previews', async () => {
    const runId = await newRun();
    const createdAt = Date.now();
    const inserted = await context.db
      .insert(patchRequests)
      .values(
        Array.from({ length: 201 }, (_, index) => ({
          runId,
          userId: user.userId,
          status: 'ready' as const,
          createdAt: new Date(createdAt - index * 1000),
        })),
      )
      .returning({ id: patchRequests.id });
    const newestFirst = inserted.map((row) => row.id);

    const short = await runPage(runId);
    expect(listedIds(short.html)).toHaveLength(10);
    expect(short.html).toContain(
      `<a href="/runs/${runId}?previews=all#earlier-previews">List the 200 newest</a>`,
    );

    const all = await runPage(runId, '?previews=all');
    expect(listedIds(all.html)).toEqual(newestFirst.slice(0, 200));
    expect(all.html).toContain(
      '<p class="muted previews-cut">The 200 newest of your 201 previews of this run are listed.</p>',
    );
  });

  it('rejects an unknown previews value', async () => {
    const runId = await newRun();
    await insertPreview({ runId, minutesAgo: 1 });

    const { status, html } = await runPage(runId, '?previews=some');

    expect(status).toBe(400);
    expect(html).toContain(
      'Invalid previews value &quot;some&quot;: use previews=all to list more previews, or leave it out.',
    );
  });

  it('counts only tokens of the preview', async () => {
    const runId = await newRun();
    const id = await insertPreview({
      runId,
      minutesAgo: 1,
      request: { totalTokens: 100 },
      files: [{ path: 'src/a.ts', status: 'ready', ...groqFile }],
      calls: [{ keySource: 'platform', tokens: 100 }],
    });
    // Own-key calls of another preview do not count for this one.
    await insertPreview({
      runId,
      minutesAgo: 2,
      request: { totalTokens: 40 },
      calls: [{ keySource: 'user', tokens: 40 }],
    });

    const { html } = await runPage(runId);

    expect(textOf(itemOf(html, id), 'preview-tokens')).toBe(' · 100 tokens on the platform key');
  });
});

describe('apply wait in earlier previews', () => {
  /** Inserts a preview whose apply job waits for a GitHub rate limit, in pg-boss state `state`. */
  async function waitingPreview(runId: string, state: 'created' | 'retry') {
    const id = await insertPreview({
      runId,
      minutesAgo: 1,
      request: { applyRateLimitedUntil: new Date(Date.now() + 20 * 60_000) },
      files: [{ path: 'src/a.ts', status: 'ready', ...groqFile }],
    });
    await storeApplyJob(context, { id, userId: user.userId }, state);
    return id;
  }

  async function previewPage(id: string): Promise<string> {
    const response = await app.request(`/patch-requests/${id}`, { headers: { cookie: user.cookie } });
    expect(response.status).toBe(200);
    return response.text();
  }

  it('shows the wait of a waiting apply job', async () => {
    const runId = await newRun();
    const id = await waitingPreview(runId, 'created');

    const { html } = await runPage(runId);

    expect(itemOf(html, id)).toContain('<p class="notice rate-limit-wait">Applying waits for a GitHub rate limit');
    expect(await previewPage(id)).toContain('<p class="notice rate-limit-wait">Applying waits for a GitHub rate limit');
  });

  // An attempt that failed before it cleared the stored wait leaves it next to the retry.
  it('hides a wait that a retry ended', async () => {
    const runId = await newRun();
    const id = await waitingPreview(runId, 'retry');

    const { html } = await runPage(runId);
    const fragment = await app.request(`/patch-requests/${id}/progress`, {
      headers: { cookie: user.cookie, 'hx-request': 'true' },
    });

    expect(itemOf(html, id)).not.toContain('rate-limit-wait');
    expect(html).not.toContain('Applying waits for a GitHub rate limit');
    expect(fragment.status).toBe(200);
    expect(itemOf(outOfBandList(await fragment.text()), id)).not.toContain('rate-limit-wait');
    const page = await previewPage(id);
    expect(page).not.toContain('rate-limit-wait');
    expect(page).toContain('<p class="warning apply-retry">Applying failed (attempt 1 of 3). The apply job tries again at');
  });
});

describe('preview wait in earlier previews', () => {
  const waitNotice = (verb: 'waits' | 'waited', until: Date) =>
    `<p class="notice rate-limit-wait">Previewing ${verb} for a GitHub rate limit on this installation ` +
    `until <time datetime="${until.toISOString()}">`;

  it('shows files still running', async () => {
    const runId = await newRun();
    const until = new Date(Date.now() + 20 * 60_000);
    const id = await insertPreview({
      runId,
      minutesAgo: 1,
      request: { status: 'running', filesTotal: 3, previewRateLimitedUntil: until },
      files: [
        { path: 'src/a.ts', status: 'running' },
        { path: 'src/b.ts', status: 'running' },
        { path: 'src/c.ts', status: 'pending' },
      ],
    });

    const item = itemOf((await runPage(runId)).html, id);

    expect(item).toContain(waitNotice('waits', until));
    expect(item).toContain(
      '. 2 files that started before the limit are still running, and the other files continue ' +
        'by themselves after that time.</p>',
    );
  });

  it('shows a waiting job past its time', async () => {
    const runId = await newRun();
    const until = new Date(Date.now() - 60_000);
    const id = await insertPreview({
      runId,
      minutesAgo: 2,
      request: { status: 'running', filesTotal: 1, previewRateLimitedUntil: until },
      files: [{ path: 'src/a.ts', status: 'pending' }],
    });

    const { html } = await runPage(runId);
    const fragment = await app.request(`/patch-requests/${id}/progress`, {
      headers: { cookie: user.cookie, 'hx-request': 'true' },
    });

    const after = '</time>, and continues as soon as a worker takes its job.</p>';
    expect(itemOf(html, id)).toContain(waitNotice('waited', until));
    expect(itemOf(html, id)).toContain(after);
    expect(fragment.status).toBe(200);
    const listed = itemOf(outOfBandList(await fragment.text()), id);
    expect(listed).toContain(waitNotice('waited', until));
    expect(listed).toContain(after);
  });

  // A job that failed after it stored its wait leaves the time on the preview it ended.
  it('hides the wait of an ended preview', async () => {
    const runId = await newRun();
    const id = await insertPreview({
      runId,
      minutesAgo: 1,
      request: { status: 'failed', previewRateLimitedUntil: new Date(Date.now() + 20 * 60_000) },
      files: [{ path: 'src/a.ts', status: 'failed', error: 'Preview failed.' }],
    });

    const { html } = await runPage(runId);

    expect(itemOf(html, id)).not.toContain('rate-limit-wait');
  });
});

/** Sends "Preview fix" for `findingIds` as htmx does, with `fields` added to the form. */
async function previewFix(runId: string, findingIds: string[], fields: Record<string, string> = {}) {
  const response = await app.request(`/runs/${runId}/patch-requests`, {
    method: 'POST',
    headers: formHeaders(user, { 'hx-request': 'true' }),
    body: formBody({ _csrf: user.csrfToken, findingIds, ...fields }),
  });
  return { status: response.status, html: await response.text() };
}

/** Returns the out-of-band "Earlier previews" section of an htmx fragment. */
function outOfBandList(html: string): string {
  const start = html.indexOf('<section class="card" id="earlier-previews" hx-swap-oob="true">');
  expect(start, 'no out-of-band list in the fragment').toBeGreaterThanOrEqual(0);
  return html.slice(start, html.indexOf('</section>', start));
}

describe('earlier previews after "Preview fix"', () => {
  it('keeps a swap target without previews', async () => {
    const runId = await newRun();

    const { html } = await runPage(runId);

    expect(html).toContain('<div id="earlier-previews"></div>');
    expect(html).not.toContain('<h2>Earlier previews</h2>');
  });

  it('lists the new preview out of band', async () => {
    const { run, findings } = await createRunWithFindings(context.db, {
      userId: user.userId,
      findings: [{ path: 'src/a.ts', line: 2 }],
    });
    const older = await insertPreview({ runId: run.id, minutesAgo: 5 });

    const { status, html } = await previewFix(run.id, [findings[0]!.id]);

    expect(status).toBe(200);
    const id = /id="progress-([0-9a-f-]{36})"/.exec(html)![1]!;
    const list = outOfBandList(html);
    expect(list).toContain('<h2>Earlier previews</h2>');
    expect(listedIds(list)).toEqual([id, older]);
    expect(itemOf(list, id)).toContain('<span class="badge status-queued">queued</span>');
  });

  it('updates the list with the progress', async () => {
    const { run, findings } = await createRunWithFindings(context.db, {
      userId: user.userId,
      findings: [{ path: 'src/a.ts', line: 2 }],
    });
    const created = await previewFix(run.id, [findings[0]!.id]);
    const id = /id="progress-([0-9a-f-]{36})"/.exec(created.html)![1]!;
    expect(created.html).toContain(`hx-get="/patch-requests/${id}/progress"`);
    await context.db
      .update(patchRequests)
      .set({ status: 'ready', filesTotal: 1, filesDone: 1 })
      .where(eq(patchRequests.id, id));

    const response = await app.request(`/patch-requests/${id}/progress`, {
      headers: { cookie: user.cookie, 'hx-request': 'true' },
    });

    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain('Open the preview');
    expect(itemOf(outOfBandList(html), id)).toContain('<span class="badge status-ready">ready</span>');
  });

  it('keeps the longer list', async () => {
    const { run, findings } = await createRunWithFindings(context.db, {
      userId: user.userId,
      findings: [{ path: 'src/a.ts', line: 2 }],
    });
    for (let index = 0; index < 11; index++) await insertPreview({ runId: run.id, minutesAgo: 20 - index });
    const page = await runPage(run.id, '?previews=all');
    expect(page.html).toContain('<input type="hidden" name="previews" value="all"/>');

    const { html } = await previewFix(run.id, [findings[0]!.id], { previews: 'all' });

    const id = /id="progress-([0-9a-f-]{36})"/.exec(html)![1]!;
    expect(listedIds(outOfBandList(html))).toHaveLength(12);
    expect(html).toContain(`hx-get="/patch-requests/${id}/progress?previews=all"`);
    const progress = await app.request(`/patch-requests/${id}/progress?previews=all`, {
      headers: { cookie: user.cookie, 'hx-request': 'true' },
    });
    expect(listedIds(outOfBandList(await progress.text()))).toHaveLength(12);
  });

  it('lists the 10 newest by default', async () => {
    const { run, findings } = await createRunWithFindings(context.db, {
      userId: user.userId,
      findings: [{ path: 'src/a.ts', line: 2 }],
    });
    for (let index = 0; index < 11; index++) await insertPreview({ runId: run.id, minutesAgo: 20 - index });

    const { html } = await previewFix(run.id, [findings[0]!.id]);

    const list = outOfBandList(html);
    expect(listedIds(list)).toHaveLength(10);
    expect(list).toContain('The 10 newest of your 12 previews of this run are listed.');
  });

  it('rejects an unknown previews value on the progress', async () => {
    const runId = await newRun();
    const id = await insertPreview({ runId, minutesAgo: 1 });

    const response = await app.request(`/patch-requests/${id}/progress?previews=some`, {
      headers: { cookie: user.cookie, 'hx-request': 'true' },
    });

    expect(response.status).toBe(400);
    expect(await response.text()).toContain('Invalid previews value &quot;some&quot;');
  });
});
