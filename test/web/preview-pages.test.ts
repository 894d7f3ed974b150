import { createHash, randomUUID } from 'node:crypto';
import { createTwoFilesPatch } from 'diff';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchFiles, patchRequestFindings, patchRequests, prRuns, tokenEvents } from '../../src/db/schema/index.ts';
import { createApp } from '../../src/web/app.tsx';
import { testPlatformKeys, createTestContext, type TestContext } from '../helpers/context.ts';
import {
  createRunWithFindings,
  createSignedInUser,
  formBody,
  formHeaders,
  postApplyAsScript,
  type SignedInUser,
} from '../helpers/web.ts';
import { storeApplyJob } from '../helpers/apply-jobs.ts';
import { waitForLockWait } from '../helpers/webhooks.ts';

const diff = [
  '===================================================================',
  '--- a/src/a.ts',
  '+++ b/src/a.ts',
  '@@ -1,3 +1,2 @@',
  ' export const a = 1;',
  "-console.log('a', a);",
  ' export default a;',
  '',
].join('\n');

let context: TestContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;
let run: Awaited<ReturnType<typeof createRunWithFindings>>;

beforeAll(async () => {
  context = await createTestContext(testPlatformKeys);
  app = createApp(context);
  // An allowance that covers every preview here, which the platform key charges.
  user = await createSignedInUser(context.db, { login: 'preview-user', tokenLimit: 100_000 });
  run = await createRunWithFindings(context.db, {
    userId: user.userId,
    findings: [
      { path: 'src/a.ts', line: 2, severity: 'warning' },
      { path: 'src/a.ts', line: 5, severity: 'error' },
      { path: 'src/b.ts', line: 1, severity: 'notice' },
    ],
  });
});
afterAll(async () => {
  await context?.close();
});

function post(path: string, fields: Record<string, string | string[]>, htmx = false) {
  return app.request(path, {
    method: 'POST',
    headers: formHeaders(user, htmx ? { 'hx-request': 'true' } : {}),
    body: formBody({ _csrf: user.csrfToken, ...fields }),
  });
}

/** Counts the patch requests of the shared run. */
async function countRunRequests(): Promise<number> {
  return (await context.db.select().from(patchRequests).where(eq(patchRequests.runId, run.run.id))).length;
}

/** Returns whether the checkbox of `findingId` is checked in the page. */
function isChecked(html: string, findingId: string): boolean {
  const input = html.match(new RegExp(`<input[^>]*value="${findingId}"[^>]*>`));
  expect(input, `checkbox of ${findingId}`).not.toBeNull();
  return /\schecked(=""|\s|\/?>)/.test(input![0]);
}

/**
 * Inserts a ready preview of src/a.ts on `ofRun` (the shared run by default) that fixes the
 * file's findings unless `linked` is false.
 */
async function newReadyRequest(linked = true, ofRun = run) {
  const [request] = await context.db
    .insert(patchRequests)
    .values({ runId: ofRun.run.id, userId: user.userId, status: 'ready', filesTotal: 1, filesDone: 1 })
    .returning();
  const [file] = await context.db
    .insert(patchFiles)
    .values({ patchRequestId: request!.id, path: 'src/a.ts', status: 'ready', diff, provider: 'groq', model: 'llama' })
    .returning();
  if (linked) {
    const ofFile = ofRun.findings.filter((finding) => finding.path === 'src/a.ts');
    await context.db
      .insert(patchRequestFindings)
      .values(ofFile.map((finding) => ({ patchRequestId: request!.id, findingId: finding.id })));
  }
  return { request: request!, file: file! };
}

