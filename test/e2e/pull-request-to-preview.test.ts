import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { applyPatch } from 'diff';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchRequests, tokenEvents, users } from '../../src/db/schema/index.ts';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { startFakeGemini, type FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { createGitRepository, type GitRepository } from '../../src/demo/git-repository.ts';
import { runCli, waitFor } from '../helpers/process.ts';
import { startServiceProcess, type ServiceProcess } from '../helpers/service.ts';

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, any>[];
}[];

const webhookSecret = 'e2e-webhook-secret';
const appId = '31337';
const installationId = 9001;
const groqKey = 'gsk_platform_e2e_key_0123456789';
const geminiKey = 'AIzaPlatformE2eKey0123456789';

const baseApp = `import { loadUser } from './users';

export function handler(id: string) {
  const user = loadUser(id);
  return user;
}
`;
const headApp = `import { loadUser } from './users';

const apiKey = "sk_live_51HqLyjWDarjtT1zdp7dc";

export function handler(id: string) {
  const user = loadUser(id);
  console.log('loaded', user);
  return user;
}
`;
const fixedApp = `import { loadUser } from './users';

const apiKey = process.env.STRIPE_API_KEY;

export function handler(id: string) {
  const user = loadUser(id);
  return user;
}
`;
const baseTool = `def run(values):
    return sum(values)
`;
const headTool = `def run(values):
    total = sum(values)
    print("total", total)
    return total
`;
const fixedTool = `def run(values):
    total = sum(values)
    return total
`;
const proposals: Record<string, string> = { 'src/app.ts': fixedApp, 'scripts/tool.py': fixedTool };

let database: TestDatabase;
let repository: GitRepository;
let github: FakeGitHub;
let groq: FakeGroq;
let gemini: FakeGemini;
let service: ServiceProcess;
let serviceUrl: string;
let env: NodeJS.ProcessEnv;

function pathInPrompt(user: string): string {
  const match = /<file[^>]* path="([^"]+)"/.exec(user);
  if (!match) throw new Error('prompt has no file block');
  return match[1]!;
}

