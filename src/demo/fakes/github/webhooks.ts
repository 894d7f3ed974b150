import { createHmac, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { appBotLogin } from './app.ts';
import {
  accountId,
  nodeId,
  type InstallationRecord,
  type PullRequestRecord,
  type RepositoryRecord,
} from './payloads.ts';
import { githubTimestamp } from './route-helpers.ts';
import type { FakeState } from './state.ts';

/**
 * Webhook deliveries of the fake GitHub. Payloads start from the examples in
 * @octokit/webhooks-examples, the payloads GitHub documents, with the fake's repository, pull
 * request and installation filled in.
 */

/** Endpoint that receives the fake's webhooks, and the secret that signs them. */
export interface WebhookTarget {
  url: string;
  secret: string;
}

/** One webhook the fake sent, with the response status, or the error when none came. */
export interface WebhookDeliveryRecord {
  id: string;
  event: string;
  action: string;
  payload: Record<string, any>;
  status: number | null;
  error: string | null;
}

type WebhookExample = { name: string; examples: Record<string, any>[] };

/** Time limit of one delivery, in ms, which also bounds how long closing the fake waits. */
const deliveryTimeoutMs = 10_000;

function loadExamples(): WebhookExample[] {
  try {
    return createRequire(import.meta.url)('@octokit/webhooks-examples') as WebhookExample[];
  } catch (error) {
    throw new Error(
      'The dev dependency @octokit/webhooks-examples could not be loaded ' +
        `(${(error as Error).message.split('\n')[0]}). Install with "npm ci" without --omit=dev.`,
    );
  }
}

/** Returns a copy of the first @octokit/webhooks-examples payload of `event` and `action`. */
export function examplePayload(event: string, action: string): Record<string, any> {
  const example = loadExamples()
    .find((entry) => entry.name === event)
    ?.examples.find((candidate) => candidate.action === action);
  if (!example) {
    throw new Error(`@octokit/webhooks-examples has no ${event} payload with action ${action}.`);
  }
  return structuredClone(example);
}

/**
 * Posts `payload` to the target as GitHub delivers a webhook: JSON with the event name, a
 * delivery id and the HMAC-SHA256 signature of the body in `X-Hub-Signature-256`.
 */
export function postWebhook(
  target: WebhookTarget,
  delivery: { id: string; event: string; payload: Record<string, unknown> },
): Promise<Response> {
  const body = JSON.stringify(delivery.payload);
  const signature = createHmac('sha256', target.secret).update(body).digest('hex');
  return fetch(target.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/fake',
      'x-github-event': delivery.event,
      'x-github-delivery': delivery.id,
      'x-hub-signature-256': `sha256=${signature}`,
    },
    body,
    redirect: 'manual',
    signal: AbortSignal.timeout(deliveryTimeoutMs),
  });
}

/** Returns the installation whose account owns `repository`, as GitHub picks the receiver. */
function installationOf(state: FakeState, repository: RepositoryRecord): InstallationRecord | undefined {
  const owner = repository.owner.toLowerCase();
  return [...state.installations.values()].find(
    (installation) => installation.account.login.toLowerCase() === owner,
  );
}

/**
 * Builds the `pull_request.synchronize` payload that GitHub sends when the head branch of an
 * open pull request moves from `before` to the pull request's current head.
 */
export function synchronizePayload(
  state: FakeState,
  input: {
    repository: RepositoryRecord;
    pullRequest: PullRequestRecord;
    before: string;
    installation: InstallationRecord;
  },
): Record<string, any> {
  const { repository, pullRequest, before, installation } = input;
  const payload = examplePayload('pull_request', 'synchronize');
  const fullName = `${repository.owner}/${repository.repo}`;
  const apiUrl = `${state.baseUrl}/repos/${fullName}`;
  const pullUrl = `${apiUrl}/pulls/${pullRequest.number}`;

  // The installation's account owns the repository, so its id and type are the owner's.
  const owner = {
    ...payload.repository.owner,
    login: repository.owner,
    id: installation.account.id ?? accountId(repository.owner),
    type: installation.account.type ?? 'Organization',
    html_url: `${state.baseUrl}/${repository.owner}`,
    url: `${state.baseUrl}/users/${repository.owner}`,
  };
  const repositoryJson = {
    ...payload.repository,
    id: repository.id,
    node_id: nodeId('Repository', String(repository.id)),
    name: repository.repo,
    full_name: fullName,
    owner,
    html_url: `${state.baseUrl}/${fullName}`,
    url: apiUrl,
  };

  payload.number = pullRequest.number;
  payload.before = before;
  payload.after = pullRequest.headSha;
  payload.repository = repositoryJson;
  payload.installation = {
    id: installation.id,
    node_id: nodeId('Installation', String(installation.id)),
  };
  payload.sender = {
    ...payload.sender,
    login: appBotLogin,
    id: accountId(appBotLogin),
    type: 'Bot',
    html_url: `${state.baseUrl}/apps/fixwright`,
    url: `${state.baseUrl}/users/${encodeURIComponent(appBotLogin)}`,
  };

  const pull = payload.pull_request;
  pull.number = pullRequest.number;
  pull.url = pullUrl;
  pull.html_url = `${state.baseUrl}/${fullName}/pull/${pullRequest.number}`;
  pull.title = pullRequest.title;
  pull.body = pullRequest.body;
  pull.state = pullRequest.state;
  pull.draft = pullRequest.draft;
  pull.user = { ...pull.user, login: pullRequest.user, id: accountId(pullRequest.user) };
  // A push changes updated_at, and the service orders events of a pull request by it.
  pull.updated_at = pullRequest.updatedAt ?? githubTimestamp(new Date());
  pull.head = {
    ...pull.head,
    label: `${repository.owner}:${pullRequest.headRef}`,
    ref: pullRequest.headRef,
    sha: pullRequest.headSha,
    user: owner,
    repo: repositoryJson,
  };
  pull.base = {
    ...pull.base,
    label: `${repository.owner}:${pullRequest.baseRef}`,
    ref: pullRequest.baseRef,
    sha: pullRequest.baseSha,
    user: owner,
    repo: repositoryJson,
  };
  return payload;
}

/**
 * Sends `pull_request.synchronize` for a pull request whose head moved from `before`, when a
 * webhook target is set and an installation owns the repository. The delivery runs in the
 * background and is recorded in `state.webhookDeliveries` when it ends.
 */
export function sendSynchronize(
  state: FakeState,
  repository: RepositoryRecord,
  pullRequest: PullRequestRecord,
  before: string,
): void {
  const target = state.webhookTarget;
  const installation = installationOf(state, repository);
  if (!target || !installation || pullRequest.state !== 'open') return;

  const payload = synchronizePayload(state, { repository, pullRequest, before, installation });
  const record: WebhookDeliveryRecord = {
    id: randomUUID(),
    event: 'pull_request',
    action: 'synchronize',
    payload,
    status: null,
    error: null,
  };
  const delivery = postWebhook(target, { id: record.id, event: record.event, payload })
    .then(
      async (response) => {
        record.status = response.status;
        await response.body?.cancel();
      },
      (error: unknown) => {
        record.error = error instanceof Error ? error.message : String(error);
      },
    )
    .finally(() => {
      state.webhookDeliveries.push(record);
      state.pendingDeliveries.delete(delivery);
    });
  state.pendingDeliveries.add(delivery);
}
