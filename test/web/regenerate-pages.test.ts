// "Regenerate this file" on the preview page, with the fake Groq behind the model calls. A
// successful regeneration replaces the diff and the preview version. A failed one keeps the
// diff, shows why on the page and in the API, and leaves the page's Apply form valid.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPreview } from '../../src/autofix/preview.ts';
import { groqErrorBody, startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createSession } from '../../src/web/session/session-store.ts';
import {
  createApplyTestContext,
  gitIn,
  headText,
  proposedText,
  requestApply,
  runPreviewOfFindings,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import { insertFindings, type GitHubTestContext } from '../helpers/github-context.ts';
import { formBody } from '../helpers/web.ts';

/** The text of app.txt that a successful regeneration proposes. */
const regeneratedText = 'one\nTWO\nTHREE\n';
const outageError = 'Groq is unavailable (HTTP 503): Service unavailable. Try again later.';

interface PreviewFileJson {
  id: string;
  generation: number;
  resultGeneration: number | null;
  path: string;
  status: string;
  diff: string | null;
  error: string | null;
  regenerationError: string | null;
  tokens: number;
}

interface PreviewJson {
  status: string;
  error: string | null;
  totalTokens: number;
  filesTokens: number;
  discardedTokens: number;
  previewVersion: string;
  files: PreviewFileJson[];
}

let groq: FakeGroq;
let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let session: { cookie: string; csrfToken: string };
let patchRequestId: string;
/** The preview as the API returned it before the first regeneration. */
let first: PreviewJson;
/** The preview as the API returned it after the successful regeneration. */
let replaced: PreviewJson;

async function readPreview(): Promise<PreviewJson> {
  const response = await applyContext.app.request(`/api/patch-requests/${patchRequestId}`, {
    headers: { authorization: `Bearer ${applyContext.user.token}` },
  });
  expect(response.status).toBe(200);
  return (await response.json()) as PreviewJson;
}

/** Presses "Regenerate this file" for app.txt, as htmx sends it, and returns the fragment. */
async function pressRegenerate(fileId: string): Promise<string> {
  const response = await sendRegenerate(fileId);
  expect(response.status).toBe(200);
  expect(response.headers.get('hx-retarget')).toBe('#patch-files');
  expect(response.headers.get('hx-reswap')).toBe('outerHTML');
  return response.text();
}

/** Sends "Regenerate this file" of file `fileId` of patch request `requestId` as htmx does. */
function sendRegenerate(fileId: string, requestId = patchRequestId): Promise<Response> {
  return Promise.resolve(
    applyContext.app.request(`/patch-requests/${requestId}/files/${fileId}/regenerate`,
    {
      method: 'POST',
      headers: {
        cookie: session.cookie,
        'content-type': 'application/x-www-form-urlencoded',
        'hx-request': 'true',
      },
      body: formBody({ _csrf: session.csrfToken }),
    }),
  );
}

/** Runs the preview job's work for the queued regeneration. */
async function runRegeneration(): Promise<void> {
  await runPreview(setup.context, patchRequestId, 0, setup.context.logger);
}

async function previewPage(): Promise<string> {
  const response = await applyContext.app.request(`/patch-requests/${patchRequestId}`, {
    headers: { cookie: session.cookie },
  });
  expect(response.status).toBe(200);
  return response.text();
}

async function filesFragment(): Promise<string> {
  const response = await applyContext.app.request(`/patch-requests/${patchRequestId}/files`, {
    headers: { cookie: session.cookie, 'hx-request': 'true' },
  });
  expect(response.status).toBe(200);
  return response.text();
}

/** Returns the section of the file `fileId` in a page or fragment. */
function fileSection(html: string, fileId: string): string {
  const start = html.indexOf(`id="file-${fileId}"`);
  expect(start).toBeGreaterThan(-1);
  return html.slice(start, html.indexOf('</section>', start));
}

/** Returns the Apply form in a page or fragment. */
function applyForm(html: string): string {
  const form = /<form id="apply-form"[^>]*>[\s\S]*?<\/form>/.exec(html)?.[0];
  expect(form).toBeDefined();
  return form!;
}

function versionInForm(form: string): string | undefined {
  return /<input type="hidden" name="previewVersion" value="([^"]*)"/.exec(form)?.[1];
}