describe('run page', () => {
  it('groups findings by file with checkboxes', async () => {
    const html = await (await app.request(`/runs/${run.run.id}`, { headers: { cookie: user.cookie } })).text();
    expect(html.match(/<fieldset class="file-findings card">/g)).toHaveLength(2);
    expect(html).toContain('2 findings');
    for (const finding of run.findings) {
      expect(html).toContain(`name="findingIds" value="${finding.id}"`);
    }
    expect(html).toContain('class="badge severity-error"');
    expect(html).toContain('debug/console-log');
    expect(html).toContain('<pre class="excerpt"><code>console.log(&#39;x&#39;);</code></pre>');
    expect(html).toContain(`hx-post="/runs/${run.run.id}/patch-requests"`);
    expect(html).toContain('hx-target="#preview-progress"');
    expect(html).toContain(`hx-disabled-elt="find button[type=submit]"`);
    // public/app.js shows it, with the text of data-text, while no finding is checked.
    expect(html).toContain(
      '<p class="notice" data-nothing-checked="true" data-text="No finding is checked. Check ' +
        'at least one finding to preview its fix." hidden=""></p>',
    );
  });

  it('starts a preview and returns a polling progress fragment', async () => {
    const selected = [run.findings[0]!.id, run.findings[2]!.id];
    const response = await post(`/runs/${run.run.id}/patch-requests`, { findingIds: selected }, true);
    expect(response.status).toBe(200);
    const html = await response.text();
    const id = /id="progress-([0-9a-f-]{36})"/.exec(html)![1]!;
    expect(html).toContain(`hx-get="/patch-requests/${id}/progress"`);
    expect(html).toContain('hx-trigger="every 1s"');
    expect(html).toContain('data-status="queued"');

    const chosen = await context.db
      .select()
      .from(patchRequestFindings)
      .where(eq(patchRequestFindings.patchRequestId, id));
    expect(chosen.map((row) => row.findingId).sort()).toEqual([...selected].sort());
  });

  it('redirects to the preview without htmx', async () => {
    const response = await post(`/runs/${run.run.id}/patch-requests`, { findingIds: run.findings[1]!.id });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toMatch(/^\/patch-requests\/[0-9a-f-]{36}$/);
  });

  it('accepts an upper-case finding id', async () => {
    const finding = run.findings[1]!.id;
    const response = await post(`/runs/${run.run.id}/patch-requests`, {
      findingIds: finding.toUpperCase(),
    });
    expect(response.status).toBe(303);
    const location = response.headers.get('location') ?? '';
    const id = /^\/patch-requests\/([0-9a-f-]{36})$/.exec(location)![1]!;
    const chosen = await context.db
      .select()
      .from(patchRequestFindings)
      .where(eq(patchRequestFindings.patchRequestId, id));
    expect(chosen.map((row) => row.findingId)).toEqual([finding]);
  });

  it('asks for at least one finding', async () => {
    const response = await post(`/runs/${run.run.id}/patch-requests`, {});
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain(
      '<div id="preview-progress" aria-live="polite"><p class="error" role="alert">No finding is ' +
        'checked, so there is nothing to preview. Check at least one finding and press ' +
        '&quot;Preview fix&quot; again.</p></div>',
    );
    for (const finding of run.findings) expect(isChecked(html, finding.id), finding.id).toBe(false);
  });

  it('asks for a finding through htmx', async () => {
    const response = await post(`/runs/${run.run.id}/patch-requests`, {}, true);
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).not.toContain('<h1>');
    expect(html).toContain('No finding is checked, so there is nothing to preview.');
  });

  it('rejects a finding of another run', async () => {
    const other = await createRunWithFindings(context.db, { userId: user.userId, findings: [{ path: 'x.ts', line: 1 }] });
    const own = run.findings[2]!.id;
    const response = await post(`/runs/${run.run.id}/patch-requests`, { findingIds: [own, other.findings[0]!.id] });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain(
      `<p class="error" role="alert">Finding ${other.findings[0]!.id} is not part of this run; reload the run page.</p>`,
    );
    // The run's own finding stays checked, and the findings that were not sent stay unchecked.
    expect(isChecked(html, own)).toBe(true);
    expect(isChecked(html, run.findings[0]!.id)).toBe(false);
    expect(isChecked(html, run.findings[1]!.id)).toBe(false);
  });

  it('rejects a finding id sent as a file', async () => {
    const before = await countRunRequests();
    // A text id and a file part: dropping the part would preview only the text id's finding.
    const form = new FormData();
    form.append('_csrf', user.csrfToken);
    form.append('findingIds', run.findings[2]!.id);
    form.append('findingIds', new File([run.findings[0]!.id], 'ids.txt', { type: 'text/plain' }));

    const response = await app.request(`/runs/${run.run.id}/patch-requests`, {
      method: 'POST',
      headers: { cookie: user.cookie },
      body: form,
    });

    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain(
      '<div id="preview-progress" aria-live="polite"><p class="error" role="alert">Invalid field ' +
        '&quot;findingIds&quot;: the form sent it as a file upload, but expected a text field; ' +
        'reload the run page and press &quot;Preview fix&quot; again.</p></div>',
    );
    expect(await countRunRequests()).toBe(before);
  });

  it('rejects a repeated previews field', async () => {
    const before = await countRunRequests();
    const fields = { findingIds: [run.findings[2]!.id], previews: ['all', 'all'] };
    const message =
      'Invalid field &quot;previews&quot;: the form sent it 2 times, but expected it once; ' +
      'reload the run page and press &quot;Preview fix&quot; again.';

    const page = await post(`/runs/${run.run.id}/patch-requests`, fields);
    const fragment = await post(`/runs/${run.run.id}/patch-requests`, fields, true);

    expect(page.status).toBe(400);
    expect(await page.text()).toContain(
      `<div id="preview-progress" aria-live="polite"><p class="error" role="alert">${message}</p></div>`,
    );
    expect(fragment.status).toBe(400);
    const html = await fragment.text();
    expect(html).toContain(`<strong>Error 400: </strong>${message}`);
    expect(html).not.toContain('<h1>');
    expect(await countRunRequests()).toBe(before);
  });

  it('names several findings of another run', async () => {
    const other = await createRunWithFindings(context.db, {
      userId: user.userId,
      findings: [
        { path: 'x.ts', line: 1 },
        { path: 'x.ts', line: 2 },
      ],
    });
    const ids = other.findings.map((finding) => finding.id);
    const response = await post(`/runs/${run.run.id}/patch-requests`, { findingIds: ids });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain(
      `Findings ${ids.join(', ')} are not part of this run; reload the run page.`,
    );
  });

  it('names five of many unknown findings', async () => {
    const ids = Array.from({ length: 300 }, () => randomUUID());
    const response = await post(`/runs/${run.run.id}/patch-requests`, { findingIds: ids });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain(
      `Findings ${ids.slice(0, 5).join(', ')} and 295 more are not part of this run; reload the run page.`,
    );
    expect(html).not.toContain(ids[5]!);
  });
});

