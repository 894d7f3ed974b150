import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { summaryMarker } from '../../src/report/summary-markdown.ts';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { createGitRepository, headBranch, type GitRepository } from '../../src/demo/git-repository.ts';
import { runCli, waitFor } from '../helpers/process.ts';

const execFileAsync = promisify(execFile);
const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, any>[];
}[];

const webhookSecret = 'loop-webhook-secret';
const appId = '42424';
const installationId = 9100;
const owner = 'Codertocat';
const repo = 'Hello-World';

const headApp =
  "export function run(id: string) {\r\n  console.log('run', id);\r\n  return id;\r\n}\r\n";
const fixedApp = 'export function run(id: string) {\r\n  return id;\r\n}\r\n';

let database: TestDatabase;
let repository: GitRepository;
let github: FakeGitHub;
let groq: FakeGroq;
let service: ChildProcess;
let serviceUrl: string;
let serviceOutput = '';
let env: NodeJS.ProcessEnv;
let delivery = 0;

function example(event: string, action: string): Record<string, any> {
  const found = examples
    .find((entry) => entry.name === event)!
    .examples.find((payload) => payload.action === action)!;
  return structuredClone(found);
}

async function postWebhook(event: string, payload: unknown) {
  const body = JSON.stringify(payload);
  const signature = 'sha256=' + createHmac('sha256', webhookSecret).update(body).digest('hex');
  const response = await fetch(`${serviceUrl}/webhooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': event,
      'x-github-delivery': `loop-${delivery++}`,
      'x-hub-signature-256': signature,
    },
    body,
  });
  expect(response.status).toBe(202);
  return (await response.json()).outcome as string;
}

function pullRequestEvent(action: string, headSha: string, updatedAt: string) {
  const payload = example('pull_request', 'opened');
  payload.action = action;
  payload.installation = { id: installationId };
  payload.pull_request.head.sha = headSha;
  payload.pull_request.head.ref = headBranch;
  payload.pull_request.base.sha = repository.baseSha;
  payload.pull_request.updated_at = updatedAt;
  return payload;
}

async function git(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', ['-C', repository.dir, ...args]);
  return stdout;
}

beforeAll(async () => {
  database = await createTestDatabase();
  repository = await createGitRepository({
    base: { 'src/run.ts': 'export function run(id: string) {\r\n  return id;\r\n}\r\n' },
    head: { 'src/run.ts': headApp },
  });
  const keys = generateAppKeyPair();
  github = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  github.setInstallation({
    id: installationId,
    account: { login: owner, id: 21031067, type: 'User' },
  });
  github.addRepository({ owner, repo, id: 186853002, gitDir: repository.dir });
  github.addPullRequest({
    owner,
    repo,
    number: 2,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: headBranch,
    title: 'Log runs',
  });
  groq = await startFakeGroq();
  groq.setHandler(() => ({ text: fixedApp }));

  const port = await findFreePort();
  serviceUrl = `http://127.0.0.1:${port}`;
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: database.url,
    WEBHOOK_SECRET: webhookSecret,
    APP_ID: appId,
    PRIVATE_KEY: keys.privateKeyPem,
    GITHUB_API_URL: github.url,
    GROQ_API_KEY: 'gsk_loop_platform_key',
    GROQ_BASE_URL: groq.url,
  };
  service = spawn(process.execPath, ['bin/fixwright.js', 'start'], { env, stdio: 'pipe' });
  service.stdout!.on('data', (chunk) => (serviceOutput += chunk));
  service.stderr!.on('data', (chunk) => (serviceOutput += chunk));
  await waitFor(async () => (await fetch(`${serviceUrl}/healthz`).catch(() => null))?.ok, {
    timeoutMs: 30_000,
    describe: () => `service at ${serviceUrl} to answer /healthz; output:\n${serviceOutput}`,
  });
  github.setWebhookTarget({ url: `${serviceUrl}/webhooks/github`, secret: webhookSecret });
}, 60_000);

afterAll(async () => {
  if (service && service.exitCode === null) {
    const exited = new Promise((resolve) => service.once('exit', resolve));
    service.kill('SIGTERM');
    await exited;
  }
  await Promise.all([github?.close(), groq?.close()]);
  await repository?.cleanup();
  await database?.close();
});

