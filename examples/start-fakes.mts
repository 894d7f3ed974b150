// Starts the demo's fake GitHub (REST API and OAuth sign-in), fake Groq and fake Gemini on
// 127.0.0.1 with the demo's repository and pull request, for a Fixwright service that you run
// yourself, such as one on your own PostgreSQL with separate web and worker processes.
//
//   npx tsx examples/start-fakes.mts [--port N] [--state DIR] > fakes.env
//
// stdout gets the service's settings as `export NAME=value` lines, so `. ./fakes.env` sets them
// in the shells of the service and of `npx fixwright receive`. Its last line sets
// FAKES_PAYLOADS, the folder of the payload files, which the service does not read. stderr
// names the fakes, the payload files to deliver and the commands that deliver them. Once the
// service has posted its check run, check_run.requested_action.json in that folder presses the
// check run's "Fix with AI" button. --port is the port of the service on 127.0.0.1 (3000 by
// default), where the fake GitHub sends `pull_request.synchronize` after an apply commits.
//
// Without --state, each start makes new secrets, a new app key, new ports and a new repository
// in a temporary folder, which SIGINT or SIGTERM removes. With --state DIR, the first start
// stores them in DIR and later starts reuse them, with the commits that applies added, so a
// service that kept running goes on with the restarted fakes. A stop keeps DIR. Either way a
// stop exits 0, and a second signal more than a second after the first exits 1 at once.
//
// To build other fakes, copy this file and change it. Keep the .mts extension, or keep the copy
// in a folder whose package.json sets "type": "module". tsx compiles a .ts file outside such a
// folder to CommonJS, which rejects the top-level await below. A copy outside this repository
// must import the fakes by the absolute path of this repository's src folder.
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  newFakesSettings,
  privateKeyFile,
  readFakesState,
  writeFakesState,
  writeIssuedTokens,
  writeNewAppKey,
  type FakesSettings,
} from '../src/demo/fakes-state.ts';
import { addFakeOAuth } from '../src/demo/fakes/github-oauth.ts';
import { startFakeGitHub, type FakeGitHub } from '../src/demo/fakes/github.ts';
import { startFakeGemini, type FakeGemini } from '../src/demo/fakes/gemini.ts';
import { startFakeGroq, type FakeGroq } from '../src/demo/fakes/groq.ts';
import { fixAction } from '../src/report/publish-check-run.ts';
import {
  createGitRepository,
  headBranch,
  openGitRepository,
  type GitRepository,
} from '../src/demo/git-repository.ts';
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

const usage = 'Usage: npx tsx examples/start-fakes.mts [--port N] [--state DIR]';

/** Parses the command line and returns the service's port and the state folder, or exits 2. */
function parseCommandLine(): { port: number; stateFolder: string | undefined } {
  let values: { port: string; state?: string };
  try {
    const options = { port: { type: 'string', default: '3000' }, state: { type: 'string' } } as const;
    values = parseArgs({ options }).values as typeof values;
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
  const port = Number(values.port);
  if (!/^[0-9]+$/.test(values.port) || port < 1 || port > 65_535) {
    console.error(`Invalid --port ${JSON.stringify(values.port)}: give the service's port, from 1 to 65535.`);
    process.exit(2);
  }
  if (values.state === '') {
    console.error(`Invalid --state "": give the folder that keeps the fakes' state.\n${usage}`);
    process.exit(2);
  }
  return { port, stateFolder: values.state === undefined ? undefined : path.resolve(values.state) };
}

const { port, stateFolder } = parseCommandLine();
const serviceUrl = `http://127.0.0.1:${port}`;

/** The fake GitHub accepts the JWTs of this app id only. */
const appId = '424242';

/** Everything started so far, which `stop` closes and removes. */
const started: {
  folder?: string;
  repository?: GitRepository;
  github?: FakeGitHub;
  groq?: FakeGroq;
  gemini?: FakeGemini;
  checkRunWatch?: NodeJS.Timeout;
} = {};

/**
 * Repeats of a stop signal within this many milliseconds of the first are one stop. One Ctrl-C
 * or `kill -INT -PGID` can reach this process two or three times: from the process group, from
 * npx (npm 11 passes SIGINT and SIGTERM on to its child), and from tsx (4.23 sends the signal
 * again when this process does not confirm it within 30 ms).
 */
const repeatedSignalMs = 1000;
let stopSignalAt: number | undefined;

/**
 * Removes the temporary folder, or saves the issued tokens in the --state folder, which is kept
 * for the next start. Returns the end of the `Stopped` line.
 */
async function releaseFolder(): Promise<string> {
  if (!started.folder) return '';
  if (stateFolder) {
    if (started.github) await writeIssuedTokens(stateFolder, started.github.issuedTokens);
    return ` and kept ${stateFolder} for the next start with --state`;
  }
  await started.repository?.cleanup();
  await rm(started.folder, { recursive: true, force: true });
  return ` and removed ${started.folder}`;
}

/** Closes the fakes, removes the folder and exits with `code`, or 1 when a step fails. */
async function stop(code: number): Promise<never> {
  // A signal during the stop after a failed start is a repeat of this stop too.
  stopSignalAt ??= Date.now();
  clearInterval(started.checkRunWatch);
  const closing = [started.github?.close(), started.groq?.close(), started.gemini?.close()];
  const failures = (await Promise.allSettled(closing)).filter((result) => result.status === 'rejected');
  for (const failure of failures) console.error(`A fake server failed to close: ${failure.reason}`);
  try {
    console.error(`Stopped the fakes${await releaseFolder()}.`);
  } catch (error) {
    console.error(`Stopped the fakes, but cleaning up ${started.folder} failed: ${(error as Error).message}`);
    process.exit(1);
  }
  process.exit(failures.length > 0 ? 1 : code);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopSignalAt === undefined) {
      stopSignalAt = Date.now();
      console.error(`Received ${signal}; stopping the fakes.`);
      void stop(0);
      return;
    }
    if (Date.now() - stopSignalAt < repeatedSignalMs) return;
    console.error(`Received ${signal} again; exiting without waiting for the fakes to close.`);
    if (started.folder && !stateFolder) rmSync(started.folder, { recursive: true, force: true });
    process.exit(1);
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

/** Starts a fake on the port that `name` had before, and names the port when it is in use. */
async function onStoredPort<T>(name: string, storedPort: number, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    throw new Error(
      `Port ${storedPort} of the fake ${name}, stored in ${stateFolder}, is in use. Stop the ` +
        'program that listens there, such as fakes started earlier with this folder, or start ' +
        'with another --state folder and restart the service with the new settings.',
    );
  }
}