describe('earlier previews', () => {
  it('labels an applied preview', async () => {
    const { request: applied } = await newReadyRequest();
    const { request: notApplied } = await newReadyRequest();
    await context.db
      .update(patchRequests)
      .set({ appliedAt: new Date(), applyMode: 'commit', appliedCommitSha: 'abc1234def5678' })
      .where(eq(patchRequests.id, applied.id));

    const html = await (await app.request(`/runs/${run.run.id}`, { headers: { cookie: user.cookie } })).text();
    const itemOf = (id: string) => html.slice(html.indexOf(`href="/patch-requests/${id}"`)).split('</li>')[0]!;
    expect(itemOf(applied.id)).toContain(
      '<span class="badge status-ready">ready</span> <span class="badge status-applied">applied</span>',
    );
    expect(itemOf(notApplied.id)).toContain('<span class="badge status-ready">ready</span>');
    expect(itemOf(notApplied.id)).not.toContain('status-applied');
  });
});

describe('repeated "Preview fix"', () => {
  async function newRun() {
    return createRunWithFindings(context.db, {
      userId: user.userId,
      findings: [
        { path: 'src/a.ts', line: 2 },
        { path: 'src/b.ts', line: 4 },
      ],
    });
  }

  async function requestIdsOfRun(runId: string) {
    const rows = await context.db
      .select({ id: patchRequests.id })
      .from(patchRequests)
      .where(eq(patchRequests.runId, runId));
    return rows.map((row) => row.id);
  }

  it('shows the queued preview of the same findings', async () => {
    const { run: target, findings: rows } = await newRun();
    const ids = rows.map((row) => row.id);
    const first = await post(`/runs/${target.id}/patch-requests`, { findingIds: ids }, true);
    const firstId = /id="progress-([0-9a-f-]{36})"/.exec(await first.text())![1]!;

    const second = await post(`/runs/${target.id}/patch-requests`, { findingIds: [...ids].reverse() }, true);
    expect(second.status).toBe(200);
    const html = await second.text();
    expect(html).toContain(`id="progress-${firstId}"`);
    expect(html).toContain('data-status="queued"');

    const plain = await post(`/runs/${target.id}/patch-requests`, { findingIds: ids });
    expect(plain.status).toBe(303);
    expect(plain.headers.get('location')).toBe(`/patch-requests/${firstId}`);
    expect(await requestIdsOfRun(target.id)).toEqual([firstId]);
  });

  it('creates a preview for another set of findings', async () => {
    const { run: target, findings: rows } = await newRun();
    const first = await post(`/runs/${target.id}/patch-requests`, { findingIds: rows.map((row) => row.id) });
    const second = await post(`/runs/${target.id}/patch-requests`, { findingIds: rows[1]!.id });
    expect(second.status).toBe(303);
    expect(second.headers.get('location')).not.toBe(first.headers.get('location'));
    expect(await requestIdsOfRun(target.id)).toHaveLength(2);
  });

  it('shortens an invalid finding id', async () => {
    const { run: target } = await newRun();
    const response = await post(`/runs/${target.id}/patch-requests`, { findingIds: 'x'.repeat(5000) });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain(`Invalid finding id &quot;${'x'.repeat(78)}…: reload the run page.`);
    expect(html).not.toContain('x'.repeat(80));
    expect(html).toContain('<div id="preview-progress" aria-live="polite"><p class="error" role="alert">');
    expect(await requestIdsOfRun(target.id)).toEqual([]);
  });

  it('creates one preview for two submits at once', async () => {
    const { run: target, installationId, findings: rows } = await newRun();
    const ids = rows.map((row) => row.id);
    // Both submits wait behind a lock on the installation, so that they look for an active
    // preview at the same moment.
    let responses!: Promise<Response[]>;
    await context.db.transaction(async (tx) => {
      await tx.execute(sql`SELECT 1 FROM installations WHERE id = ${installationId} FOR UPDATE`);
      responses = Promise.all([
        post(`/runs/${target.id}/patch-requests`, { findingIds: ids }),
        post(`/runs/${target.id}/patch-requests`, { findingIds: ids }),
      ]);
      await waitForLockWait(context, 10_000, 2);
    });

    const [first, second] = await responses;
    expect(first!.status).toBe(303);
    expect(second!.status).toBe(303);
    expect(second!.headers.get('location')).toBe(first!.headers.get('location'));
    const stored = await requestIdsOfRun(target.id);
    expect(stored).toHaveLength(1);
    expect(first!.headers.get('location')).toBe(`/patch-requests/${stored[0]}`);
  });
});

