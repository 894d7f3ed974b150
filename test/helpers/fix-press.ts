import { expect } from 'vitest';
import { fixPressNoticeQueue, type FixPressNoticeJobData } from '../../src/jobs/fix-press-notice.ts';
import type { TestContext } from './context.ts';
import { fakePullRequestEvent, repositoryId, type GitHubTestContext } from './github-context.ts';
import { examplePayload, postSignedWebhook, type RequestApp } from './webhooks.ts';

/** A fix-press-notice job as pg-boss stores it, with its wait from now in ms. */
export interface NoticeJobRow {
  id: string;
  state: string;
  data: FixPressNoticeJobData;
  waitMs: number;
}

/** Returns the fix-press-notice jobs of a run, oldest first. */
export async function listNoticeJobs(context: TestContext, runId: string): Promise<NoticeJobRow[]> {
  return context.database.sql<NoticeJobRow[]>`
    SELECT id, state, data, (extract(epoch FROM start_after - now()) * 1000)::int AS "waitMs"
    FROM pgboss.job
    WHERE name = ${fixPressNoticeQueue} AND data->>'runId' = ${runId}
    ORDER BY created_on, id`;
}

/**
 * Builds the notice text of a press by a-reviewer that queued a preview of one file, with the
 * dashboard at `publicUrl`.
 */
export function queuedPreviewText(
  data: Pick<FixPressNoticeJobData, 'pressedAt'>,
  publicUrl: string,
  patchRequestId: string,
): string {
  const pressedAt = new Date(data.pressedAt).toISOString().slice(0, 16).replace('T', ' ');
  return [
    `<!-- fixwright:fix-press pressed-at=${data.pressedAt} -->`,
    '### Fix with AI',
    '',
    `Pressed by a\\-reviewer at ${pressedAt} UTC.`,
    '',
    'Preview queued for 1 file. It appears [on the Fixwright dashboard of the user who ' +
      `installed the app](${publicUrl}/patch-requests/${patchRequestId}).`,
  ].join('\n');
}

/**
 * Builds senders of signed webhooks for the fake's pull request, as GitHub delivers them to
 * `app`. Delivery ids start with `prefix` and count up. `setup` and `app` are read on each
 * call, because tests create them in beforeAll.
 */
export function fixPressWebhooks(options: {
  setup: () => GitHubTestContext;
  app: () => RequestApp;
  secret: string;
  prefix: string;
}) {
  const { secret, prefix } = options;
  let delivery = 0;
  // Minute past 09:00 of the next pull request event, so that each is newer than the last.
  let eventMinute = 10;

  async function deliver(event: string, payload: Record<string, unknown>): Promise<void> {
    const response = await postSignedWebhook(options.app(), {
      secret,
      event,
      deliveryId: `${prefix}-${delivery++}`,
      payload,
    });
    expect(response.status).toBe(202);
  }

  return {
    /**
     * Delivers a press of "Fix with AI" on the check run. The payload carries the check run's
     * external id when the fake has the check run.
     */
    async press(checkRunId: number, sender = 'a-reviewer'): Promise<void> {
      const setup = options.setup();
      const payload = examplePayload('check_run', 'requested_action', setup.installationId);
      payload.check_run.id = checkRunId;
      const stored = setup.fake.checkRuns.find((candidate) => candidate.id === checkRunId);
      if (stored) payload.check_run.external_id = stored.externalId;
      payload.repository.id = repositoryId;
      payload.requested_action = { identifier: 'fix' };
      payload.sender = { ...payload.sender, login: sender };
      await deliver('check_run', payload);
    },

    /** Delivers a `pull_request` event at `headSha`, changed by `change`. */
    async pullRequestEvent(
      headSha: string,
      change: (payload: Record<string, any>) => void,
    ): Promise<void> {
      const payload = fakePullRequestEvent(options.setup(), 'opened');
      payload.pull_request.head.sha = headSha;
      const minute = String(eventMinute++).padStart(2, '0');
      payload.pull_request.updated_at = `2024-06-01T09:${minute}:00Z`;
      change(payload);
      await deliver('pull_request', payload);
    },

    /** Delivers the `installation` event `action`, such as `suspend`. */
    async installationEvent(action: string): Promise<void> {
      const setup = options.setup();
      await deliver('installation', examplePayload('installation', action, setup.installationId));
    },
  };
}
