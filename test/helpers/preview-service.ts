import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { startFakeGemini, type FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createGitRepository, type GitRepository } from '../../src/demo/git-repository.ts';
import { runCli, waitFor } from './process.ts';
import type { ServiceProcess } from './service.ts';
import { examplePayload, examplePullRequestEvent, postSignedWebhook } from './webhooks.ts';

const webhookSecret = 'preview-service-webhook-secret';
const installationId = 9200;
const repository = 'Codertocat/Hello-World';
const pullRequestNumber = 2;

const baseFile = `export function add(a: number, b: number) {
  return a + b;
}
`;
const headFile = `export function add(a: number, b: number) {
  console.log('adding', a, b);
  return a + b;
}
`;

/** The path of the pull request's one changed file, which has one finding. */
export const previewPath = 'src/add.ts';

/** The fix that the fake Groq returns for `previewPath`. */
export const fixedFile = baseFile;

/**
 * Fake GitHub with one pull request that adds a `console.log` to `previewPath`, a fake Groq and
 * a fake Gemini, and the service settings that point at them. `env` has no database setting.
 */
export interface PreviewFakes {
  github: FakeGitHub;
  groq: FakeGroq;
  gemini: FakeGemini;
  repository: GitRepository;
  env: NodeJS.ProcessEnv;
  close(): Promise<void>;
}

export async function startPreviewFakes(): Promise<PreviewFakes> {
  const gitRepository = await createGitRepository({
    base: { [previewPath]: baseFile, 'README.md': '# Demo\n' },
    head: { [previewPath]: headFile },
  });
  const keys = generateAppKeyPair();
  const appId = '31338';
  const github = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  const [owner, repo] = repository.split('/') as [string, string];
  github.setInstallation({ id: installationId, account: { login: owner, id: 21031067, type: 'User' } });
  github.addRepository({ owner, repo, id: 186853002, gitDir: gitRepository.dir });
  github.addPullRequest({
    owner,
    repo,
    number: pullRequestNumber,
    baseSha: gitRepository.baseSha,
    headSha: gitRepository.headSha,
    headRef: 'feature',
    title: 'Log the sums',
  });
  const groq = await startFakeGroq();
  const gemini = await startFakeGemini();
  return {
    github,
    groq,
    gemini,
    repository: gitRepository,
    env: {
      WEBHOOK_SECRET: webhookSecret,
      APP_ID: appId,
      PRIVATE_KEY: keys.privateKeyPem,
      GITHUB_API_URL: github.url,
      GROQ_API_KEY: 'gsk_platform_preview_service_key_0123',
      GROQ_BASE_URL: groq.url,
      GEMINI_API_KEY: 'AIzaPlatformPreviewServiceKey0123',
      GEMINI_BASE_URL: gemini.url,
    },
    async close() {
      await Promise.all([github.close(), groq.close(), gemini.close()]);
      await gitRepository.cleanup();
    },
  };
}

/**
 * Delivers the installation and the pull request to `service`, waits for the analysis and its
 * report, moves the installation's owner to the pro plan and requests a preview of the one
 * finding. `env` is the service's environment, which the `users` commands use too. Returns the
 * patch request id.
 */
export async function requestPreview(
  service: ServiceProcess,
  fakes: PreviewFakes,
  env: NodeJS.ProcessEnv,
): Promise<string> {
  const app = { request: (path: string, init: RequestInit) => fetch(`${service.url}${path}`, init) };
  const deliver = async (event: string, payload: Record<string, unknown>, deliveryId: string) => {
    const response = await postSignedWebhook(app, { secret: webhookSecret, event, deliveryId, payload });
    if (response.status !== 202) throw new Error(`the ${event} delivery got ${response.status}`);
  };
  const installation = examplePayload('installation', 'created', installationId);
  await deliver('installation', installation, 'preview-installation');

  const cliEnv = { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'test', ...env };
  const token = (await runCli(['users', 'token', '--login', 'Codertocat'], cliEnv)).stdout.trim();
  await runCli(['users', 'plan', '--login', 'Codertocat', '--plan', 'pro'], cliEnv);
  const api = async (path: string, init: RequestInit = {}) => {
    const response = await fetch(`${service.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    });
    return response.json() as Promise<any>;
  };

  const opened = examplePullRequestEvent('opened', {
    installationId,
    repositoryId: 186853002,
    repository,
    number: pullRequestNumber,
  });
  opened.pull_request.head.sha = fakes.repository.headSha;
  opened.pull_request.base.sha = fakes.repository.baseSha;
  await deliver('pull_request', opened, 'preview-opened');

  const run = await waitFor(
    async () => {
      const { runs } = await api(`/api/runs?repository=${repository}&pr=${pullRequestNumber}`);
      return runs[0]?.status === 'completed' ? runs[0] : undefined;
    },
    { timeoutMs: 30_000, describe: () => `the analysis to complete; output:\n${service.output()}` },
  );
  // The report's transaction and lock then no longer run when a test stops the database.
  await waitFor(async () => serviceEvents(service.output(), 'report.comment_created').length === 1, {
    timeoutMs: 30_000,
    describe: () => `the report to post its comment; output:\n${service.output()}`,
  });
  const { findings } = await api(`/api/runs/${run.id}`);
  if (findings.length !== 1) throw new Error(`expected 1 finding, got ${JSON.stringify(findings)}`);
  const created = await api(`/api/runs/${run.id}/patch-requests`, {
    method: 'POST',
    body: JSON.stringify({ findingIds: [findings[0].id] }),
  });
  return created.id as string;
}

/** Returns the output lines of a service whose `event` field is `event`, parsed. */
export function serviceEvents(output: string, event: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((line) => line.includes(`"event":"${event}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
