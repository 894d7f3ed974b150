import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installations, users, webhookDeliveries } from '../../src/db/schema/index.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'installation-created-secret';

let context: TestContext;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  context = await createTestContext({ WEBHOOK_SECRET: secret });
  app = createApp(context);
});
afterAll(async () => {
  await context?.close();
});

/** Delivers `payload` as a signed `installation` event and returns the status and outcome. */
async function deliver(deliveryId: string, payload: Record<string, unknown>) {
  const response = await postSignedWebhook(app, { secret, event: 'installation', deliveryId, payload });
  const body = (await response.json()) as { outcome?: string };
  return { status: response.status, outcome: body.outcome };
}

/**
 * Returns GitHub's example `installation.created` payload for `installationId`, with the
 * account and sender of the example `installation.deleted` payload (octocat, id 1) in place
 * of Codertocat's.
 */
function createdForOtherAccount(installationId: number): Record<string, any> {
  const payload = examplePayload('installation', 'created', installationId);
  const other = examplePayload('installation', 'deleted', installationId);
  payload.installation.account = other.installation.account;
  payload.sender = other.sender;
  return payload;
}

/**
 * Returns GitHub's example `installation.created` payload for `installationId` with the
 * sender of the example `installation.deleted` payload (octocat, id 1), as a replay from
 * another user of the same account would send it.
 */
function createdByOtherSender(installationId: number): Record<string, any> {
  const payload = examplePayload('installation', 'created', installationId);
  payload.sender = examplePayload('installation', 'deleted', installationId).sender;
  return payload;
}

async function storedInstallation(id: number) {
  const [row] = await context.db
    .select({
      accountId: installations.accountId,
      accountLogin: installations.accountLogin,
      ownerLogin: users.login,
      ownerGithubId: users.githubId,
      deletedAt: installations.deletedAt,
    })
    .from(installations)
    .leftJoin(users, eq(users.id, installations.userId))
    .where(eq(installations.id, id));
  return row;
}