describe('progress fragment', () => {
  it('shows files done of total and stops polling when ready', async () => {
    const { request } = await newReadyRequest();
    await context.db
      .update(patchRequests)
      .set({ status: 'running', filesTotal: 3, filesDone: 1 })
      .where(eq(patchRequests.id, request.id));
    const url = `/patch-requests/${request.id}/progress`;
    const headers = { cookie: user.cookie, 'hx-request': 'true' };
    const running = await (await app.request(url, { headers })).text();
    expect(running).toContain('1 of 3 files done');
    expect(running).toContain('<progress max="3" value="1">');
    expect(running).toContain('hx-trigger="every 1s"');

    await context.db.update(patchRequests).set({ status: 'ready', filesDone: 3 }).where(eq(patchRequests.id, request.id));
    const ready = await (await app.request(url, { headers })).text();
    expect(ready).toContain('3 of 3 files done');
    expect(ready).not.toContain('hx-trigger');
    expect(ready).toContain(`href="/patch-requests/${request.id}"`);
  });

  it('redirects a browser to the preview page', async () => {
    const { request } = await newReadyRequest();
    for (const fragment of ['progress', 'files']) {
      const response = await app.request(`/patch-requests/${request.id}/${fragment}`, {
        headers: { cookie: user.cookie },
      });
      expect(response.status).toBe(303);
      expect(response.headers.get('location')).toBe(`/patch-requests/${request.id}`);
    }
  });

  it('returns 404 for a non-UUID fragment id', async () => {
    const response = await app.request('/patch-requests/%0d%0aX/files', {
      headers: { cookie: user.cookie },
    });
    expect(response.status).toBe(404);
  });
});