try {
  // 0. The secrets, the app's key and the repository: stored ones with --state, else new ones.
  const stored = stateFolder ? await readFakesState(stateFolder) : null;
  const folder = stateFolder ?? (await mkdtemp(path.join(os.tmpdir(), 'fixwright-fakes-')));
  started.folder = folder;
  const settings: FakesSettings = stored?.settings ?? newFakesSettings(appId);
  const keys = stored?.keys ?? (await writeNewAppKey(folder));
  const privateKeyPath = path.join(folder, privateKeyFile);

  // 1. The fake GitHub with the app's installation on the demo account, and its OAuth sign-in.
  const github = await onStoredPort('GitHub', settings.ports.github, () =>
    startFakeGitHub({ appId: settings.appId, publicKeyPem: keys.publicKeyPem, port: settings.ports.github }),
  );
  started.github = github;
  github.restoreTokens(stored?.tokens ?? []);
  github.setInstallation({ id: demoInstallationId, account: demoAccount });
  const oauth = addFakeOAuth(github, { clientId: settings.clientId, clientSecret: settings.clientSecret });
  oauth.signInAs({ id: demoAccount.id, login: demoAccount.login, name: demoAccount.login });

  // 2. A real git repository that the fake GitHub serves, with a pull request of its commits.
  // A stored repository keeps the commits of earlier applies, so the head is the newest of them.
  const repository = stored?.repositoryDir
    ? await openGitRepository(stored.repositoryDir)
    : await createGitRepository({ base: demoBaseFiles, head: demoHeadFiles, parentDir: folder });
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
  const groq = await onStoredPort('Groq', settings.ports.groq, () => startFakeGroq({ port: settings.ports.groq }));
  started.groq = groq;
  groq.setHandler((request) =>
    answerFix('Groq', request.messages.find((message) => message.role === 'user')?.content ?? ''),
  );
  const gemini = await onStoredPort('Gemini', settings.ports.gemini, () =>
    startFakeGemini({ port: settings.ports.gemini }),
  );
  started.gemini = gemini;
  gemini.setHandler((request) => answerFix('Gemini', request.userText));
  if (stateFolder) {
    const ports = { github: Number(new URL(github.url).port), groq: Number(new URL(groq.url).port) };
    await writeFakesState(stateFolder, {
      ...settings,
      ports: { ...ports, gemini: Number(new URL(gemini.url).port) },
    });
  }

  // 4. Where an apply's commit sends pull_request.synchronize, as GitHub does after a push.
  github.setWebhookTarget({ url: `${serviceUrl}/webhooks/github`, secret: settings.webhookSecret });

  // 5. The payloads of the installation, the pull request and "Fix with AI", for `fixwright receive`.
  // The pull request's payload carries this start's time as `updated_at`. The service orders a
  // pull request's events by that time, so the payload is newer than the runs stored before
  // the restart, such as the run of an apply's commit, and is not superseded on arrival.
  const installationFile = path.join(folder, 'installation.json');
  const pullRequestFile = path.join(folder, 'pull_request.json');
  await writeFile(installationFile, JSON.stringify(installationCreatedPayload()));
  const commits = { baseSha: repository.baseSha, headSha: repository.headSha, headRef: headBranch };
  await writeFile(pullRequestFile, JSON.stringify(pullRequestOpenedPayload({ ...commits, updatedAt: new Date() })));
  // The service creates its check run, and the fake GitHub gives it an id, only after the pull
  // request's analysis. So the "Fix with AI" payload is written once that check run exists, and
  // again for the check run of each later head, such as the one after an apply's commit.
  const fixWithAiFile = path.join(folder, 'check_run.requested_action.json');
  // The file of an earlier start names a check run that the restarted fake GitHub lacks.
  await rm(fixWithAiFile, { force: true });
  let fixWithAiCheckRunId = 0;
  let savedTokenCount = github.issuedTokens.length;
  started.checkRunWatch = setInterval(() => {
    // With --state, the tokens that the service caches stay valid after a restart.
    const tokens = github.issuedTokens;
    if (stateFolder && tokens.length !== savedTokenCount) {
      savedTokenCount = tokens.length;
      writeIssuedTokens(stateFolder, tokens).catch((error: Error) =>
        console.error(`Writing the installation tokens to ${stateFolder} failed: ${error.message}`),
      );
    }
    const newest = github.checkRuns.filter((checkRun) => checkRun.app.id === Number(settings.appId)).at(-1);
    if (!newest || newest.id === fixWithAiCheckRunId || newest.status !== 'completed') return;
    fixWithAiCheckRunId = newest.id;
    writeFile(fixWithAiFile, JSON.stringify(fixWithAiPayload(newest.id, newest.headSha))).then(
      () => console.error(`Wrote ${fixWithAiFile} for check run ${newest.id} on ${newest.headSha}.`),
      (error: Error) => console.error(`Writing ${fixWithAiFile} failed: ${error.message}`),
    );
  }, 500);

  const environment: Record<string, string> = {
    HOST: '127.0.0.1',
    PORT: String(port),
    PUBLIC_URL: serviceUrl,
    APP_ID: settings.appId,
    PRIVATE_KEY_PATH: privateKeyPath,
    WEBHOOK_SECRET: settings.webhookSecret,
    GITHUB_API_URL: github.url,
    GITHUB_URL: github.url,
    GITHUB_CLIENT_ID: settings.clientId,
    GITHUB_CLIENT_SECRET: settings.clientSecret,
    GROQ_API_KEY: settings.groqKey,
    GROQ_BASE_URL: groq.url,
    GEMINI_BASE_URL: gemini.url,
  };
  for (const [name, value] of Object.entries(environment)) console.log(`export ${name}=${shellQuote(value)}`);
  // For the README's commands that post the payload files, and other examples built from them.
  console.log(`export FAKES_PAYLOADS=${shellQuote(folder)}`);

  const fullName = `${demoRepository.owner}/${demoRepository.repo}`;
  for (const line of [
    `Started the fake GitHub at ${github.url} (REST API, and OAuth sign-in as ${demoAccount.login}),`,
    `the fake Groq at ${groq.url} and the fake Gemini at ${gemini.url}.`,
    `${fullName} has pull request #${demoPullRequestNumber} (head ${repository.headSha}), and ` +
      `installation ${demoInstallationId} of app ${settings.appId} covers it.`,
    'Start the service with the settings printed on stdout, then deliver the webhooks with them:',
    `  npx fixwright receive --event installation --payload ${shellQuote(installationFile)}`,
    `  npx fixwright receive --event pull_request --payload ${shellQuote(pullRequestFile)}`,
    `Once the service has posted its check run, this presses its "Fix with AI" button ` +
      `(requested action "${fixAction.identifier}"):`,
    `  npx fixwright receive --event check_run --payload ${shellQuote(fixWithAiFile)}`,
    stateFolder
      ? `Press Ctrl-C to stop the fakes. ${folder} keeps their state for the next start with --state.`
      : `Press Ctrl-C to stop the fakes and remove ${folder}.`,
  ]) {
    console.error(line);
  }
} catch (error) {
  // After a signal, the step under way may fail because `stop` closed what it used.
  if (stopSignalAt === undefined) {
    console.error(`Starting the fakes failed: ${error instanceof Error ? error.message : String(error)}`);
    await stop(1);
  }
}
