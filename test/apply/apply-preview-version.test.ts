// An apply with the preview version that the user saw writes only when the preview's ready
// files still match it. A late result of an overlapping preview attempt, or a regeneration
// with another diff, between the page and the press gets 409, and so does an apply job whose
// preview changed while it waited. A regeneration with the same diff writes the same text,
// so the version from before it still applies.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadPreviewPayment } from '../../src/autofix/preview-budget.ts';
import { regeneratePatchFile } from '../../src/autofix/regenerate-file.ts';
import { testPlatformKeys } from '../helpers/context.ts';
import type { Database, Transaction } from '../../src/db/client.ts';
import { patchFiles, patchRequests } from '../../src/db/schema/index.ts';
import { secondaryRateLimitError } from '../../src/demo/fakes/github.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import { createSession } from '../../src/web/session/session-store.ts';
import {
  createApplyTestContext,
  gitIn,
  headText,
  proposedText,
  refPattern,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import { listApplyJobs, runApplyJob, storedPatchRequest } from '../helpers/apply-jobs.ts';
import { insertReadyPatchRequest, type GitHubTestContext } from '../helpers/github-context.ts';
import { formBody } from '../helpers/web.ts';
import { waitForLockWait } from '../helpers/webhooks.ts';

const libHead = 'alpha\nbeta\n';
const libProposed = 'alpha\nBETA\n';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let session: { cookie: string; csrfToken: string };

/** Counts the requests to GitHub since `since` that write: every method except GET. */
function writes(since: number): number {
  return setup.fake.requests.slice(since).filter((request) => request.method !== 'GET').length;
}

function headOfBranch(): Promise<string> {
  return gitIn(setup, 'rev-parse', `refs/heads/${headBranch}`);
}

/**
 * Inserts a partially ready preview: `app.txt` is ready, and `lib.txt` failed, as when the first
 * attempt of the preview job timed out on it.
 */
async function newPreview() {
  const request = await insertReadyPatchRequest(setup.context, {
    runId: applyContext.runId,
    userId: applyContext.user.id,
    files: [
      { path: 'app.txt', originalText: headText, proposedText },
      { path: 'lib.txt', originalText: libHead, proposedText: libProposed },
    ],
    status: 'partially_ready',
    withFindings: true,
  });
  const files = await setup.context.db.select().from(patchFiles).where(eq(patchFiles.patchRequestId, request.id));
  const app = files.find((file) => file.path === 'app.txt')!;
  const lib = files.find((file) => file.path === 'lib.txt')!;
  await setup.context.db
    .update(patchFiles)
    .set({ status: 'failed', proposedText: null, diff: null, error: 'The model call timed out.' })
    .where(eq(patchFiles.id, lib.id));
  return { request, app, lib };
}

/**
 * Stores a ready result for the failed `lib.txt` at its generation, as a late attempt of the
 * preview job does, and sets the request ready, as its status is then derived again.
 */
async function storeLateResult(
  db: Database | Transaction,
  preview: Awaited<ReturnType<typeof newPreview>>,
): Promise<void> {
  await db
    .update(patchFiles)
    .set({ status: 'ready', error: null, proposedText: libProposed, diff: 'late diff of lib.txt' })
    .where(eq(patchFiles.id, preview.lib.id));
  await db.update(patchRequests).set({ status: 'ready' }).where(eq(patchRequests.id, preview.request.id));
}

/** Returns the `previewVersion` of `GET /api/patch-requests/:id`. */
async function versionFromApi(id: string): Promise<string> {
  const response = await applyContext.app.request(`/api/patch-requests/${id}`, {
    headers: { authorization: `Bearer ${applyContext.user.token}` },
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { previewVersion: string };
  return body.previewVersion;
}

/** Returns the `previewVersion` field of the Apply form in `html`. */
function versionInForm(html: string): string | undefined {
  return /<input type="hidden" name="previewVersion" value="([^"]*)"/.exec(html)?.[1];
}

async function previewPageVersion(id: string): Promise<string> {
  const response = await applyContext.app.request(`/patch-requests/${id}`, { headers: { cookie: session.cookie } });
  expect(response.status).toBe(200);
  const version = versionInForm(await response.text());
  expect(version).toBeDefined();
  return version!;
}

/** Posts the Apply form of the preview page, as a browser without JavaScript does. */
function postApplyForm(id: string, fields: Record<string, string | string[]>) {
  return applyContext.app.request(`/patch-requests/${id}/apply`, {
    method: 'POST',
    headers: { cookie: session.cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: formBody({ _csrf: session.csrfToken, ...fields }),
  });
}

/** What the 400 for an invalid `previewVersion` expects. */
const versionForm =
  'one FILE_ID:GENERATION:DIFF_HASH entry per ready file, joined by commas, as GET ' +
  '/api/patch-requests/:id returns them';

type ErrorBody = { error: { code: string; message: string; changedFiles?: unknown } };

beforeAll(async () => {
  applyContext = await createApplyTestContext({
    base: { 'app.txt': 'one\n', 'lib.txt': 'alpha\n' },
    head: { 'app.txt': headText, 'lib.txt': libHead },
    env: { GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: '3600' },
  });
  setup = applyContext.setup;
  const created = await createSession(setup.context.db, applyContext.user.id, 1);
  session = { cookie: `fixwright_session=${created.token}`, csrfToken: created.csrfToken };
});

beforeEach(async () => {
  await resetPullRequestHead(setup);
});

afterAll(async () => {
  await setup?.close();
});

describe('apply with a preview version', () => {
  it('page and API send the same version', async () => {
    const { request, app } = await newPreview();

    const version = await versionFromApi(request.id);

    expect(version).toMatch(new RegExp(`^${app.id}:0:[0-9a-f]{16}$`));
    expect(await previewPageVersion(request.id)).toBe(version);
  });

  it('files fragment swaps in the Apply form', async () => {
    const preview = await newPreview();
    const { request } = preview;
    const seen = await previewPageVersion(request.id);
    await storeLateResult(setup.context.db, preview);

    const response = await applyContext.app.request(`/patch-requests/${request.id}/files`, {
      headers: { cookie: session.cookie, 'hx-request': 'true' },
    });

    expect(response.status).toBe(200);
    const html = await response.text();
    const form = /<form id="apply-form"[^>]*>[\s\S]*?<\/form>/.exec(html)?.[0];
    expect(form).toBeDefined();
    expect(form).toContain('hx-swap-oob="true"');
    const shown = versionInForm(form!);
    expect(shown).toBe(await versionFromApi(request.id));
    expect(shown).not.toBe(seen);
    expect(shown).toContain(preview.lib.id);
    expect(form).toMatch(/<button type="submit" class="primary">\s*Apply/);
  });

  it('rejects a late ready file', async () => {
    const preview = await newPreview();
    const { request } = preview;
    const version = await versionFromApi(request.id);
    await storeLateResult(setup.context.db, preview);
    const since = setup.fake.requests.length;

    const response = await requestApply(applyContext, request.id, { previewVersion: version });

    expect(response.status).toBe(409);
    const body = (await response.json()) as ErrorBody;
    expect(body.error.message).toBe(
      'The preview changed since you opened it (lib.txt became ready); reload it and review it ' +
        'again before you apply.',
    );
    expect(body.error.changedFiles).toEqual([{ id: preview.lib.id, path: 'lib.txt', change: 'added' }]);
    expect(setup.fake.requests.length).toBe(since);
    const stored = await storedPatchRequest(setup, request.id);
    expect(stored.applyStartedAt).toBeNull();
    expect(stored.appliedAt).toBeNull();
    expect(await headOfBranch()).toBe(setup.git.headSha);
  });

  /**
   * Regenerates `app.txt` after its Apply form was rendered and stores `diff` as the new
   * result's diff, with the same texts. Returns the version that the form shows.
   */
  async function regenerateAfterForm(diff: string) {
    const { request, app } = await newPreview();
    const version = await previewPageVersion(request.id);
    const regenerated = await regeneratePatchFile(setup.context.db, setup.context.boss, {
      userId: applyContext.user.id,
      patchRequestId: request.id,
      fileId: app.id,
      // A platform key pays, because without a provider the regeneration is rejected.
      payment: await loadPreviewPayment(
        { ...setup.context, config: { ...setup.context.config, ...testPlatformKeys } },
        applyContext.user.id,
      ),
    });
    expect(regenerated).toMatchObject({ ok: true, generation: 1 });
    await setup.context.db
      .update(patchFiles)
      .set({ status: 'ready', originalText: headText, proposedText, diff })
      .where(eq(patchFiles.id, app.id));
    await setup.context.db
      .update(patchRequests)
      .set({ status: 'partially_ready' })
      .where(eq(patchRequests.id, request.id));
    return { request, app, version };
  }

  it('applies a regeneration with the same diff', async () => {
    // insertReadyPatchRequest stores the diff "diff", so only the generation differs.
    const { request, app, version } = await regenerateAfterForm('diff');
    expect(version).toMatch(new RegExp(`^${app.id}:0:[0-9a-f]{16}$`));
    expect(await versionFromApi(request.id)).toBe(version.replace(':0:', ':1:'));

    const response = await postApplyForm(request.id, { previewVersion: version });

    expect(response.status).toBe(200);
    expect(await response.text()).toContain('HTTP 200: Applied 1 file as commit');
    const commitSha = await headOfBranch();
    expect(commitSha).not.toBe(setup.git.headSha);
    expect(await gitIn(setup, 'show', `${commitSha}:app.txt`)).toBe(proposedText.trimEnd());
    expect((await storedPatchRequest(setup, request.id)).appliedAt).not.toBeNull();
  });

  it('rejects a regeneration with another diff', async () => {
    const { request, app, version } = await regenerateAfterForm('another diff');
    const since = setup.fake.requests.length;

    const response = await requestApply(applyContext, request.id, { previewVersion: version });

    expect(response.status).toBe(409);
    const body = (await response.json()) as ErrorBody;
    expect(body.error.message).toBe(
      'The preview changed since you opened it (app.txt changed); reload it and review it ' +
        'again before you apply.',
    );
    expect(body.error.changedFiles).toEqual([{ id: app.id, path: 'app.txt', change: 'changed' }]);
    expect(setup.fake.requests.length).toBe(since);
    expect((await storedPatchRequest(setup, request.id)).appliedAt).toBeNull();
    expect(await headOfBranch()).toBe(setup.git.headSha);
  });

  it('rejects a file stored while the claim waits for its lock', async () => {
    const preview = await newPreview();
    const { request } = preview;
    const version = await versionFromApi(request.id);
    const since = setup.fake.requests.length;

    // A late attempt stores its result under the request's row lock. The apply passes its first
    // check, waits for that lock to claim, and must then see the stored file.
    let releaseLock!: () => void;
    const lockReleased = new Promise<void>((resolve) => {
      releaseLock = resolve;
    });
    let lockTaken!: () => void;
    const lockHeld = new Promise<void>((resolve) => {
      lockTaken = resolve;
    });
    const lateAttempt = setup.context.db.transaction(async (tx) => {
      await tx.select().from(patchRequests).where(eq(patchRequests.id, request.id)).for('update');
      lockTaken();
      await lockReleased;
      await storeLateResult(tx, preview);
    });
    await lockHeld;
    const pressed = requestApply(applyContext, request.id, { previewVersion: version });
    await waitForLockWait(setup.context);
    releaseLock();
    await lateAttempt;
    const response = await pressed;

    expect(response.status).toBe(409);
    const body = (await response.json()) as ErrorBody;
    expect(body.error.changedFiles).toEqual([{ id: preview.lib.id, path: 'lib.txt', change: 'added' }]);
    expect(writes(since)).toBe(0);
    const stored = await storedPatchRequest(setup, request.id);
    expect(stored.applyStartedAt).toBeNull();
    expect(stored.appliedAt).toBeNull();
  });

  it('applies an unchanged preview', async () => {
    const { request } = await newPreview();
    const version = await versionFromApi(request.id);

    const response = await requestApply(applyContext, request.id, { previewVersion: version });

    expect(response.status).toBe(200);
    const body = (await response.json()) as { files: string[]; commitSha: string };
    expect(body.files).toEqual(['app.txt']);
    expect(await headOfBranch()).toBe(body.commitSha);
    expect(await gitIn(setup, 'show', `${body.commitSha}:app.txt`)).toBe(proposedText.trimEnd());
  });

  it('applies an unchanged preview without JavaScript', async () => {
    const { request } = await newPreview();
    const version = await previewPageVersion(request.id);

    const response = await postApplyForm(request.id, { previewVersion: version });

    expect(response.status).toBe(200);
    expect(await response.text()).toContain('HTTP 200: Applied 1 file as commit');
    expect((await storedPatchRequest(setup, request.id)).appliedAt).not.toBeNull();
  });

  it('applies the files as they are without a version', async () => {
    const preview = await newPreview();
    await storeLateResult(setup.context.db, preview);

    const response = await requestApply(applyContext, preview.request.id);

    expect(response.status).toBe(200);
    const body = (await response.json()) as { files: string[] };
    expect(body.files).toEqual(['app.txt', 'lib.txt']);
  });

  it('gives a cancelled preview no version', async () => {
    const { request } = await newPreview();
    const before = await versionFromApi(request.id);
    expect(before).not.toBe('');

    // app.txt stays ready in storage, as when a model call stored it before the cancel.
    await setup.context.db
      .update(patchRequests)
      .set({ status: 'cancelled', error: 'Cancelled: the pull request has a newer commit.' })
      .where(eq(patchRequests.id, request.id));

    expect(await versionFromApi(request.id)).toBe('');
    expect(await previewPageVersion(request.id)).toBe('');
    const since = setup.fake.requests.length;
    const response = await requestApply(applyContext, request.id, { previewVersion: before });
    expect(response.status).toBe(409);
    const body = (await response.json()) as ErrorBody;
    expect(body.error.message).toBe(
      `Patch request ${request.id} was cancelled, so it has no file to apply; request a new preview.`,
    );
    expect(setup.fake.requests.length).toBe(since);
  });

  it('rejects a malformed version', async () => {
    const { request } = await newPreview();
    const since = setup.fake.requests.length;

    const response = await requestApply(applyContext, request.id, { previewVersion: 'app.txt:0' });

    expect(response.status).toBe(400);
    const body = (await response.json()) as ErrorBody;
    expect(body.error.message).toBe(
      `Invalid previewVersion "app.txt:0": expected ${versionForm}.`,
    );
    expect(setup.fake.requests.length).toBe(since);
  });

  it('rejects an empty version', async () => {
    const { request } = await newPreview();
    const since = setup.fake.requests.length;

    const response = await requestApply(applyContext, request.id, { previewVersion: '' });

    expect(response.status).toBe(400);
    const body = (await response.json()) as ErrorBody & { error: { fields: string[] } };
    expect(body.error.code).toBe('bad_request');
    expect(body.error.message).toBe(`Invalid previewVersion "": expected ${versionForm}.`);
    expect(body.error.fields).toEqual(['previewVersion']);
    expect(setup.fake.requests.length).toBe(since);
    const stored = await storedPatchRequest(setup, request.id);
    expect(stored.applyStartedAt).toBeNull();
    expect(stored.appliedAt).toBeNull();
  });

  it('rejects a file named twice', async () => {
    const { request, app } = await newPreview();
    const version = await versionFromApi(request.id);
    const otherEntry = `${app.id}:1:${'0'.repeat(16)}`;

    for (const sent of [`${version},${version}`, `${version},${otherEntry}`]) {
      const since = setup.fake.requests.length;

      const response = await requestApply(applyContext, request.id, { previewVersion: sent });

      expect(response.status, sent).toBe(400);
      const body = (await response.json()) as ErrorBody & { error: { fields: string[] } };
      expect(body.error.message).toMatch(/^Invalid previewVersion "/);
      expect(body.error.message).toContain(`: expected ${versionForm}, not 2 entries for file ${app.id}.`);
      expect(body.error.fields).toEqual(['previewVersion']);
      expect(setup.fake.requests.length).toBe(since);
    }
    expect((await storedPatchRequest(setup, request.id)).appliedAt).toBeNull();
  });

  it('rejects a file of another preview', async () => {
    const { request } = await newPreview();
    const other = await newPreview();
    const since = setup.fake.requests.length;

    const response = await requestApply(applyContext, request.id, {
      previewVersion: await versionFromApi(other.request.id),
    });

    expect(response.status).toBe(400);
    const body = (await response.json()) as ErrorBody & {
      error: { fields: string[]; unknownFileIds: string[] };
    };
    expect(body.error.message).toBe(
      `Invalid previewVersion: file ${other.app.id} is not part of patch request ${request.id}. ` +
        `Send the previewVersion that GET /api/patch-requests/${request.id} returns.`,
    );
    expect(body.error.fields).toEqual(['previewVersion']);
    expect(body.error.unknownFileIds).toEqual([other.app.id]);
    expect(setup.fake.requests.length).toBe(since);
    const stored = await storedPatchRequest(setup, request.id);
    expect(stored.applyStartedAt).toBeNull();
    expect(stored.appliedAt).toBeNull();
  });

  it('rejects an entry for a file not ready', async () => {
    const { request, lib } = await newPreview();
    const version = await versionFromApi(request.id);
    const since = setup.fake.requests.length;

    // lib.txt failed, so no version of the preview names it.
    const response = await requestApply(applyContext, request.id, {
      previewVersion: `${version},${lib.id}:0:${'0'.repeat(16)}`,
    });

    expect(response.status).toBe(409);
    const body = (await response.json()) as ErrorBody;
    expect(body.error.message).toBe(
      'The preview changed since you opened it (lib.txt is not ready); reload it and review it ' +
        'again before you apply.',
    );
    expect(body.error.changedFiles).toEqual([{ id: lib.id, path: 'lib.txt', change: 'removed' }]);
    expect(setup.fake.requests.length).toBe(since);
    expect((await storedPatchRequest(setup, request.id)).applyStartedAt).toBeNull();
  });

  it('rejects an empty form version', async () => {
    const { request } = await newPreview();
    const since = setup.fake.requests.length;

    const response = await postApplyForm(request.id, { previewVersion: '' });

    expect(response.status).toBe(400);
    expect(await response.text()).toContain(
      `HTTP 400: Invalid previewVersion &quot;&quot;: expected ${versionForm}.`,
    );
    expect(setup.fake.requests.length).toBe(since);
    expect((await storedPatchRequest(setup, request.id)).appliedAt).toBeNull();
  });
});

describe('Apply form with a broken version field', () => {
  /** Checks that nothing was claimed or written since `since`. */
  async function expectNothingApplied(id: string, since: number) {
    expect(setup.fake.requests.length).toBe(since);
    const stored = await storedPatchRequest(setup, id);
    expect(stored.applyStartedAt).toBeNull();
    expect(stored.appliedAt).toBeNull();
  }

  it('rejects a version sent as a file', async () => {
    const { request } = await newPreview();
    const version = await previewPageVersion(request.id);
    const since = setup.fake.requests.length;
    // As `curl -F previewVersion=@file` sends it: a multipart part with a file name.
    const form = new FormData();
    form.append('_csrf', session.csrfToken);
    form.append('previewVersion', new File([version], 'version.txt', { type: 'text/plain' }));

    const response = await applyContext.app.request(`/patch-requests/${request.id}/apply`, {
      method: 'POST',
      headers: { cookie: session.cookie },
      body: form,
    });

    expect(response.status).toBe(400);
    expect(await response.text()).toContain(
      '<div class="form-rejection"><p class="error" role="alert">Invalid field ' +
        '&quot;previewVersion&quot;: the form sent it as a file upload, but expected a text ' +
        'field; reload the preview and press Apply again.</p></div>',
    );
    await expectNothingApplied(request.id, since);
  });

  it('rejects a repeated version', async () => {
    const { request } = await newPreview();
    const version = await previewPageVersion(request.id);
    const since = setup.fake.requests.length;

    const response = await postApplyForm(request.id, { previewVersion: [version, version] });

    expect(response.status).toBe(400);
    expect(await response.text()).toContain(
      '<div class="form-rejection"><p class="error" role="alert">Invalid field ' +
        '&quot;previewVersion&quot;: the form sent it 2 times, but expected it once; reload the ' +
        'preview and press Apply again.</p></div>',
    );
    await expectNothingApplied(request.id, since);
  });

  it('rejects a changed preview behind a repeated version', async () => {
    // parseBody keeps the last of repeated fields, which would hide the stale version.
    const preview = await newPreview();
    const stale = await previewPageVersion(preview.request.id);
    await storeLateResult(setup.context.db, preview);
    const fresh = await previewPageVersion(preview.request.id);
    expect(fresh).not.toBe(stale);
    const since = setup.fake.requests.length;

    const response = await postApplyForm(preview.request.id, { previewVersion: [stale, fresh] });

    expect(response.status).toBe(400);
    await expectNothingApplied(preview.request.id, since);
  });
});

describe('apply job with a preview version', () => {
  /** Presses Apply with the page's version and lets GitHub rate-limit the branch update. */
  async function queueRateLimitedApply(id: string) {
    const version = await versionFromApi(id);
    setup.fake.queueResponse(secondaryRateLimitError('PATCH', refPattern, 600));
    const response = await requestApply(applyContext, id, { previewVersion: version });
    expect(response.status).toBe(202);
    const [job] = await listApplyJobs(setup, id);
    expect(job!.data.previewVersion).toBe(version);
    return job!;
  }

  it('ends without a write when the preview changed', async () => {
    const preview = await newPreview();
    const { request } = preview;
    const job = await queueRateLimitedApply(request.id);
    const since = setup.fake.requests.length;

    await runApplyJob(setup, job.id, async () => {
      // The job's first step clears its wait, and a late result after that step and before the
      // job's claim is stored. This takes that step early, to open that window.
      await setup.context.db
        .update(patchRequests)
        .set({ applyRateLimitedUntil: null })
        .where(eq(patchRequests.id, request.id));
      await storeLateResult(setup.context.db, preview);
    });

    const stored = await storedPatchRequest(setup, request.id);
    expect(stored.applyError).toBe(
      'The preview changed since you opened it (lib.txt became ready); reload it and review it ' +
        'again before you apply.',
    );
    expect(stored.appliedAt).toBeNull();
    expect(stored.applyStartedAt).toBeNull();
    expect(writes(since)).toBe(0);
    expect(await headOfBranch()).toBe(setup.git.headSha);
  });

  it('applies when the preview is unchanged', async () => {
    const { request } = await newPreview();
    const job = await queueRateLimitedApply(request.id);

    await runApplyJob(setup, job.id);

    const stored = await storedPatchRequest(setup, request.id);
    expect(stored.applyError).toBeNull();
    expect(stored.appliedCommitSha).not.toBeNull();
    expect(await headOfBranch()).toBe(stored.appliedCommitSha);
  });
});
