// Starts the demo's fake GitHub (REST API and OAuth sign-in), fake Groq and fake Gemini on
// 127.0.0.1 with the demo's repository and pull request, for a Fixwright service that you run
// yourself, such as one on your own PostgreSQL with separate web and worker processes.
//
//   npx tsx examples/start-fakes.mts [--port N] > fakes.env
//
// stdout gets the service's settings as `export NAME=value` lines, so `. ./fakes.env` sets them
// in the shells of the service and of `npx fixwright receive`. Its last line sets
// FAKES_PAYLOADS, the folder of the payload files, which the service does not read. stderr
// names the fakes, the payload files to deliver and the commands that deliver them. Once the
// service has posted its check run, check_run.requested_action.json in that folder presses the
// check run's "Fix with AI" button. --port is the port of the service on 127.0.0.1 (3000 by
// default), where the fake GitHub sends `pull_request.synchronize` after an apply commits.
// SIGINT or SIGTERM stops the fakes, removes the temporary folder with the private key,
// repository and payloads, and exits 0. A second signal exits 1 at once.
//
// To build other fakes, copy this file and change it. Keep the .mts extension, or keep the copy
// in a folder whose package.json sets "type": "module". tsx compiles a .ts file outside such a
// folder to CommonJS, which rejects the top-level await below. A copy outside this repository
// must import the fakes by the absolute path of this repository's src folder.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { addFakeOAuth } from '../src/demo/fakes/github-oauth.ts';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from '../src/demo/fakes/github.ts';
import { startFakeGemini, type FakeGemini } from '../src/demo/fakes/gemini.ts';
import { startFakeGroq, type FakeGroq } from '../src/demo/fakes/groq.ts';
import { fixAction } from '../src/report/publish-check-run.ts';
import { createGitRepository, headBranch, type GitRepository } from '../src/demo/git-repository.ts';
import {
  answerFixPrompt,
  demoAccount,
  demoBaseFiles,
  demoHeadFiles,
  demoInstallationId,
  demoPullRequestNumber,
  demoPullRequestTitle,
  demoRepository,
  fixWithAiPayload,
  installationCreatedPayload,
  pullRequestOpenedPayload,
} from '../src/demo/scenario.ts';

/** Parses the command line and returns the service's port, or exits 2 on a usage error. */
function parsePort(): number {
  let text: string;
  try {
    text = parseArgs({ options: { port: { type: 'string', default: '3000' } } }).values.port!;
  } catch (error) {
    console.error(`${(error as Error).message}\nUsage: npx tsx examples/start-fakes.mts [--port N]`);
    process.exit(2);
  }
  const port = Number(text);
  if (!/^[0-9]+$/.test(text) || port < 1 || port > 65_535) {
    console.error(`Invalid --port ${JSON.stringify(text)}: give the service's port, from 1 to 65535.`);
    process.exit(2);
  }
  return port;
}

const port = parsePort();
const serviceUrl = `http://127.0.0.1:${port}`;

/** The fake GitHub accepts the JWTs of this app id only. */
const appId = '424242';
const secrets = {
  webhookSecret: randomBytes(32).toString('hex'),
  clientId: `Iv1.fakes${randomBytes(6).toString('hex')}`,
  clientSecret: randomBytes(20).toString('hex'),
  // The fake Groq accepts any key without "revoked" in it.
  groqKey: `gsk_fakes_${randomBytes(16).toString('hex')}`,
};

/** Everything started so far, which `stop` closes and removes. */
const started: {
  folder?: string;
  repository?: GitRepository;
  github?: FakeGitHub;
  groq?: FakeGroq;
  gemini?: FakeGemini;
  checkRunWatch?: NodeJS.Timeout;
} = {};

let stopping = false;

/** Closes the fakes, removes the folder and exits with `code`, or 1 when a fake fails to close. */
async function stop(code: number): Promise<never> {
  stopping = true;
  clearInterval(started.checkRunWatch);
  const closing = [started.github?.close(), started.groq?.close(), started.gemini?.close()];
  const failures = (await Promise.allSettled(closing)).filter((result) => result.status === 'rejected');
  for (const failure of failures) console.error(`A fake server failed to close: ${failure.reason}`);
  await started.repository?.cleanup();
  if (started.folder) await rm(started.folder, { recursive: true, force: true });
  console.error(`Stopped the fakes${started.folder ? ` and removed ${started.folder}` : ''}.`);
  process.exit(failures.length > 0 ? 1 : code);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    console.error(`Received ${signal}; stopping the fakes.`);
    void stop(0);
  });
}

/** Returns the fixed file for a fix prompt, or an empty file when the prompt cannot be read. */
function answerFix(provider: string, prompt: string): { text: string } {
  try {
    return answerFixPrompt(prompt);
  } catch (error) {
    console.error(`The fake ${provider} could not read a fix prompt: ${(error as Error).message}`);
    return { text: '' };
  }
}

/** Quotes `value` for a POSIX shell when it contains other characters than these. */
function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