describe('installation.created', () => {
  it('keeps the owner for another account', async () => {
    const installationId = 957387;
    const created = await deliver('created-first', examplePayload('installation', 'created', installationId));
    expect(created.status).toBe(202);
    const before = await storedInstallation(installationId);
    expect(before).toMatchObject({
      accountId: 21031067,
      accountLogin: 'Codertocat',
      ownerLogin: 'Codertocat',
      ownerGithubId: 21031067,
    });

    const crafted = createdForOtherAccount(installationId);
    expect(crafted.installation.account.id).toBe(1);
    expect(crafted.sender.login).toBe('octocat');
    const response = await deliver('created-other-account', crafted);

    expect(response.status).toBe(202);
    expect(response.outcome).toBe(
      `ignored: installation ${installationId} is already recorded for account Codertocat (id 21031067)`,
    );
    expect(await storedInstallation(installationId)).toEqual(before);
    expect(await context.db.select().from(users).where(eq(users.githubId, 1))).toHaveLength(0);
    const [delivery] = await context.db
      .select({ outcome: webhookDeliveries.outcome })
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.deliveryId, 'created-other-account'));
    expect(delivery!.outcome).toBe(response.outcome);
    const warning = context.logs.find((line) => line.event === 'installation.account_mismatch');
    expect(warning).toMatchObject({
      level: 40,
      installationId,
      storedAccountId: 21031067,
      payloadAccountId: 1,
      senderId: 1,
      senderLogin: 'octocat',
    });
  });

  it('keeps the owner of a deleted installation', async () => {
    const installationId = 957388;
    await deliver('deleted-setup-created', examplePayload('installation', 'created', installationId));
    const deleted = await deliver('deleted-setup-deleted', examplePayload('installation', 'deleted', installationId));
    expect(deleted.status).toBe(202);
    const before = await storedInstallation(installationId);
    expect(before!.deletedAt).not.toBeNull();

    const response = await deliver('deleted-other-account', createdForOtherAccount(installationId));

    expect(response.status).toBe(202);
    expect(response.outcome).toMatch(/^ignored: /);
    expect(await storedInstallation(installationId)).toEqual(before);
  });

  it('records the same account again', async () => {
    const installationId = 957389;
    await deliver('again-created', examplePayload('installation', 'created', installationId));
    await deliver('again-deleted', examplePayload('installation', 'deleted', installationId));

    const payload = examplePayload('installation', 'created', installationId);
    const response = await deliver('again-created-2', payload);

    expect(response.status).toBe(202);
    expect(response.outcome).toBe(`installation ${installationId} recorded for Codertocat`);
    expect(await storedInstallation(installationId)).toMatchObject({
      accountId: 21031067,
      ownerLogin: 'Codertocat',
      deletedAt: null,
    });
  });

  it('keeps the owner for another sender', async () => {
    const installationId = 957390;
    await deliver('sender-created', examplePayload('installation', 'created', installationId));
    const before = await storedInstallation(installationId);
    expect(before!.ownerLogin).toBe('Codertocat');

    const replayed = createdByOtherSender(installationId);
    expect(replayed.installation.account.id).toBe(21031067);
    expect(replayed.sender.id).toBe(1);
    const response = await deliver('sender-other', replayed);

    expect(response.status).toBe(202);
    expect(response.outcome).toBe(
      `ignored: installation ${installationId} is already owned by Codertocat (GitHub id ` +
        '21031067), and GitHub gives an installation of the app a new id, so a created event ' +
        'from octocat cannot take it over',
    );
    expect(await storedInstallation(installationId)).toEqual(before);
    expect(await context.db.select().from(users).where(eq(users.githubId, 1))).toHaveLength(0);
    const warning = context.logs.find(
      (line) => line.event === 'installation.owner_mismatch' && line.installationId === installationId,
    );
    expect(warning).toMatchObject({
      level: 40,
      storedOwnerGithubId: 21031067,
      storedOwnerLogin: 'Codertocat',
      senderId: 1,
      senderLogin: 'octocat',
    });
  });

  it('keeps the owner after deleted and another sender', async () => {
    const installationId = 957391;
    await deliver('sender-deleted-created', examplePayload('installation', 'created', installationId));
    await deliver('sender-deleted-deleted', examplePayload('installation', 'deleted', installationId));
    const before = await storedInstallation(installationId);
    expect(before!.deletedAt).not.toBeNull();

    const response = await deliver('sender-deleted-other', createdByOtherSender(installationId));

    expect(response.status).toBe(202);
    expect(response.outcome).toMatch(/^ignored: installation 957391 is already owned by Codertocat /);
    expect(await storedInstallation(installationId)).toEqual(before);
  });

  it('records another admin under a new id', async () => {
    const firstId = 957392;
    const reinstalledId = 957393;
    await deliver('admin-created', examplePayload('installation', 'created', firstId));
    await deliver('admin-deleted', examplePayload('installation', 'deleted', firstId));

    const response = await deliver('admin-reinstalled', createdByOtherSender(reinstalledId));

    expect(response.status).toBe(202);
    expect(response.outcome).toBe(`installation ${reinstalledId} recorded for octocat`);
    expect(await storedInstallation(reinstalledId)).toMatchObject({
      accountId: 21031067,
      ownerLogin: 'octocat',
      ownerGithubId: 1,
      deletedAt: null,
    });
    expect(await storedInstallation(firstId)).toMatchObject({ ownerLogin: 'Codertocat' });
  });

  it('gives an ownerless installation its sender', async () => {
    const installationId = 957394;
    await context.db.insert(installations).values({
      id: installationId,
      accountId: 21031067,
      accountLogin: 'Codertocat',
      accountType: 'User',
      userId: null,
    });

    const response = await deliver('ownerless-created', createdByOtherSender(installationId));

    expect(response.status).toBe(202);
    expect(response.outcome).toBe(`installation ${installationId} recorded for octocat`);
    expect(await storedInstallation(installationId)).toMatchObject({ ownerLogin: 'octocat', ownerGithubId: 1 });
  });
});
