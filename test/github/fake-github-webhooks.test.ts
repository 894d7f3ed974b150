// The fake GitHub's pull_request.synchronize webhook after a commit lands on a pull request's
// head branch, checked against @octokit/webhooks and the service's own payload schema.
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhooks } from '@octokit/webhooks';
import type { Octokit } from '@octokit/rest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { headBranch } from '../../src/demo/git-repository.ts';
import { findFreePort } from '../../src/db/bundled.ts';
import { validateDeliveryPayload } from '../../src/events/dispatch.ts';
import { waitFor } from '../helpers/process.ts';
import { owner, pullNumber, repo, repositoryId, startHarness, type Harness } from './harness.ts';

const secret = 'fake-webhook-secret';

let harness: Harness;
let octokit: Octokit;
let receiver: Server;
let receiverUrl: string;
const received: { headers: IncomingHttpHeaders; body: string }[] = [];

/** Commits one more file on the head branch through the Git Data API, as an apply does. */
async function commitOnHead(path: string): Promise<{ before: string; after: string }> {
  const { data: ref } = await octokit.rest.git.getRef({ owner, repo, ref: `heads/${headBranch}` });
  const before = ref.object.sha;
  const { data: parent } = await octokit.rest.git.getCommit({ owner, repo, commit_sha: before });
  const { data: tree } = await octokit.rest.git.createTree({
    owner,
    repo,
    base_tree: parent.tree.sha,
    tree: [{ path, mode: '100644', type: 'blob', content: `${path}\n` }],
  });
  const { data: commit } = await octokit.rest.git.createCommit({
    owner,
    repo,
    message: `Add ${path}`,
    tree: tree.sha,
    parents: [before],
  });
  await octokit.rest.git.updateRef({ owner, repo, ref: `heads/${headBranch}`, sha: commit.sha });
  return { before, after: commit.sha };
}

beforeAll(async () => {
  harness = await startHarness({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': 'export const a = 2;\n' },
  });
  octokit = harness.octokit;
  receiver = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      received.push({ headers: request.headers, body });
      response.writeHead(202).end();
    });
  });
  receiver.listen(0, '127.0.0.1');
  await once(receiver, 'listening');
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks/github`;
});

afterAll(async () => {
  await harness?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});

beforeEach(() => {
  received.length = 0;
  harness.fake.setWebhookTarget(null);
});

describe('fake GitHub webhooks', () => {
  it('sends a signed synchronize after a commit', async () => {
    harness.fake.setWebhookTarget({ url: receiverUrl, secret });
    const deliveries = harness.fake.webhookDeliveries.length;
    const { before, after } = await commitOnHead('signed.txt');
    await waitFor(async () => harness.fake.webhookDeliveries.length > deliveries, {
      timeoutMs: 10_000,
      describe: () => 'the synchronize delivery to end',
    });

    expect(received).toHaveLength(1);
    const { headers, body } = received[0]!;
    expect(headers['x-github-event']).toBe('pull_request');
    expect(headers['content-type']).toBe('application/json');
    const signature = String(headers['x-hub-signature-256']);
    expect(await new Webhooks({ secret }).verify(body, signature)).toBe(true);
    expect(await new Webhooks({ secret: 'other' }).verify(body, signature)).toBe(false);

    const payload = JSON.parse(body);
    expect(payload.action).toBe('synchronize');
    expect(payload.number).toBe(pullNumber);
    expect(payload.before).toBe(before);
    expect(payload.after).toBe(after);
    expect(payload.installation.id).toBe(harness.installationId);
    expect(payload.repository.id).toBe(repositoryId);
    expect(payload.repository.full_name).toBe(`${owner}/${repo}`);
    expect(payload.pull_request.number).toBe(pullNumber);
    expect(payload.pull_request.head.sha).toBe(after);
    expect(payload.pull_request.head.ref).toBe(headBranch);
    expect(payload.pull_request.base.sha).toBe(harness.repository.baseSha);
    expect(payload.pull_request.head.repo.full_name).toBe(`${owner}/${repo}`);
    expect(payload.sender.login).toBe('fixwright[bot]');
    expect(validateDeliveryPayload('pull_request', payload)).toEqual([]);

    const record = harness.fake.webhookDeliveries.at(-1)!;
    expect(record.id).toBe(headers['x-github-delivery']);
    expect(record.action).toBe('synchronize');
    expect(record.status).toBe(202);
    expect(record.error).toBeNull();
    const { data: pull } = await octokit.rest.pulls.get({ owner, repo, pull_number: pullNumber });
    expect(pull.head.sha).toBe(after);
  });

  it('sends nothing without a target', async () => {
    const deliveries = harness.fake.webhookDeliveries.length;
    await commitOnHead('untargeted.txt');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received).toHaveLength(0);
    expect(harness.fake.webhookDeliveries).toHaveLength(deliveries);
  });

  it('records a delivery that failed', async () => {
    // A port that was free a moment ago, so nothing listens there.
    const closedPort = await findFreePort();
    harness.fake.setWebhookTarget({ url: `http://127.0.0.1:${closedPort}/webhooks/github`, secret });
    const deliveries = harness.fake.webhookDeliveries.length;
    await commitOnHead('unreachable.txt');
    await waitFor(async () => harness.fake.webhookDeliveries.length > deliveries, {
      timeoutMs: 15_000,
      describe: () => 'the failed delivery to be recorded',
    });

    const record = harness.fake.webhookDeliveries.at(-1)!;
    expect(record.status).toBeNull();
    expect(record.error).toBeTruthy();
  });
});
