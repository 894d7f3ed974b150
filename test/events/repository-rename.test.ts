import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installations, prRuns, webhookDeliveries } from '../../src/db/schema/index.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { insertInstallation, insertUser } from '../helpers/github-context.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'rename-test-secret';
const installationId = 9301;

let context: TestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;

beforeAll(async () => {
  context = await createTestContext({ WEBHOOK_SECRET: secret });
  app = createApp(context);
  await insertInstallation(context, { id: installationId });
});
afterAll(async () => {
  await context.close();
});

/** Inserts a run of `repository` for pull request `number`, from a fork when `fork` is given. */
async function insertRun(repositoryId: number, repository: string, number: number, fork?: string) {
  const [run] = await context.db
    .insert(prRuns)
    .values({
      installationId,
      repositoryId,
      repository,
      prNumber: number,
      baseSha: 'a'.repeat(40),
      headSha: String(number % 10).repeat(40),
      headRef: 'feature',
      headRepository: fork ?? repository,
      status: 'completed',
    })
    .returning();
  return run!.id;
}

async function namesOf(runId: string) {
  const [run] = await context.db
    .select({ repository: prRuns.repository, headRepository: prRuns.headRepository })
    .from(prRuns)
    .where(eq(prRuns.id, runId));
  return run;
}

/** Delivers GitHub's example `repository` payload for `action`, moved to the given repository. */
async function deliverRepositoryEvent(action: string, repositoryId: number, fullName: string) {
  const payload = examplePayload('repository', action, installationId);
  payload.repository.id = repositoryId;
  payload.repository.full_name = fullName;
  const response = await postSignedWebhook(app, {
    secret,
    event: 'repository',
    deliveryId: `rename-${delivery++}`,
    payload,
  });
  return { status: response.status, body: await response.json() };
}

describe('repository events', () => {
  it('renames the runs of a renamed repository', async () => {
    const own = await insertRun(9401, 'octo-org/widgets', 1);
    const fromFork = await insertRun(9401, 'octo-org/widgets', 2, 'someone/widgets');
    const other = await insertRun(9402, 'octo-org/gadgets', 3);

    const result = await deliverRepositoryEvent('renamed', 9401, 'octo-org/sprockets');

    expect(result.status).toBe(202);
    expect(result.body.outcome).toBe('repository 9401 is now octo-org/sprockets; renamed 2 runs');
    expect(await namesOf(own)).toEqual({
      repository: 'octo-org/sprockets',
      headRepository: 'octo-org/sprockets',
    });
    expect(await namesOf(fromFork)).toEqual({
      repository: 'octo-org/sprockets',
      headRepository: 'someone/widgets',
    });
    expect(await namesOf(other)).toEqual({
      repository: 'octo-org/gadgets',
      headRepository: 'octo-org/gadgets',
    });
  });

  it('moves the runs of a transferred repository', async () => {
    const run = await insertRun(9403, 'octo-org/tools', 4);

    const result = await deliverRepositoryEvent('transferred', 9403, 'new-owner/tools');

    expect(result.body.outcome).toBe('repository 9403 is now new-owner/tools; renamed 1 run');
    expect(await namesOf(run)).toEqual({
      repository: 'new-owner/tools',
      headRepository: 'new-owner/tools',
    });
  });

  it('ignores other repository actions', async () => {
    const run = await insertRun(9404, 'octo-org/docs', 5);

    const result = await deliverRepositoryEvent('edited', 9404, 'octo-org/handbook');

    expect(result.body.outcome).toBe('ignored: repository action "edited"');
    expect((await namesOf(run))?.repository).toBe('octo-org/docs');
  });

  it('rejects a name without an owner', async () => {
    const run = await insertRun(9405, 'octo-org/site', 6);

    const result = await deliverRepositoryEvent('renamed', 9405, 'site');

    expect(result.status).toBe(400);
    expect(result.body.error.message).toContain('repository.full_name');
    expect((await namesOf(run))?.repository).toBe('octo-org/site');
    const stored = await context.db
      .select()
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.deliveryId, `rename-${delivery - 1}`));
    expect(stored).toEqual([]);
  });

  it('finds older runs under the new name', async () => {
    const user = await insertUser(context);
    await context.db
      .update(installations)
      .set({ userId: user.id })
      .where(eq(installations.id, installationId));
    const runId = await insertRun(9406, 'octo-org/old-name', 7);
    await deliverRepositoryEvent('renamed', 9406, 'Octo-Org/New-Name');

    const response = await app.request('/api/runs?repository=octo-org/new-name&pr=7', {
      headers: { authorization: `Bearer ${user.token}` },
    });

    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body.runs.map((run: { id: string }) => run.id)).toEqual([runId]);
  });
});