try {
  const folder = await mkdtemp(path.join(os.tmpdir(), 'fixwright-fakes-'));
  started.folder = folder;

  const keys = generateAppKeyPair();
  const privateKeyPath = path.join(folder, 'app-private-key.pem');
  await writeFile(privateKeyPath, keys.privateKeyPem, { mode: 0o600 });

  // 1. The fake GitHub with the app's installation on the demo account, and its OAuth sign-in.
  const github = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  started.github = github;
  github.setInstallation({ id: demoInstallationId, account: demoAccount });
  const oauth = addFakeOAuth(github, { clientId: secrets.clientId, clientSecret: secrets.clientSecret });
  oauth.signInAs({ id: demoAccount.id, login: demoAccount.login, name: demoAccount.login });

  // 2. A real git repository that the fake GitHub serves, with a pull request of its two commits.
  const repository = await createGitRepository({ base: demoBaseFiles, head: demoHeadFiles, parentDir: folder });
  started.repository = repository;
  github.addRepository({ ...demoRepository, gitDir: repository.dir });
  github.addPullRequest({
    owner: demoRepository.owner,
    repo: demoRepository.repo,
    number: demoPullRequestNumber,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: headBranch,
    title: demoPullRequestTitle,
    user: demoAccount.login,
  });

  // 3. The model providers, which answer a fix prompt with the fixed file.
  const groq = await startFakeGroq();
  started.groq = groq;
  groq.setHandler((request) =>
    answerFix('Groq', request.messages.find((message) => message.role === 'user')?.content ?? ''),
  );
  const gemini = await startFakeGemini();
  started.gemini = gemini;
  gemini.setHandler((request) => answerFix('Gemini', request.userText));

  // 4. Where an apply's commit sends pull_request.synchronize, as GitHub does after a push.
  github.setWebhookTarget({ url: `${serviceUrl}/webhooks/github`, secret: secrets.webhookSecret });

  // 5. The payloads of the installation, the pull request and "Fix with AI", for `fixwright receive`.
  const installationFile = path.join(folder, 'installation.json');
  const pullRequestFile = path.join(folder, 'pull_request.json');
  await writeFile(installationFile, JSON.stringify(installationCreatedPayload()));
  const commits = { baseSha: repository.baseSha, headSha: repository.headSha, headRef: headBranch };
  await writeFile(pullRequestFile, JSON.stringify(pullRequestOpenedPayload(commits)));
  // The service creates its check run, and the fake GitHub gives it an id, only after the pull
  // request's analysis. So the "Fix with AI" payload is written once that check run exists, and
  // again for the check run of each later head, such as the one after an apply's commit.
  const fixWithAiFile = path.join(folder, 'check_run.requested_action.json');
  let fixWithAiCheckRunId = 0;
  started.checkRunWatch = setInterval(() => {
    const newest = github.checkRuns.filter((checkRun) => checkRun.app.id === Number(appId)).at(-1);
    if (!newest || newest.id === fixWithAiCheckRunId || newest.status !== 'completed') return;
    fixWithAiCheckRunId = newest.id;
    writeFile(fixWithAiFile, JSON.stringify(fixWithAiPayload(newest.id, newest.headSha))).then(
      () => console.error(`Wrote ${fixWithAiFile} for check run ${newest.id} on ${newest.headSha}.`),
      (error: Error) => console.error(`Writing ${fixWithAiFile} failed: ${error.message}`),
    );
  }, 500);

  const settings: Record<string, string> = {
    HOST: '127.0.0.1',
    PORT: String(port),
    PUBLIC_URL: serviceUrl,
    APP_ID: appId,
    PRIVATE_KEY_PATH: privateKeyPath,
    WEBHOOK_SECRET: secrets.webhookSecret,
    GITHUB_API_URL: github.url,
    GITHUB_URL: github.url,
    GITHUB_CLIENT_ID: secrets.clientId,
    GITHUB_CLIENT_SECRET: secrets.clientSecret,
    GROQ_API_KEY: secrets.groqKey,
    GROQ_BASE_URL: groq.url,
    GEMINI_BASE_URL: gemini.url,
  };
  for (const [name, value] of Object.entries(settings)) console.log(`export ${name}=${shellQuote(value)}`);
  // For the README's commands that post the payload files, and other examples built from them.
  console.log(`export FAKES_PAYLOADS=${shellQuote(folder)}`);

  const fullName = `${demoRepository.owner}/${demoRepository.repo}`;
  for (const line of [
    `Started the fake GitHub at ${github.url} (REST API, and OAuth sign-in as ${demoAccount.login}),`,
    `the fake Groq at ${groq.url} and the fake Gemini at ${gemini.url}.`,
    `${fullName} has pull request #${demoPullRequestNumber} (head ${repository.headSha}), and ` +
      `installation ${demoInstallationId} of app ${appId} covers it.`,
    'Start the service with the settings printed on stdout, then deliver the webhooks with them:',
    `  npx fixwright receive --event installation --payload ${shellQuote(installationFile)}`,
    `  npx fixwright receive --event pull_request --payload ${shellQuote(pullRequestFile)}`,
    `Once the service has posted its check run, this presses its "Fix with AI" button ` +
      `(requested action "${fixAction.identifier}"):`,
    `  npx fixwright receive --event check_run --payload ${shellQuote(fixWithAiFile)}`,
    `Press Ctrl-C to stop the fakes and remove ${folder}.`,
  ]) {
    console.error(line);
  }
} catch (error) {
  // After a signal, the step under way may fail because `stop` closed what it used.
  if (!stopping) {
    console.error(`Starting the fakes failed: ${error instanceof Error ? error.message : String(error)}`);
    await stop(1);
  }
}