async function postWebhook(event: string, payload: unknown, delivery: string) {
  const body = JSON.stringify(payload);
  const signature = 'sha256=' + createHmac('sha256', webhookSecret).update(body).digest('hex');
  return fetch(`${serviceUrl}/webhooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': event,
      'x-github-delivery': delivery,
      'x-hub-signature-256': signature,
    },
    body,
  });
}

beforeAll(async () => {
  database = await createTestDatabase();
  repository = await createGitRepository({
    base: { 'src/app.ts': baseApp, 'scripts/tool.py': baseTool, 'README.md': '# Demo\n' },
    head: { 'src/app.ts': headApp, 'scripts/tool.py': headTool },
  });

  const keys = generateAppKeyPair();
  github = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  github.setInstallation({ id: installationId, account: { login: 'Codertocat', id: 21031067, type: 'User' } });
  github.addRepository({ owner: 'Codertocat', repo: 'Hello-World', id: 186853002, gitDir: repository.dir });
  github.addPullRequest({
    owner: 'Codertocat',
    repo: 'Hello-World',
    number: 2,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: 'feature',
    title: 'Update the README with new information.',
  });

  groq = await startFakeGroq();
  groq.setHandler((request) => {
    const user = request.messages.find((message) => message.role === 'user')!.content;
    return { text: proposals[pathInPrompt(user)]! };
  });
  gemini = await startFakeGemini();

  env = {
    DATABASE_URL: database.url,
    WEBHOOK_SECRET: webhookSecret,
    APP_ID: appId,
    PRIVATE_KEY: keys.privateKeyPem,
    GITHUB_API_URL: github.url,
    GROQ_API_KEY: groqKey,
    GROQ_BASE_URL: groq.url,
    GEMINI_API_KEY: geminiKey,
    GEMINI_BASE_URL: gemini.url,
  };
  service = await startServiceProcess(env);
  serviceUrl = service.url;
}, 60_000);

afterAll(async () => {
  await service?.stop();
  await Promise.all([github?.close(), groq?.close(), gemini?.close()]);
  await repository?.cleanup();
  await database?.close();
});

describe('signed pull_request webhook to metered preview', () => {
  it('analyzes, previews and meters the pull request', async () => {
    const installation = structuredClone(
      examples.find((entry) => entry.name === 'installation')!.examples.find((payload) => payload.action === 'created')!,
    );
    installation.installation.id = installationId;
    expect((await postWebhook('installation', installation, 'e2e-installation')).status).toBe(202);

    const cliEnv = { PATH: process.env.PATH, NODE_ENV: 'test', ...env };
    const token = (await runCli(['users', 'token', '--login', 'Codertocat'], cliEnv)).stdout.trim();
    expect(token).toMatch(/^fxw_/);
    await runCli(['users', 'plan', '--login', 'Codertocat', '--plan', 'pro'], cliEnv);
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${serviceUrl}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      });

    const pullRequest = structuredClone(
      examples.find((entry) => entry.name === 'pull_request')!.examples.find((payload) => payload.action === 'opened')!,
    );
    pullRequest.installation = { id: installationId };
    pullRequest.pull_request.head.sha = repository.headSha;
    pullRequest.pull_request.base.sha = repository.baseSha;
    expect((await postWebhook('pull_request', pullRequest, 'e2e-opened')).status).toBe(202);

    const run = await waitFor(async () => {
      const response = await api('/api/runs?repository=Codertocat/Hello-World&pr=2');
      const { runs } = await response.json();
      return runs[0]?.status === 'completed' ? runs[0] : undefined;
    }, { timeoutMs: 30_000, describe: () => `run to complete; output:\n${service.output()}` });
    expect(run.headSha).toBe(repository.headSha);

    const detail = await (await api(`/api/runs/${run.id}`)).json();
    const found = detail.findings.map((finding: any) => [finding.path, finding.line, finding.rule]);
    expect(found).toEqual([
      ['scripts/tool.py', 3, 'debug/python-print'],
      ['src/app.ts', 3, 'secret/hardcoded-credential'],
      ['src/app.ts', 7, 'debug/console-log'],
    ]);
    expect(JSON.stringify(detail)).not.toContain('sk_live_51HqLyjWDarjtT1zdp7dc');

    const created = await api(`/api/runs/${run.id}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: detail.findings.map((finding: any) => finding.id) }),
    });
    expect(created.status).toBe(202);
    const { id: patchRequestId } = await created.json();

    const preview = await waitFor(async () => {
      const body = await (await api(`/api/patch-requests/${patchRequestId}`)).json();
      return ['ready', 'partially_ready', 'failed'].includes(body.status) ? body : undefined;
    }, { timeoutMs: 30_000, describe: () => `preview to finish; output:\n${service.output()}` });

    expect(preview.status).toBe('ready');
    expect(preview.error).toBeNull();
    expect(preview.files.map((file: any) => [file.path, file.status])).toEqual([
      ['scripts/tool.py', 'ready'],
      ['src/app.ts', 'ready'],
    ]);
    const originals: Record<string, string> = { 'src/app.ts': headApp, 'scripts/tool.py': headTool };
    for (const file of preview.files) {
      expect(file.diff).toContain(`--- a/${file.path}`);
      expect(file.diff).toContain(`+++ b/${file.path}`);
      expect(applyPatch(originals[file.path]!, file.diff)).toBe(proposals[file.path]);
    }
    const appDiff = preview.files.find((file: any) => file.path === 'src/app.ts').diff;
    expect(appDiff).toContain("-  console.log('loaded', user);");
    expect(appDiff).toContain('+const apiKey = process.env.STRIPE_API_KEY;');

    const completions = groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
    expect(completions).toHaveLength(2);
    expect(completions.every((request) => request.apiKey === groqKey)).toBe(true);
    expect(gemini.requests).toHaveLength(0);
    const reported = completions.reduce((sum, request) => sum + request.reply!.usage!.total_tokens, 0);
    expect(preview.totalTokens).toBe(reported);

    const [user] = await database.db.select().from(users).where(eq(users.login, 'Codertocat'));
    expect(user!.plan).toBe('pro');
    expect(user!.tokensUsed).toBe(reported);
    expect(user!.tokensReserved).toBe(0);

    const ledger = await database.db
      .select()
      .from(tokenEvents)
      .where(eq(tokenEvents.patchRequestId, patchRequestId));
    expect(ledger).toHaveLength(2);
    for (const event of ledger) {
      expect(event.userId).toBe(user!.id);
      expect(event.provider).toBe('groq');
      expect(event.keySource).toBe('platform');
      expect(event.chargedTokens).toBe(event.totalTokens);
    }
    expect(ledger.reduce((sum, event) => sum + event.totalTokens, 0)).toBe(reported);

    const [stored] = await database.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId));
    expect(stored!.userId).toBe(user!.id);
  });

  it('keeps keys out of the service output', () => {
    const output = service.output();
    expect(output).toContain('"event":"job.preview.completed"');
    for (const secret of [groqKey, geminiKey, webhookSecret, 'BEGIN RSA PRIVATE KEY']) {
      expect(output).not.toContain(secret);
    }
  });
});