beforeAll(async () => {
  groq = await startFakeGroq();
  applyContext = await createApplyTestContext({
    env: { GROQ_API_KEY: 'gsk_regenerate_pages_test', GROQ_BASE_URL: groq.url, LLM_MAX_RETRIES: '0' },
  });
  setup = applyContext.setup;
  const created = await createSession(setup.context.db, applyContext.user.id, 1);
  session = { cookie: `fixwright_session=${created.token}`, csrfToken: created.csrfToken };

  const selected = await insertFindings(setup.context, applyContext.runId, [
    { path: 'app.txt', line: 2, severity: 'warning' },
  ]);
  const findingIds = selected.map((finding) => finding.id);
  patchRequestId = await runPreviewOfFindings(applyContext, groq, findingIds, proposedText);
  first = await readPreview();
  if (first.status !== 'ready') throw new Error(`first preview ended ${first.status}`);
});

afterAll(async () => {
  await setup?.close();
  await groq?.close();
});

describe('regenerate a preview file', () => {
  it('targets the element next to the file', async () => {
    const fileId = first.files[0]!.id;

    const section = fileSection(await previewPage(), fileId);

    expect(section).toContain(
      `hx-target="#regenerate-result-${fileId}" hx-swap="innerHTML"><input type="hidden" name="_csrf"`,
    );
    expect(section).toContain(
      `<div class="regenerate-result" id="regenerate-result-${fileId}" aria-live="polite"></div>`,
    );
  });

  it('replaces the diff on success', async () => {
    const [file] = first.files;
    groq.setHandler(() => ({ text: regeneratedText }));

    await pressRegenerate(file!.id);
    await runRegeneration();

    replaced = await readPreview();
    expect(replaced.status).toBe('ready');
    expect(replaced.previewVersion).not.toBe(first.previewVersion);
    expect(replaced.files[0]).toMatchObject({
      generation: 1,
      resultGeneration: 1,
      status: 'ready',
      regenerationError: null,
    });
    expect(replaced.files[0]!.diff).toContain('+THREE');
    expect(replaced.discardedTokens).toBe(first.files[0]!.tokens);
  });

  it('rejects an Apply of the replaced diff', async () => {
    const since = setup.fake.requests.length;

    const response = await requestApply(applyContext, patchRequestId, { previewVersion: first.previewVersion });

    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: { message: string } };
    expect(body.error.message).toBe(
      'The preview changed since you opened it (app.txt changed); reload it and review it ' +
        'again before you apply.',
    );
    expect(setup.fake.requests.length).toBe(since);
  });

  it('notes the kept diff while regenerating', async () => {
    const fileId = replaced.files[0]!.id;

    const html = await pressRegenerate(fileId);

    const section = fileSection(html, fileId);
    expect(section).toContain(
      'Regenerating this file. Its earlier diff is kept and comes back if the regeneration fails.',
    );
    expect(section).not.toContain('No result yet.');
    const form = applyForm(html);
    expect(form).toContain('hx-swap-oob="true"');
    expect(form).toMatch(/<button type="submit" class="primary" disabled="">/);
    expect(versionInForm(form)).toBe('');
  });

  it('shows no result while regenerating', async () => {
    const preview = await readPreview();

    expect(preview.status).toBe('running');
    expect(preview.files[0]).toMatchObject({
      generation: 2,
      resultGeneration: null,
      status: 'pending',
      diff: null,
      tokens: 0,
      regenerationError: null,
    });
    expect(preview.previewVersion).toBe('');
  });

  it('keeps the diff when the call fails', async () => {
    const regenerated = await readPreview();
    expect(regenerated.status).toBe('running');
    groq.enqueue({ status: 503, body: groqErrorBody('Service unavailable', 'internal_server_error') });

    await runRegeneration();

    const fileId = first.files[0]!.id;
    for (const html of [await previewPage(), await filesFragment()]) {
      const section = fileSection(html, fileId);
      expect(section).toContain(
        '<p class="warning regeneration-failed">The last regeneration of this file failed, so ' +
          `the file keeps its earlier diff, shown below: ${outageError}</p>`,
      );
      expect(section).toContain('<span class="badge status-ready">ready</span>');
      expect(section).toContain('<code>THREE</code>');
      expect(section).not.toContain('class="error"');
      const form = applyForm(html);
      expect(form).toMatch(/<button type="submit" class="primary">\s*Apply/);
    }
  });

  it('reports the failure in the API', async () => {
    const preview = await readPreview();

    expect(preview.status).toBe('ready');
    expect(preview.error).toBeNull();
    const [file] = preview.files;
    expect(file).toMatchObject({
      generation: 2,
      resultGeneration: 1,
      path: 'app.txt',
      status: 'ready',
      error: null,
      regenerationError: outageError,
    });
    expect(file!.diff).toBe(replaced.files[0]!.diff);
    // The version names generation 1 again, as before the failed regeneration.
    expect(preview.previewVersion).toBe(replaced.previewVersion);
    expect(preview.previewVersion).toMatch(new RegExp(`^${file!.id}:1:[0-9a-f]{16}$`));
    expect(versionInForm(applyForm(await previewPage()))).toBe(preview.previewVersion);
    // The failed call reported no usage, so the discarded tokens are the first result's.
    expect(preview.filesTokens).toBe(file!.tokens);
    expect(preview.discardedTokens).toBe(first.files[0]!.tokens);
    expect(preview.totalTokens).toBe(preview.filesTokens + preview.discardedTokens);
  });

  it('applies the kept diff with the earlier version', async () => {
    // The version that a page opened before the failed regeneration shows.
    const response = await requestApply(applyContext, patchRequestId, {
      previewVersion: replaced.previewVersion,
    });

    expect(response.status).toBe(200);
    const body = (await response.json()) as { files: string[]; commitSha: string };
    expect(body.files).toEqual(['app.txt']);
    expect(await gitIn(setup, 'show', `${body.commitSha}:app.txt`)).toBe(regeneratedText.trimEnd());
    expect(await gitIn(setup, 'show', `${setup.git.headSha}:app.txt`)).toBe(headText.trimEnd());
  });

  it('keeps the files when rejected', async () => {
    const fileId = first.files[0]!.id;

    const response = await sendRegenerate(fileId);

    expect(response.status).toBe(409);
    expect(response.headers.get('hx-retarget')).toBe('#patch-files');
    expect(response.headers.get('hx-reswap')).toBe('outerHTML');
    const html = await response.text();
    expect(html).toMatch(/^<div id="patch-files" data-status="ready"/);
    const section = fileSection(html, fileId);
    expect(section).toContain(
      `<div class="regenerate-result" id="regenerate-result-${fileId}" aria-live="polite">` +
        '<p class="error" role="alert">This preview is applied, being applied, or may have been ' +
        'applied by an apply that GitHub did not confirm, so its files stay as they are; request ' +
        'a new preview on the pull request to change them.</p></div>',
    );
    expect(section).toContain('<code>THREE</code>');
    // The applied preview takes no regeneration, so the panel comes back without the button.
    expect(html).not.toContain('Regenerate this file');
    expect(applyForm(html)).toContain('hx-swap-oob="true"');
  });

  it('leaves the target of a 404 as it is', async () => {
    const missingFileId = '00000000-0000-4000-8000-000000000000';

    const response = await sendRegenerate(missingFileId);

    expect(response.status).toBe(404);
    expect(response.headers.get('hx-retarget')).toBeNull();
    const html = await response.text();
    expect(html).toMatch(/^<div class="error" role="alert"><strong>Error 404: <\/strong>File /);
    expect(html).not.toContain('id="patch-files"');
  });
});