describe('preview page', () => {
  it('renders the diff with line numbers and colours', async () => {
    const { request } = await newReadyRequest();
    const html = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();
    expect(html).toContain('<table class="diff">');
    expect(html).toContain(
      '<tr class="diff-delete"><td class="line-number">2</td><td class="line-number"></td><td class="sign">-</td>',
    );
    expect(html).toContain('<tr class="diff-context"><td class="line-number">3</td><td class="line-number">2</td>');
    expect(html).toContain('<tr class="diff-hunk">');
    expect(html).not.toContain('=====');
    expect(html).toContain('Regenerate this file');
  });

  it('shows line counts per file', async () => {
    const { request } = await newReadyRequest();
    const html = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();
    expect(html).toContain('<span class="added">+0</span> <span class="deleted">−1</span>');
    expect(html).not.toContain('large-rewrite');
  });

  it('warns about a file mostly rewritten', async () => {
    const original = Array.from({ length: 20 }, (_, index) => `export const v${index} = ${index};`).join('\n') + '\n';
    const proposed = 'export const everything = 0;\n';
    const { request, file } = await newReadyRequest();
    await context.db
      .update(patchFiles)
      .set({
        originalText: original,
        proposedText: proposed,
        diff: createTwoFilesPatch('a/src/a.ts', 'b/src/a.ts', original, proposed, '', ''),
      })
      .where(eq(patchFiles.id, file.id));
    const html = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();
    expect(html).toContain('<span class="added">+1</span> <span class="deleted">−20</span>');
    expect(html).toContain(
      '<p class="warning large-rewrite">This diff removes 20 of the file&#39;s 20 lines.',
    );

    const response = await app.request(`/api/patch-requests/${request.id}`, { headers: { cookie: user.cookie } });
    const body = (await response.json()) as { files: Record<string, unknown>[] };
    expect(body.files[0]).toMatchObject({ linesAdded: 1, linesDeleted: 20, largeRewrite: true });
  });

  it('shows which own key a file used', async () => {
    const notice =
      'Groq rejected your saved Groq key (HTTP 401), so this file used your own Gemini key, the ' +
      'next in your provider order, and not the platform key. Update your Groq key on the keys page.';
    const { request, file } = await newReadyRequest();
    await context.db.update(patchFiles).set({ keyNotice: notice }).where(eq(patchFiles.id, file.id));

    const html = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();
    expect(html).toContain(`<p class="warning key-notice">${notice}</p>`);
    const response = await app.request(`/api/patch-requests/${request.id}`, { headers: { cookie: user.cookie } });
    const body = (await response.json()) as { files: Record<string, unknown>[] };
    expect(body.files[0]!.keyNotice).toBe(notice);
  });

  it('wires Apply to the JSON API', async () => {
    const { request } = await newReadyRequest();
    const html = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();
    expect(html).toContain(`hx-post="/api/patch-requests/${request.id}/apply"`);
    expect(html).toContain('hx-ext="json-result"');
    expect(html).toContain(`action="/patch-requests/${request.id}/apply"`);
    // An apply takes a second or more per write to GitHub, so a second press must not queue.
    expect(html).toMatch(/hx-target="#apply-result"[^>]* hx-disabled-elt="find button\[type=submit\]"/);
  });

  it('hides Regenerate on a cancelled preview', async () => {
    const { request } = await newReadyRequest();
    await context.db
      .update(patchRequests)
      .set({ status: 'cancelled', error: 'Cancelled because the base branch changed.' })
      .where(eq(patchRequests.id, request.id));
    const html = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();
    expect(html).toContain('Cancelled because the base branch changed.');
    expect(html).toContain('<table class="diff">');
    // The server rejects regenerating a file of a cancelled preview.
    expect(html).not.toContain('Regenerate this file');
  });

  it('marks files of a cancelled preview', async () => {
    const { request } = await newReadyRequest();
    await context.db.insert(patchFiles).values([
      { patchRequestId: request.id, path: 'src/b.ts', status: 'pending' },
      { patchRequestId: request.id, path: 'src/c.ts', status: 'failed', error: 'The model call timed out.' },
    ]);
    const readFiles = async () => {
      const response = await app.request(`/api/patch-requests/${request.id}`, {
        headers: { cookie: user.cookie },
      });
      expect(response.status).toBe(200);
      const body = (await response.json()) as {
        files: { path: string; status: string; diff: string | null; resultGeneration: number | null }[];
      };
      return body.files;
    };
    const before = await readFiles();

    // The model call of src/a.ts stored it ready before the cancel, and src/b.ts never started.
    await context.db
      .update(patchRequests)
      .set({ status: 'cancelled', error: 'Cancelled: the pull request has a newer commit.' })
      .where(eq(patchRequests.id, request.id));
    const after = await readFiles();
    const html = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();

    expect(before.map((file) => file.status)).toEqual(['ready', 'pending', 'failed']);
    expect(after.map((file) => file.status)).toEqual(['cancelled', 'cancelled', 'failed']);
    // src/b.ts never got a result, so no generation produced what it shows.
    expect(before.map((file) => file.resultGeneration)).toEqual([0, null, 0]);
    expect(after.map((file) => file.resultGeneration)).toEqual([0, null, 0]);
    expect(after[0]!.diff).toBe(diff);
    const sections = html.split('<section class="patch-file card"').slice(1);
    expect(sections).toHaveLength(3);
    const [fileA, fileB, fileC] = sections as [string, string, string];
    expect(fileA).toContain('<span class="badge status-cancelled">cancelled</span>');
    expect(fileA).not.toContain('status-ready');
    expect(fileA).toContain('Not applied: the preview was cancelled, so this diff cannot be applied.');
    expect(fileA).toContain('<table class="diff">');
    expect(fileB).toContain('<span class="badge status-cancelled">cancelled</span>');
    expect(fileB).toContain('No result: the preview was cancelled before this file was done.');
    expect(fileB).not.toContain('No result yet.');
    expect(fileC).toContain('<span class="badge status-failed">failed</span>');
    expect(fileC).toContain('The model call timed out.');
    expect(fileC).not.toContain('cancelled-file');
    expect(html).toMatch(/<button type="submit" class="primary" disabled="">\s*Apply/);
  });

  it('shows the API error for Apply without JavaScript', async () => {
    const { request } = await newReadyRequest();
    const response = await post(`/patch-requests/${request.id}/apply`, {});
    // The file has no proposed text, so the API rejects the request. The preview page comes
    // back with the response as it came.
    const html = await response.text();
    expect(response.status).toBe(409);
    expect(html).toContain('<h1>Fix preview</h1>');
    expect(html).toContain(
      `<p class="error" role="alert">HTTP 409: Patch request ${request.id} has no ready file to apply.</p>`,
    );
    expect(html).toContain('&quot;error&quot;');
    expect(html).toContain('&quot;requestId&quot;');
  });

  it('shows an applied preview and disables Apply', async () => {
    const { request } = await newReadyRequest();
    await context.db
      .update(patchRequests)
      .set({ appliedAt: new Date(), applyMode: 'commit', appliedCommitSha: 'abc1234def5678' })
      .where(eq(patchRequests.id, request.id));
    const html = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();
    expect(html).toContain('Applied as commit abc1234 on the pull request&#39;s branch');
    expect(html).toMatch(/<button type="submit" class="primary" disabled="">\s*Apply/);
    expect(html).toContain(
      '0 tokens in the files&#39; model calls · 0 charged to your allowance, 0 on your own keys</p>',
    );
    expect(html).not.toContain('discarded results');
    // The server rejects regenerating a file of an applied preview.
    expect(html).not.toContain('Regenerate this file');
  });

  it('shows the note of an apply', async () => {
    const { request } = await newReadyRequest();
    const note = 'Nothing was committed, so the fixes were posted as review suggestions instead.';
    await context.db
      .update(patchRequests)
      .set({ appliedAt: new Date(), applyMode: 'suggestions', appliedReviewId: 77, appliedNote: note })
      .where(eq(patchRequests.id, request.id));
    const html = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();
    expect(html).toContain('Applied as review suggestions on the pull request');
    expect(html).toContain(`<p class="warning">${note}</p>`);
  });

  it('shows discarded tokens apart', async () => {
    const { request, file } = await newReadyRequest();
    // A retried attempt of the job paid 300 tokens for a result that the first attempt's 200
    // token result replaced.
    await context.db.update(patchFiles).set({ totalTokens: 200 }).where(eq(patchFiles.id, file.id));
    await context.db.update(patchRequests).set({ totalTokens: 500 }).where(eq(patchRequests.id, request.id));
    const headers = { cookie: user.cookie };

    const html = await (await app.request(`/patch-requests/${request.id}`, { headers })).text();
    const api = await app.request(`/api/patch-requests/${request.id}`, { headers });

    expect(html).toContain(
      '1 of 1 files done · 200 tokens in the files&#39; model calls · 300 tokens in discarded ' +
        'results, 500 in all',
    );
    expect(html).toContain('groq · llama · 200 tokens');
    expect(html).toContain('<p class="muted discarded-tokens">Discarded results are those that no file shows');
    expect(api.status).toBe(200);
    const body = (await api.json()) as Record<string, unknown>;
    expect(body.totalTokens).toBe(500);
    expect(body.filesTokens).toBe(200);
    expect(body.discardedTokens).toBe(300);
    expect((body.files as { tokens: number }[]).map((entry) => entry.tokens)).toEqual([200]);
  });

  it('shows who paid for each file', async () => {
    const { request, file } = await newReadyRequest();
    const pathHash = createHash('sha256').update(file.path).digest('hex');
    const event = (attempt: number, keySource: 'platform' | 'user', tokens: number) => ({
      userId: user.userId,
      patchRequestId: request.id,
      path: file.path,
      provider: 'groq' as const,
      model: 'llama',
      keySource,
      promptTokens: tokens,
      completionTokens: 0,
      totalTokens: tokens,
      chargedTokens: keySource === 'platform' ? tokens : 0,
      idempotencyKey: `${request.id}:${pathHash}:generation-${file.generation}:attempt-${attempt}:groq`,
    });
    // A first attempt on the platform key, then a retried attempt whose own-key result the file shows.
    await context.db.insert(tokenEvents).values([event(1, 'platform', 300), event(2, 'user', 200)]);
    const headers = { cookie: user.cookie };

    const html = await (await app.request(`/patch-requests/${request.id}`, { headers })).text();
    const api = await app.request(`/api/patch-requests/${request.id}`, { headers });

    expect(html).toContain(' · 300 charged to your allowance, 200 on your own keys</p>');
    expect(html).toContain('groq · your own key · llama · 0 tokens');
    expect(api.status).toBe(200);
    const body = (await api.json()) as {
      chargedTokens: number;
      ownKeyTokens: number;
      files: { provider: string | null; keySource: string | null }[];
    };
    expect(body.chargedTokens).toBe(300);
    expect(body.ownKeyTokens).toBe(200);
    expect(body.files.map((entry) => [entry.provider, entry.keySource])).toEqual([['groq', 'user']]);
  });

  it('names no key source without a ledger row', async () => {
    const { request } = await newReadyRequest();
    const headers = { cookie: user.cookie };

    const api = await app.request(`/api/patch-requests/${request.id}`, { headers });
    const body = (await api.json()) as { files: { provider: string | null; keySource: string | null }[] };

    expect(body.files.map((entry) => [entry.provider, entry.keySource])).toEqual([['groq', null]]);
  });

  it('regenerates one file and polls until it is done', async () => {
    const { request, file } = await newReadyRequest();
    const response = await post(`/patch-requests/${request.id}/files/${file.id}/regenerate`, {}, true);
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toMatch(/^<div id="patch-files" data-status="running"/);
    expect(html).toContain(`hx-get="/patch-requests/${request.id}/files"`);
    expect(html).toContain('No result yet.');
    expect(html).not.toContain('Regenerate this file');
    // The Apply form comes along out of band, disabled while the file is previewed again.
    expect(html).toMatch(
      /<form id="apply-form"[^>]* hx-swap-oob="true">[\s\S]*<button type="submit" class="primary" disabled="">\s*Apply/,
    );

    const again = await post(`/patch-requests/${request.id}/files/${file.id}/regenerate`, {}, true);
    expect(again.status).toBe(409);
    expect(await again.text()).toContain('wait until it finishes');
  });

  it('stores the job id of a regeneration', async () => {
    const { request, file } = await newReadyRequest();
    await post(`/patch-requests/${request.id}/files/${file.id}/regenerate`, {}, true);

    const [stored] = await context.db
      .select({ previewJobId: patchRequests.previewJobId })
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    expect(stored!.previewJobId).not.toBeNull();
    const job = await context.boss.getJobById('preview', stored!.previewJobId!);
    expect(job?.state).toBe('created');
    expect(job?.data).toEqual({ patchRequestId: request.id });
  });

  it('gives the stored reason for a cancelled preview', async () => {
    const { request, file } = await newReadyRequest();
    await context.db
      .update(patchRequests)
      .set({ status: 'cancelled', error: 'Cancelled: the pull request was closed.' })
      .where(eq(patchRequests.id, request.id));

    const response = await post(`/patch-requests/${request.id}/files/${file.id}/regenerate`, {}, true);

    expect(response.status).toBe(409);
    const html = await response.text();
    expect(html).toContain('This preview was cancelled, so its files cannot be regenerated.');
    expect(html).toContain('Cancelled: the pull request was closed.');
    expect(html).not.toContain('newer commit');
  });

  it('rejects regenerating replaced findings', async () => {
    const { request, file } = await newReadyRequest(false);

    const response = await post(`/patch-requests/${request.id}/files/${file.id}/regenerate`, {}, true);

    expect(response.status).toBe(409);
    const html = await response.text();
    expect(html).toContain('The findings of src/a.ts that this preview fixed were replaced');
    expect(html).toContain("Start a new preview from the run&#39;s new findings.");
    const [stored] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(stored!.status).toBe('ready');
    expect(stored!.previewJobId).toBeNull();
  });

  it('rejects regenerating on a superseded run', async () => {
    const older = await createRunWithFindings(context.db, {
      userId: user.userId,
      status: 'superseded',
      findings: [{ path: 'src/a.ts', line: 2 }],
    });
    const { request, file } = await newReadyRequest(true, older);

    const page = await (await app.request(`/patch-requests/${request.id}`, { headers: { cookie: user.cookie } })).text();
    expect(page).toContain('<p class="notice run-superseded">');
    expect(page).toContain('<table class="diff">');
    expect(page).not.toContain('Regenerate this file');

    const response = await post(`/patch-requests/${request.id}/files/${file.id}/regenerate`, {}, true);
    expect(response.status).toBe(409);
    expect(await response.text()).toContain(
      'This preview&#39;s run is superseded by a newer commit, so its files stay as they are',
    );
    const [stored] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
    expect(stored!.status).toBe('ready');
    expect(stored!.diff).toBe(diff);
    const [storedRequest] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(storedRequest!.previewJobId).toBeNull();
  });

  it('redirects to the preview after regenerating without htmx', async () => {
    const { request, file } = await newReadyRequest();
    const response = await post(`/patch-requests/${request.id}/files/${file.id}/regenerate`, {});
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(`/patch-requests/${request.id}`);
  });
});

