// A pull request whose events come from another installation than its earlier runs, as after
// the repository moved to another account or the app was installed again.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPatchRequest } from '../../src/autofix/create-patch-request.ts';
import { findings, installations, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { createSignedInUser, type SignedInUser } from '../helpers/web.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'installation-move-secret';

let context: TestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;
let nextPullRequest = 300;
let nextInstallation = 7300;

function sha(character: string): string {
  return character.repeat(40);
}

/** Builds a pull_request payload of the webhook examples for `installationId`. */
function pullRequestEvent(
  action: string,
  installationId: number,
  number: number,
  headSha: string,
  updatedAt: string,
): Record<string, any> {
  const payload = examplePayload('pull_request', 'opened', installationId);
  payload.action = action;
  payload.number = number;
  payload.pull_request.number = number;
  payload.pull_request.head.sha = headSha;
  payload.pull_request.updated_at = updatedAt;
  return payload;
}

async function deliver(payload: Record<string, unknown>): Promise<string> {
  const response = await postSignedWebhook(app, {
    secret,
    event: 'pull_request',
    deliveryId: `move-${delivery++}`,
    payload,
  });
  expect(response.status).toBe(202);
  return (await response.json()).outcome;
}

/** Records installation `id` of the example's account, installed by `userId`. */
async function insertInstallation(id: number, userId: string) {
  await context.db.insert(installations).values({
    id,
    accountLogin: 'Codertocat',
    accountId: 21031067,
    accountType: 'User',
    userId,
  });
}

async function runsOf(number: number) {
  return context.db.select().from(prRuns).where(eq(prRuns.prNumber, number)).orderBy(prRuns.createdAt);
}

/** Creates a user who installed the app, and a completed run of a new pull request. */
async function ownerWithCompletedRun() {
  const owner = await createSignedInUser(context.db, { login: `move-owner-${nextInstallation}` });
  const installationId = nextInstallation++;
  await insertInstallation(installationId, owner.userId);
  const number = nextPullRequest++;
  await deliver(pullRequestEvent('opened', installationId, number, sha('a'), '2024-05-01T10:00:00Z'));
  const [run] = await runsOf(number);
  await context.db.update(prRuns).set({ status: 'completed' }).where(eq(prRuns.id, run!.id));
  await context.db.insert(findings).values({
    runId: run!.id,
    path: 'a.ts',
    startLine: 1,
    endLine: 1,
    ruleId: 'debug/console-log',
    severity: 'warning',
    message: 'Remove the console.log call.',
    fingerprint: `fp-${run!.id}`,
  });
  return { owner, installationId, number, run: run! };
}

/** Requests fixes of all the run's findings through the API, as its owner. */
async function requestFixes(owner: SignedInUser, runId: string) {
  const { token } = await mintApiToken(context.db, owner.userId, 'tests');
  const rows = await context.db.select({ id: findings.id }).from(findings).where(eq(findings.runId, runId));
  return app.request(`/api/runs/${runId}/patch-requests`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ findingIds: rows.map((row) => row.id) }),
  });
}

function page(owner: SignedInUser, path: string) {
  return app.request(path, { headers: { cookie: owner.cookie } });
}

beforeAll(async () => {
  context = await createTestContext({ WEBHOOK_SECRET: secret });
  app = createApp(context);
});

afterAll(async () => {
  await context?.close();
});

/** Queues a preview of the run's findings for its owner, as the API does. */
async function queuePreview(owner: SignedInUser, runId: string) {
  const rows = await context.db.select({ id: findings.id }).from(findings).where(eq(findings.runId, runId));
  const created = await createPatchRequest(context.db, context.boss, {
    runId,
    userId: owner.userId,
    findingIds: rows.map((row) => row.id),
  });
  if (!created.ok) throw new Error('patch request not created');
  return created.id;
}

const movedNote = (installationId: number, headSha: string) =>
  `GitHub sent the newer commit ${headSha} of this pull request for installation ` +
  `${installationId} on account Codertocat, not for this run's installation, as it does after ` +
  'the repository moved to another account or the app was installed again.';