describe('pull request to check run, fix and commit', () => {
  it('reports, fixes on request and commits', async () => {
    const installation = example('installation', 'created');
    installation.installation.id = installationId;
    await postWebhook('installation', installation);
    const token = (await runCli(['users', 'token', '--login', owner], env)).stdout.trim();
    await runCli(['users', 'plan', '--login', owner, '--plan', 'pro'], env);
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${serviceUrl}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      });

    const opened = pullRequestEvent('opened', repository.headSha, '2024-06-01T10:00:00Z');
    await postWebhook('pull_request', opened);
    const checkRun = await waitFor(async () => github.checkRuns[0], {
      timeoutMs: 30_000,
      describe: () => `a check run; output:\n${serviceOutput}`,
    });
    await waitFor(async () => github.issueComments.length === 1, {
      timeoutMs: 30_000,
      describe: () => `the summary comment; output:\n${serviceOutput}`,
    });
    expect(checkRun.headSha).toBe(repository.headSha);
    expect(checkRun.conclusion).toBe('neutral');
    const annotated = checkRun.annotations.map((annotation) => [
      annotation.path,
      annotation.start_line,
    ]);
    expect(annotated).toEqual([['src/run.ts', 2]]);
    expect(github.issueComments[0]!.body.startsWith(summaryMarker)).toBe(true);

    // The fake's record changes in place, so the reported summary is kept apart.
    const reportedSummary = checkRun.output.summary;
    const action = example('check_run', 'requested_action');
    action.check_run.id = checkRun.id;
    action.repository.id = 186853002;
    action.installation = { id: installationId };
    action.requested_action = { identifier: 'fix' };
    const outcome = await postWebhook('check_run', action);
    const patchRequestId = /^patch request (\S+) queued/.exec(outcome)?.[1];
    expect(patchRequestId, outcome).toBeDefined();
    // The worker shows the press on the check run, keeping its summary and annotations.
    const updated = await waitFor(
      async () => {
        const current = github.checkRuns.find((candidate) => candidate.id === checkRun.id);
        return current?.output.text ? current : undefined;
      },
      { timeoutMs: 30_000, describe: () => `the press on the check run; output:\n${serviceOutput}` },
    );
    expect(updated.output.text).toContain('Preview queued for 1 file.');
    expect(updated.output.summary).toBe(reportedSummary);
    expect(updated.annotations).toHaveLength(1);

    const preview = await waitFor(async () => {
      const body = await (await api(`/api/patch-requests/${patchRequestId}`)).json();
      return ['ready', 'partially_ready', 'failed'].includes(body.status) ? body : undefined;
    }, { timeoutMs: 30_000, describe: () => `preview to finish; output:\n${serviceOutput}` });
    expect(preview.status).toBe('ready');

    const applied = await api(`/api/patch-requests/${patchRequestId}/apply`, { method: 'POST' });
    expect(applied.status).toBe(200);
    const result = await applied.json();
    expect(result.mode).toBe('commit');
    expect((await git('rev-parse', headBranch)).trim()).toBe(result.commitSha);
    expect((await git('rev-parse', `${result.commitSha}^`)).trim()).toBe(repository.headSha);
    const { stdout } = await execFileAsync(
      'git',
      ['-C', repository.dir, 'cat-file', 'blob', `${result.commitSha}:src/run.ts`],
      { encoding: 'buffer' },
    );
    expect(stdout.toString('utf8')).toBe(fixedApp);
    const status = await (await api(`/api/patch-requests/${patchRequestId}`)).json();
    expect(status.applied).toMatchObject({ mode: 'commit', commitSha: result.commitSha });

    // The fake GitHub sends the pushed commit as a synchronize event, as GitHub does: a new
    // run, one edited comment.
    const synchronize = await waitFor(
      async () => github.webhookDeliveries.find((delivery) => delivery.action === 'synchronize'),
      { timeoutMs: 15_000, describe: () => `the synchronize delivery; output:\n${serviceOutput}` },
    );
    expect(synchronize.status).toBe(202);
    expect(synchronize.payload.before).toBe(repository.headSha);
    expect(synchronize.payload.after).toBe(result.commitSha);
    await waitFor(async () => github.checkRuns.length === 2, {
      timeoutMs: 30_000,
      describe: () => `a second check run; output:\n${serviceOutput}`,
    });
    const shortSha = result.commitSha.slice(0, 7);
    await waitFor(async () => github.issueComments[0]!.body.includes(shortSha), {
      timeoutMs: 30_000,
      describe: () => `the comment to show the new commit; output:\n${serviceOutput}`,
    });
    expect(github.issueComments).toHaveLength(1);
    expect(github.checkRuns[1]!.conclusion).toBe('success');
    expect(github.checkRuns[1]!.headSha).toBe(result.commitSha);
    const runs = (await (await api(`/api/runs?repository=${owner}/${repo}&pr=2`)).json()).runs;
    expect(runs.map((run: { status: string }) => run.status)).toEqual(['completed', 'superseded']);
    expect(runs.map((run: { headSha: string }) => run.headSha)).toEqual([
      result.commitSha,
      repository.headSha,
    ]);
  });
});