describe('superseded run', () => {
  const applyButton = /<button type="submit" class="primary"( disabled="")?>\s*Apply/;
  const previewNotice =
    "The pull request has newer commits than this preview&#39;s run, so the preview can no " +
    'longer be applied. Request a preview on ';

  /** Inserts a newer run of the pull request, as a push creates it. */
  async function insertNewerRun() {
    const [newer] = await context.db
      .insert(prRuns)
      .values({
        installationId: run.installationId,
        repositoryId: run.run.repositoryId,
        repository: run.run.repository,
        prNumber: run.run.prNumber,
        baseSha: run.run.baseSha,
        headSha: 'c'.repeat(40),
        headRef: run.run.headRef,
        headRepository: run.run.headRepository,
        status: 'completed',
      })
      .returning();
    return newer!;
  }

  /** Runs `check` while the fixture's run is superseded, with a newer run when `newer` is set. */
  async function whileSuperseded(newer: boolean, check: (newerRunId: string | null) => Promise<void>) {
    const newerRun = newer ? await insertNewerRun() : null;
    await context.db.update(prRuns).set({ status: 'superseded' }).where(eq(prRuns.id, run.run.id));
    try {
      await check(newerRun?.id ?? null);
    } finally {
      await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, run.run.id));
      if (newerRun) await context.db.delete(prRuns).where(eq(prRuns.id, newerRun.id));
    }
  }

  async function getPage(path: string) {
    const response = await app.request(path, { headers: { cookie: user.cookie } });
    return response.text();
  }

  it('disables Apply and links the newest run', async () => {
    const { request } = await newReadyRequest();
    await whileSuperseded(true, async (newerRunId) => {
      const html = await getPage(`/patch-requests/${request.id}`);

      expect(applyButton.exec(html)?.[1]).toBe(' disabled=""');
      expect(html).toContain(`${previewNotice}<a href="/runs/${newerRunId}">the newest run</a>.`);
    });
  });

  it('names the newest run without a link', async () => {
    const { request } = await newReadyRequest();
    await whileSuperseded(false, async () => {
      const html = await getPage(`/patch-requests/${request.id}`);

      expect(applyButton.exec(html)?.[1]).toBe(' disabled=""');
      expect(html).toContain(`${previewNotice}the newest commit&#39;s run once the home page lists it.`);
    });
  });

  // The job, or the call that GitHub rate-limited before it, may have pushed the commit that
  // superseded the run, and the API lets an apply go on to record it.
  it.each(['created', 'retry', 'active'] as const)('keeps Apply while an apply job is %s', async (state) => {
    const { request } = await newReadyRequest();
    await storeApplyJob(context, request, state);
    await whileSuperseded(true, async () => {
      const html = await getPage(`/patch-requests/${request.id}`);

      expect(applyButton.exec(html)?.[1]).toBeUndefined();
      expect(html).not.toContain(previewNotice);
    });
  });

  it('keeps Apply while a claim remains', async () => {
    const { request } = await newReadyRequest();
    // A call that claimed the preview, pushed and died before it recorded the commit.
    await context.db
      .update(patchRequests)
      .set({ applyStartedAt: new Date(Date.now() - 11 * 60_000) })
      .where(eq(patchRequests.id, request.id));
    await whileSuperseded(true, async () => {
      const html = await getPage(`/patch-requests/${request.id}`);

      expect(applyButton.exec(html)?.[1]).toBeUndefined();
      expect(html).not.toContain(previewNotice);
    });
  });

  it('disables Apply after a failed apply job', async () => {
    const { request } = await newReadyRequest();
    await storeApplyJob(context, request, 'failed');
    await whileSuperseded(true, async (newerRunId) => {
      const html = await getPage(`/patch-requests/${request.id}`);
      const fragment = await (
        await app.request(`/patch-requests/${request.id}/files`, {
          headers: { cookie: user.cookie, 'hx-request': 'true' },
        })
      ).text();

      expect(applyButton.exec(html)?.[1]).toBe(' disabled=""');
      expect(html).toContain(`${previewNotice}<a href="/runs/${newerRunId}">the newest run</a>.`);
      expect(applyButton.exec(fragment)?.[1]).toBe(' disabled=""');
    });
  });

  /** Stores the texts that Apply writes for `fileId`, so the apply API checks the run. */
  async function makeApplicable(fileId: string) {
    await context.db
      .update(patchFiles)
      .set({ originalText: "export const a = 1;\nconsole.log('a', a);\n", proposedText: 'export const a = 1;\n' })
      .where(eq(patchFiles.id, fileId));
  }

  function supersededApplyMessage(patchRequestId: string) {
    return (
      `The pull request has a newer commit than ${run.run.headSha}. Request a new preview on the ` +
      `newest run of the pull request and apply that one instead of patch request ${patchRequestId}.`
    );
  }

  it('rejects Apply without JavaScript', async () => {
    const { request, file } = await newReadyRequest();
    await makeApplicable(file.id);
    await whileSuperseded(true, async (newerRunId) => {
      const previewVersion = /name="previewVersion" value="([^"]+)"/.exec(await getPage(`/patch-requests/${request.id}`))?.[1];
      expect(previewVersion).toBeDefined();

      const response = await post(`/patch-requests/${request.id}/apply`, { previewVersion: previewVersion! });

      expect(response.status).toBe(409);
      const html = await response.text();
      expect(html).not.toContain('Something went wrong');
      expect(html).toContain('<h1>Fix preview</h1>');
      expect(html).toContain(`${previewNotice}<a href="/runs/${newerRunId}">the newest run</a>.`);
      expect(html).toContain(
        `<div class="form-rejection"><p class="error" role="alert">HTTP 409: ${supersededApplyMessage(request.id)}</p>`,
      );
      expect(applyButton.exec(html)?.[1]).toBe(' disabled=""');
      const [stored] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
      expect(stored!.appliedAt).toBeNull();
      expect(stored!.applyStartedAt).toBeNull();
    });
  });

  it('keeps the JSON answer to Apply for htmx', async () => {
    const { request, file } = await newReadyRequest();
    await makeApplicable(file.id);
    await whileSuperseded(true, async () => {
      const response = await postApplyAsScript(app, user, request.id, {});

      expect(response.status).toBe(409);
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('conflict');
      expect(body.error.message).toBe(supersededApplyMessage(request.id));
    });
  });

  it('rejects Regenerate without JavaScript', async () => {
    const { request, file } = await newReadyRequest();
    await whileSuperseded(true, async () => {
      const response = await post(`/patch-requests/${request.id}/files/${file.id}/regenerate`, {});

      expect(response.status).toBe(409);
      const html = await response.text();
      expect(html).not.toContain('Something went wrong');
      expect(html).toContain(
        '<div class="form-rejection"><p class="error" role="alert">This preview&#39;s run is ' +
          'superseded by a newer commit, so its files stay as they are; request a new preview on ' +
          'the newest run.</p></div>',
      );
      const [stored] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
      expect(stored!.generation).toBe(file.generation);
    });
  });

  it('rejects Preview fix without JavaScript', async () => {
    const findingId = run.findings[0]!.id;
    const before = await countRunRequests();
    await whileSuperseded(true, async (newerRunId) => {
      const response = await post(`/runs/${run.run.id}/patch-requests`, { findingIds: [findingId] });

      expect(response.status).toBe(409);
      const html = await response.text();
      expect(html).not.toContain('Something went wrong');
      expect(html).toContain(`<a href="/runs/${newerRunId}">the newest run</a>.`);
      expect(html).toContain(
        '<div id="preview-progress" aria-live="polite"><p class="error" role="alert">This run is ' +
          'superseded by a newer commit; request fixes on the newest run.</p></div>',
      );
      expect(isChecked(html, findingId)).toBe(true);
      expect(await countRunRequests()).toBe(before);
    });
  });

  it('shows Apply again on a completed run', async () => {
    const { request } = await newReadyRequest();

    const html = await getPage(`/patch-requests/${request.id}`);

    expect(applyButton.exec(html)?.[1]).toBeUndefined();
    expect(html).not.toContain('newer commits');
  });

  it('links the newest run from the run page', async () => {
    await whileSuperseded(true, async (newerRunId) => {
      const html = await getPage(`/runs/${run.run.id}`);

      expect(html).not.toContain('Preview fix</button>');
      expect(html).toContain(
        'The pull request has newer commits than this run, so it takes no new previews. ' +
          `Request a preview on <a href="/runs/${newerRunId}">the newest run</a>.`,
      );
    });
  });
});

describe('static files', () => {
  it('serves htmx from the installed package', async () => {
    const response = await app.request('/public/htmx.min.js');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('javascript');
    expect(await response.text()).toContain('htmx');
  });

  it('serves the stylesheet and script', async () => {
    expect((await app.request('/public/app.css')).status).toBe(200);
    expect(await (await app.request('/public/app.js')).text()).toContain("defineExtension('json-result'");
    expect((await app.request('/public/../package.json')).status).toBe(404);
  });
});