describe('pull_request event of another installation', () => {
  it('supersedes without naming a run the owner cannot open', async () => {
    const { owner, number, run } = await ownerWithCompletedRun();
    const patchRequestId = await queuePreview(owner, run.id);

    const outcome = await deliver(pullRequestEvent('synchronize', 999999, number, sha('b'), '2024-05-01T10:05:00Z'));

    const [older, newer] = await runsOf(number);
    expect(outcome).toBe(
      `run ${newer!.id} queued; superseded 1 older run(s); installation 999999 was not recorded, ` +
        'so it was recorded from this event without the user who installed the app, and its runs ' +
        'are listed for no one until an installation.created event names that user; GitHub App ' +
        'credentials are not configured, so it is not checked with GitHub',
    );
    expect(newer!.installationId).toBe(999999);
    expect(older!.id).toBe(run.id);
    expect(older!.status).toBe('superseded');
    const [recorded] = await context.db.select().from(installations).where(eq(installations.id, 999999));
    expect(recorded!.userId).toBeNull();
    expect(older!.error).toBe(
      `Superseded: ${movedNote(999999, sha('b'))} Fixwright has not recorded who installed the ` +
        'app there yet, so that run is listed for no one until an installation event names them.',
    );
    expect(older!.error).not.toContain(newer!.id);
    expect((await page(owner, `/runs/${newer!.id}`)).status).toBe(404);

    const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
    expect(request!.status).toBe('cancelled');
    expect(request!.error).toContain(`Cancelled: ${movedNote(999999, sha('b'))}`);
    expect(request!.error).not.toContain(newer!.id);
  });

  it('tells the owner where the newer commits went', async () => {
    const { owner, number, run } = await ownerWithCompletedRun();
    await deliver(pullRequestEvent('synchronize', 999998, number, sha('c'), '2024-05-01T10:05:00Z'));

    const response = await page(owner, `/runs/${run.id}`);

    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain(
      'The pull request has newer commits than this run, so it takes no new previews. GitHub ' +
        'sent them for installation 999998 on account Codertocat, which you do not own, as after ' +
        'the repository moved to another account or the app was installed again. Fixwright has ' +
        'not recorded who installed the app there yet, so their runs are listed for no one until ' +
        'an installation event names them.',
    );
    expect(html).not.toContain('once the home page lists it');

    const api = await requestFixes(owner, run.id);
    expect(api.status).toBe(409);
    const { error } = (await api.json()) as { error: { message: string; newestRunId: string | null } };
    expect(error.newestRunId).toBeNull();
    expect(error.message).toBe(
      `Run ${run.id} is superseded by a newer commit that GitHub sent for installation 999998 on ` +
        'account Codertocat, which you do not own, as after the repository moved to another ' +
        'account or the app was installed again. Fixwright has not recorded who installed the app ' +
        'there yet, so its run is listed for no one until an installation event names them.',
    );
  });

  it('names the owner of another installation', async () => {
    const { owner, number, run } = await ownerWithCompletedRun();
    const other = await createSignedInUser(context.db, { login: 'move-other-owner' });
    const installationId = nextInstallation++;
    await insertInstallation(installationId, other.userId);
    await deliver(pullRequestEvent('synchronize', installationId, number, sha('7'), '2024-05-01T10:05:00Z'));

    const html = await (await page(owner, `/runs/${run.id}`)).text();
    const api = await requestFixes(owner, run.id);

    expect(html).toContain(
      `GitHub sent them for installation ${installationId} on account Codertocat, which you do ` +
        'not own, as after the repository moved to another account or the app was installed ' +
        'again. Their runs are listed for the user who installed the app there.',
    );
    expect(api.status).toBe(409);
    const { error } = (await api.json()) as { error: { message: string } };
    expect(error.message).toBe(
      `Run ${run.id} is superseded by a newer commit that GitHub sent for installation ` +
        `${installationId} on account Codertocat, which you do not own, as after the repository ` +
        'moved to another account or the app was installed again. Its run is listed for the user ' +
        'who installed the app there.',
    );
  });

  it('links the newer run once the owner installed it', async () => {
    const { owner, number, run } = await ownerWithCompletedRun();
    const installationId = nextInstallation++;
    await insertInstallation(installationId, owner.userId);

    await deliver(pullRequestEvent('synchronize', installationId, number, sha('d'), '2024-05-01T10:05:00Z'));

    const [older, newer] = await runsOf(number);
    expect(older!.error).toBe(
      `Superseded: ${movedNote(installationId, sha('d'))} That run is listed for the user who ` +
        'installed the app there.',
    );
    const html = await (await page(owner, `/runs/${run.id}`)).text();
    expect(html).toContain(`<a href="/runs/${newer!.id}">the newest run</a>`);
  });

  it('names the installation of a newer run on a late event', async () => {
    const { installationId, number, run } = await ownerWithCompletedRun();
    await deliver(pullRequestEvent('synchronize', 999997, number, sha('e'), '2024-05-01T10:10:00Z'));

    // An event of the first installation that GitHub sent before the move arrives last.
    const outcome = await deliver(
      pullRequestEvent('synchronize', installationId, number, sha('f'), '2024-05-01T10:05:00Z'),
    );

    const runs = await runsOf(number);
    const late = runs.find((candidate) => candidate.headSha === sha('f'))!;
    const newer = runs.find((candidate) => candidate.headSha === sha('e'))!;
    expect(outcome).toBe(`run ${late.id} superseded on arrival by run ${newer.id}`);
    expect(late.installationId).toBe(installationId);
    expect(late.status).toBe('superseded');
    expect(late.error).toContain(`Superseded on arrival: ${movedNote(999997, sha('e'))}`);
    expect(late.error).not.toContain(newer.id);
    expect(runs.find((candidate) => candidate.id === run.id)!.status).toBe('superseded');
  });

  it('keeps naming the run of the same installation', async () => {
    const { installationId, number } = await ownerWithCompletedRun();

    await deliver(pullRequestEvent('synchronize', installationId, number, sha('9'), '2024-05-01T10:05:00Z'));

    const [older, newer] = await runsOf(number);
    expect(older!.error).toBe(`Superseded by run ${newer!.id} for the newer commit ${sha('9')}.`);
  });
});
