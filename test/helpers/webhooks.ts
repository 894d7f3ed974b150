import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import type { TestContext } from './context.ts';

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, any>[];
}[];

/** The part of a Hono app that the tests call. */
export interface RequestApp {
  request(path: string, init: RequestInit): Response | Promise<Response>;
}

/**
 * Returns a copy of the first payload in @octokit/webhooks-examples for `event` and `action`,
 * with its installation id replaced by `installationId`.
 */
export function examplePayload(
  event: string,
  action: string,
  installationId: number,
): Record<string, any> {
  const example = examples
    .find((entry) => entry.name === event)
    ?.examples.find((candidate) => candidate.action === action);
  if (!example) {
    throw new Error(`@octokit/webhooks-examples has no ${event} payload with action ${action}.`);
  }
  const payload = structuredClone(example);
  payload.installation = { ...payload.installation, id: installationId };
  return payload;
}

/** Posts `payload` to /webhooks/github with the X-Hub-Signature-256 that GitHub would send. */
export async function postSignedWebhook(
  app: RequestApp,
  input: { secret: string; event: string; deliveryId: string; payload: Record<string, unknown> },
): Promise<Response> {
  const body = JSON.stringify(input.payload);
  const signature = createHmac('sha256', input.secret).update(body).digest('hex');
  return app.request('/webhooks/github', {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': input.event,
      'x-github-delivery': input.deliveryId,
      'x-hub-signature-256': `sha256=${signature}`,
    },
  });
}

/** Counts the pg-boss jobs of a queue in every state. */
export async function countJobs(context: TestContext, queue: string): Promise<number> {
  const [row] = await context.database.sql<{ count: number }[]>`
    SELECT count(*)::int AS count FROM pgboss.job WHERE name = ${queue}`;
  return row!.count;
}

/**
 * Waits until `sessions` sessions of the test database wait for a lock, so a test can release
 * the transaction that holds it only after the other side has reached it. Throws after
 * `timeoutMs`.
 */
export async function waitForLockWait(
  context: TestContext,
  timeoutMs = 10_000,
  sessions = 1,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [row] = await context.database.sql<{ count: number }[]>`
      SELECT count(*)::int AS count FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock'`;
    if (row!.count >= sessions) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(
    `Fewer than ${sessions} sessions of the test database waited for a lock within ${timeoutMs} ms.`,
  );
}

/**
 * Returns a copy of GitHub's example `pull_request` payload for `action`, moved to the given
 * installation, repository and pull request number.
 */
export function examplePullRequestEvent(
  action: string,
  target: { installationId: number; repositoryId: number; repository: string; number: number },
): Record<string, any> {
  const payload = examplePayload('pull_request', action, target.installationId);
  payload.number = target.number;
  payload.pull_request.number = target.number;
  payload.repository.id = target.repositoryId;
  payload.repository.full_name = target.repository;
  payload.repository.name = target.repository.split('/')[1];
  payload.repository.owner.login = target.repository.split('/')[0];
  return payload;
}
