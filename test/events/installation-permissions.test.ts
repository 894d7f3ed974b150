// `installation.new_permissions_accepted` and `unsuspend` record when the installation's
// permissions may have changed, so that each process renews its cached access token before
// it reads them.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installations } from '../../src/db/schema/index.ts';
import { confirmInstallationQueue } from '../../src/jobs/confirm-installation.ts';
import { createApp } from '../../src/web/app.tsx';
import { createGitHubTestContext, insertInstallation, type GitHubTestContext } from '../helpers/github-context.ts';
import { countJobs, examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'installation-permissions-secret';

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let delivery = 0;

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'README.md': '# x\n' },
    head: { 'src/a.ts': "console.log('a');\n" },
    env: { WEBHOOK_SECRET: secret },
  });
  app = createApp(setup.context);
  await insertInstallation(setup.context, { id: setup.installationId });
});

afterAll(async () => {
  await setup?.close();
});

/** Delivers GitHub's example `installation` payload of `action` for `installationId`. */
async function deliver(action: string, installationId = setup.installationId) {
  const payload = examplePayload('installation', action, installationId);
  const deliveryId = `installation-permissions-${delivery++}`;
  const response = await postSignedWebhook(app, { secret, event: 'installation', deliveryId, payload });
  expect(response.status).toBe(202);
  return { deliveryId, outcome: ((await response.json()) as { outcome: string }).outcome };
}

async function permissionsChangedAt(): Promise<Date | null> {
  const [row] = await setup.context.db
    .select({ permissionsChangedAt: installations.permissionsChangedAt })
    .from(installations)
    .where(eq(installations.id, setup.installationId));
  return row!.permissionsChangedAt;
}

describe('installation.new_permissions_accepted', () => {
  it('records the time of the change', async () => {
    expect(await permissionsChangedAt()).toBeNull();
    const before = new Date();

    const { outcome } = await deliver('new_permissions_accepted');

    expect(outcome).toBe(
      `installation ${setup.installationId} accepted new permissions; its next apply of a ` +
        'workflow file reads them from a new access token',
    );
    const changedAt = await permissionsChangedAt();
    expect(changedAt).toBeInstanceOf(Date);
    // One second of slack for a database clock that differs from this process's clock.
    expect(changedAt!.getTime()).toBeGreaterThanOrEqual(before.getTime() - 1000);
    expect(await countJobs(setup.context, confirmInstallationQueue)).toBe(0);
  });

  it('records a later change again', async () => {
    await deliver('new_permissions_accepted');
    const first = await permissionsChangedAt();

    await deliver('new_permissions_accepted');

    expect((await permissionsChangedAt())!.getTime()).toBeGreaterThan(first!.getTime());
  });

  it('ignores an unrecorded installation', async () => {
    const unrecorded = setup.installationId + 1_000_000;

    const { outcome } = await deliver('new_permissions_accepted', unrecorded);

    expect(outcome).toBe(
      `ignored: installation ${unrecorded} is not recorded, so it has no mark or work to change`,
    );
    const rows = await setup.context.db
      .select({ id: installations.id })
      .from(installations)
      .where(eq(installations.id, unrecorded));
    expect(rows).toEqual([]);
  });
});

describe('installation.unsuspend', () => {
  it('records the time as a change', async () => {
    await deliver('new_permissions_accepted');
    const before = await permissionsChangedAt();

    await deliver('unsuspend');

    expect((await permissionsChangedAt())!.getTime()).toBeGreaterThan(before!.getTime());
  });
});
