// Applying when GitHub carries out the ref update or the review but its response is lost, and
// the read that checks the write finds the installation suspended or uninstalled. The apply
// records the installation and rejects the request with 409 as it does for any request, and the
// patch request keeps the write as unconfirmed, so the apply after the installation is back
// records it.
//
// The read learns the installation's state only when it requests a new installation token,
// which @octokit/auth-app 8 caches for 59 minutes. So the tests fake Date, and the write moves
// it 60 minutes on. Date only moves forward in this file, because Bottleneck 2.19, which
// Octokit's throttling uses, delays the next request until the Date of its last one has passed.
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { installations, type ApplyMode } from '../../src/db/schema/index.ts';
import { gitDataRoutes } from '../../src/demo/fakes/github/git-data.ts';
import { reviewRoutes } from '../../src/demo/fakes/github/reviews.ts';
import { headBranch } from '../../src/demo/git-repository.ts';
import {
  createApplyTestContext,
  gitIn,
  refPattern,
  requestApply,
  resetPullRequestHead,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import { insertAppTextRequest, storedPatchRequest } from '../helpers/apply-jobs.ts';
import { owner, prNumber, repository, type GitHubTestContext } from '../helpers/github-context.ts';
import { failAfterWork } from '../helpers/lost-response.ts';

let applyContext: ApplyTestContext;
let setup: GitHubTestContext;

/** Writes that the fake carries out before it returns 502 in place of its response. */
const afterWork: { ref: number; review: number } = { ref: 0, review: 0 };
/** Runs when the fake returns that 502, after it carried out the write. */
let onWriteFailure: (() => void) | null = null;

const account = { login: owner, id: 1, type: 'Organization' as const };
const reviewsPath = `/repos/${repository}/pulls/${prNumber}/reviews`;

const git = (...args: string[]) => gitIn(setup, ...args);
const stored = (id: string) => storedPatchRequest(setup, id);

/** Counts the requests to the fake with `method` whose path is `path` or matches it. */
function count(method: string, path: RegExp | string): number {
  const matches = (requestPath: string) => (typeof path === 'string' ? requestPath === path : path.test(requestPath));
  return setup.fake.requests.filter((request) => request.method === method && matches(request.path)).length;
}

/** Takes the installation away in the fake, as `reason` does on GitHub. */
function takeInstallationAway(reason: 'suspended' | 'uninstalled') {
  if (reason === 'suspended') {
    setup.fake.setInstallation({ id: setup.installationId, account, suspended: true });
  } else {
    setup.fake.removeInstallation(setup.installationId);
  }
}

/** Sets the fake's installation back to active, and clears its suspension or uninstall. */
async function restoreInstallation() {
  setup.fake.setInstallation({ id: setup.installationId, account });
  await setup.context.db
    .update(installations)
    .set({ suspendedAt: null, deletedAt: null })
    .where(eq(installations.id, setup.installationId));
}

beforeAll(async () => {
  applyContext = await createApplyTestContext();
  setup = applyContext.setup;
  const failWrite = () => {
    onWriteFailure?.();
    return { status: 502, body: { message: 'Server Error' } };
  };
  const updateRef = gitDataRoutes.find((route) => route.method === 'PATCH')!;
  setup.fake.addRoute(failAfterWork(updateRef, afterWork, 'ref', failWrite));
  const createReview = reviewRoutes.find((route) => route.method === 'POST')!;
  setup.fake.addRoute(failAfterWork(createReview, afterWork, 'review', failWrite));
  // The clock keeps running from real time until a write moves it on.
  vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
});

beforeEach(async () => {
  afterWork.ref = 0;
  afterWork.review = 0;
  onWriteFailure = null;
  await resetPullRequestHead(setup);
  await restoreInstallation();
});

afterEach(() => {
  expect(setup.fake.handlerErrors).toEqual([]);
});

afterAll(async () => {
  await setup?.close();
  vi.useRealTimers();
});

describe('apply, installation gone on the check', () => {
  const cases: ['suspended' | 'uninstalled', ApplyMode, string][] = [
    ['suspended', 'commit', 'is suspended'],
    ['uninstalled', 'commit', 'no longer exists'],
    ['suspended', 'suggestions', 'is suspended'],
    ['uninstalled', 'suggestions', 'no longer exists'],
  ];

  it.each(cases)('keeps the outcome when %s (%s)', async (reason, mode, state) => {
    const request = await insertAppTextRequest(applyContext);
    afterWork[mode === 'commit' ? 'ref' : 'review'] = 1;
    onWriteFailure = () => {
      takeInstallationAway(reason);
      vi.setSystemTime(Date.now() + 60 * 60_000);
    };
    const updatesBefore = count('PATCH', refPattern);
    const reviewsBefore = setup.fake.reviews.length;

    const response = await requestApply(applyContext, request.id, { mode });

    const { error } = await response.json();
    expect(response.status, JSON.stringify(error)).toBe(409);
    expect(error.message).toContain(`installation ${setup.installationId} on ${owner} ${state}`);
    expect(error.reason).toBe(reason);
    expect(error.applyUnconfirmed).toBeUndefined();
    const [installation] = await setup.context.db
      .select()
      .from(installations)
      .where(eq(installations.id, setup.installationId));
    const recordedAt = reason === 'suspended' ? installation!.suspendedAt : installation!.deletedAt;
    expect(recordedAt).not.toBeNull();

    const pushed = await git('rev-parse', headBranch);
    const posted = setup.fake.reviews.slice(reviewsBefore);
    if (mode === 'commit') {
      expect(pushed).not.toBe(setup.git.headSha);
      expect(posted).toHaveLength(0);
    } else {
      expect(pushed).toBe(setup.git.headSha);
      expect(posted).toHaveLength(1);
    }
    const row = await stored(request.id);
    expect(row.appliedAt).toBeNull();
    expect(row.applyStartedAt).toBeNull();
    expect(row.applyError).toBeNull();
    expect(row.applyUnconfirmedAt).not.toBeNull();
    expect(row.applyUnconfirmedMode).toBe(mode);
    expect(row.applyUnconfirmedCommitSha).toBe(mode === 'commit' ? pushed : null);

    // Once the installation is back, an apply without a mode records the write instead of
    // writing again.
    await restoreInstallation();
    const commitsBefore = count('POST', /\/git\/commits$/);
    const reviewPostsBefore = count('POST', reviewsPath);

    const again = await requestApply(applyContext, request.id);

    const result = await again.json();
    expect(again.status, JSON.stringify(result)).toBe(200);
    expect(result.mode).toBe(mode);
    expect(result.commitSha).toBe(mode === 'commit' ? pushed : null);
    expect(result.reviewId).toBe(mode === 'commit' ? null : posted[0]!.id);
    expect(count('PATCH', refPattern)).toBe(updatesBefore + (mode === 'commit' ? 1 : 0));
    expect(count('POST', /\/git\/commits$/)).toBe(commitsBefore);
    expect(count('POST', reviewsPath)).toBe(reviewPostsBefore);
    const applied = await stored(request.id);
    expect(applied.appliedCommitSha).toBe(mode === 'commit' ? pushed : null);
    expect(applied.applyUnconfirmedAt).toBeNull();
  });
});
