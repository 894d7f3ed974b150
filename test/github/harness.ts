import { Writable } from 'node:stream';
import type { Octokit } from '@octokit/rest';
import { createGitHubApp, type GitHubApp } from '../../src/github/app.ts';
import { createLogger } from '../../src/logger.ts';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../../src/demo/fakes/github.ts';
import { createGitRepository, headBranch, type GitRepository } from '../../src/demo/git-repository.ts';

/** Shared setup of the GitHub tests: a fake GitHub that serves one repository and its app. */

export const appId = '12345';
export const owner = 'octo-org';
export const repo = 'widgets';
export const repositoryId = 4242;
export const pullNumber = 7;

let nextInstallationId = 100;

/** Log lines that pino wrote, parsed from JSON. */
export interface CapturedLogs {
  lines: Array<Record<string, unknown> & { level: number; msg: string }>;
  text(): string;
}

export function captureLogs(): { logs: CapturedLogs; destination: Writable } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  const logs: CapturedLogs = {
    get lines() {
      return chunks
        .join('')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as CapturedLogs['lines'][number]);
    },
    text: () => chunks.join(''),
  };
  return { logs, destination };
}

export interface Harness {
  fake: FakeGitHub;
  app: GitHubApp;
  repository: GitRepository;
  logs: CapturedLogs;
  installationId: number;
  octokit: Octokit;
  /** The app's private key, for a second app client against the same fake. */
  privateKeyPem: string;
  close(): Promise<void>;
}

/**
 * Starts a fake GitHub with one installation for `owner`, a repository built from `base` and
 * `head`, and pull request `pullNumber` between them. `octokit` belongs to that installation.
 */
export async function startHarness(files: {
  base: Record<string, string | Buffer>;
  head: Record<string, string | Buffer | null>;
}): Promise<Harness> {
  const keys = generateAppKeyPair();
  const fake = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  const repository = await createGitRepository(files);
  // Each harness gets its own installation, so throttling state never carries between tests.
  const installationId = nextInstallationId++;
  fake.setInstallation({ id: installationId, account: { login: owner } });
  fake.addRepository({ owner, repo, id: repositoryId, gitDir: repository.dir });
  fake.addPullRequest({
    owner,
    repo,
    number: pullNumber,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: headBranch,
    title: 'Change widgets',
  });

  const { logs, destination } = captureLogs();
  const app = createGitHubApp({
    appId,
    privateKey: keys.privateKeyPem,
    baseUrl: fake.url,
    logger: createLogger('debug', destination),
  });
  const octokit = await app.installationOctokit(installationId);
  return {
    fake,
    app,
    repository,
    logs,
    installationId,
    octokit,
    privateKeyPem: keys.privateKeyPem,
    async close() {
      await fake.close();
      await repository.cleanup();
    },
  };
}

/** Requests the fake received for `method` whose path matches `path`. */
export function requestsTo(fake: FakeGitHub, method: string, path: RegExp) {
  return fake.requests.filter((request) => request.method === method && path.test(request.path));
}
