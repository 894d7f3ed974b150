// A pull_request event that names an installation which no installation event recorded, as
// GitHub's example payload does with installation 1.
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installations, prRuns } from '../../src/db/schema/index.ts';
import {
  confirmInstallationQueue,
  handleConfirmInstallationJob,
  type ConfirmInstallationJobData,
} from '../../src/jobs/confirm-installation.ts';
import { createApp } from '../../src/web/app.tsx';
import { createGitHubTestContext, type GitHubTestContext } from '../helpers/github-context.ts';
import { keyedQueue } from '../helpers/jobs.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'unrecorded-installation-secret';

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;

beforeEach(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
    env: { WEBHOOK_SECRET: secret },
  });
  app = createApp(setup.context);
});

afterEach(async () => {
  await setup?.close();
});

/** The checks of installation 1, which the example payloads name. */
const checks = keyedQueue<ConfirmInstallationJobData>({
  context: () => setup.context,
  queue: confirmInstallationQueue,
  key: () => '1',
  handle: handleConfirmInstallationJob,
});

describe('pull_request event of an unrecorded installation', () => {
  it('records it and checks it with GitHub', async () => {
    const payload = examplePayload('pull_request', 'synchronize', 1);
    expect(setup.installationId).not.toBe(1);

    const response = await postSignedWebhook(app, {
      secret,
      event: 'pull_request',
      deliveryId: 'unrecorded-installation-1',
      payload,
    });

    expect(response.status).toBe(202);
    const [run] = await setup.context.db.select().from(prRuns).where(eq(prRuns.installationId, 1));
    expect(run!.status).toBe('queued');
    expect(((await response.json()) as { outcome: string }).outcome).toBe(
      `run ${run!.id} queued; installation 1 was not recorded, so it was recorded from this event ` +
        'without the user who installed the app, and its runs are listed for no one until an ' +
        'installation.created event names that user; queued a check of it with GitHub',
    );
    const [recorded] = await setup.context.db.select().from(installations).where(eq(installations.id, 1));
    expect(recorded!.userId).toBeNull();
    expect(recorded!.accountLogin).toBe('Codertocat');
    expect(recorded!.deletedAt).toBeNull();

    // The fake serves another installation, so it returns 404, as GitHub does for an id that
    // is not an installation of this app.
    await checks.run(await checks.queued());

    const read = setup.fake.requests.filter((request) => request.path === '/app/installations/1');
    expect(read.map((request) => request.method)).toEqual(['GET']);
    const [checked] = await setup.context.db.select().from(installations).where(eq(installations.id, 1));
    expect(checked!.deletedAt).toBeInstanceOf(Date);
    const [cancelled] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run!.id));
    expect(cancelled!.status).toBe('cancelled');
    expect(cancelled!.error).toContain('the GitHub App was uninstalled from Codertocat (installation 1)');
  });

  it('queues no check for a recorded installation', async () => {
    const first = examplePayload('pull_request', 'synchronize', 1);
    const second = examplePayload('pull_request', 'synchronize', 1);
    second.pull_request.head.sha = 'a'.repeat(40);
    second.pull_request.updated_at = '2019-05-15T15:21:00Z';

    for (const [index, payload] of [first, second].entries()) {
      const response = await postSignedWebhook(app, {
        secret,
        event: 'pull_request',
        deliveryId: `unrecorded-installation-again-${index}`,
        payload,
      });
      expect(response.status).toBe(202);
    }

    expect((await checks.jobs()).map((job) => job.state)).toEqual(['created']);
  });
});
