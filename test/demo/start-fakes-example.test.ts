// Runs examples/start-fakes.mts with tsx, as the README shows. A service started with the
// settings it prints analyzes the pull request on the fake GitHub and previews a fix through
// the fake Groq. SIGINT or SIGTERM stops the fakes and removes their folder. A copy outside the
// repository runs too, because its .mts extension makes tsx load it as an ES module. With
// --state, a restart reuses the secrets, ports, key and repository, so a running service goes on.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { commitOnBranch } from '../../src/demo/git-repository.ts';
import { demoFilePath, demoHeadFiles } from '../../src/demo/scenario.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { signInThroughFakeGitHub } from '../helpers/fake-sign-in.ts';
import { cliEnv, runCliToExit, waitFor } from '../helpers/process.ts';
import { startServiceProcess, type ServiceProcess } from '../helpers/service.ts';

const repositoryRoot = path.resolve(import.meta.dirname, '../..');
const examplePath = path.join(repositoryRoot, 'examples/start-fakes.mts');
/** The program that `npx tsx` runs. */
const tsxPath = path.join(repositoryRoot, 'node_modules/.bin/tsx');

interface ExampleProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running: ExampleProcess[] = [];
const folders: string[] = [];
let database: TestDatabase | undefined;
let service: ServiceProcess | undefined;

afterEach(async () => {
  await service?.stop('SIGKILL');
  service = undefined;
  // A test that failed before its signal leaves the fakes running.
  for (const example of running.splice(0)) {
    if (example.child.exitCode === null && example.child.signalCode === null) example.child.kill('SIGTERM');
    await example.exit;
  }
});

afterAll(async () => {
  await database?.close();
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

/**
 * Runs `tsx SCRIPT ARGS` in `cwd` and waits until it prints that the fakes run. `detached`
 * starts it in a process group of its own, as a shell starts a foreground job.
 */
async function startExample(
  script: string,
  args: string[],
  cwd = repositoryRoot,
  detached = false,
): Promise<ExampleProcess> {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR };
  const child = spawn(process.execPath, [tsxPath, script, ...args], {
    cwd,
    env,
    detached,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  const example = { child, stdout: () => stdout, stderr: () => stderr, exit };
  running.push(example);
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`the example exited with ${child.exitCode}`);
      return stderr.includes('Press Ctrl-C');
    },
    { timeoutMs: 60_000, describe: () => `the fakes to start; output:\n${stdout}${stderr}` },
  );
  return example;
}

/** Reads the `export NAME=value` lines of stdout, which hold no quoted values here. */
function parseSettings(stdout: string): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const line of stdout.trimEnd().split('\n')) {
    const match = /^export ([A-Z_]+)=(\S+)$/.exec(line);
    if (!match) throw new Error(`Not an export line: ${JSON.stringify(line)}`);
    settings[match[1]!] = match[2]!;
  }
  return settings;
}

/** Returns the folder that the example named in its last line, which it removed on stop. */
function removedFolder(stderr: string): string {
  const match = /^Stopped the fakes and removed (\S+)\.$/m.exec(stderr);
  if (!match) throw new Error(`The example did not report its stop:\n${stderr}`);
  return match[1]!;
}

/** Sends `signal` to the example and returns its exit, which must come within 30 s. */
async function stopExample(example: ExampleProcess, signal: NodeJS.Signals) {
  example.child.kill(signal);
  const timeout = new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), 30_000).unref());
  return Promise.race([example.exit, timeout]);
}

/** Creates an API token for Codertocat and returns a fetch of the service's API with it. */
async function serviceApi(databaseUrl: string) {
  const token = await runCliToExit(['users', 'token', '--login', 'Codertocat'], cliEnv({ DATABASE_URL: databaseUrl }), {
    timeoutMs: 30_000,
  });
  expect(token.code, token.stderr).toBe(0);
  return (route: string, init: RequestInit = {}) =>
    fetch(`${service!.url}${route}`, {
      ...init,
      headers: { authorization: `Bearer ${token.stdout.trim()}`, 'content-type': 'application/json' },
    });
}

type ServiceApi = Awaited<ReturnType<typeof serviceApi>>;

/** Requests a preview of finding `findingId` of run `runId` and returns it once it ends. */
async function previewFinding(api: ServiceApi, runId: string, findingId: string) {
  const requested = await api(`/api/runs/${runId}/patch-requests`, {
    method: 'POST',
    body: JSON.stringify({ findingIds: [findingId] }),
  });
  expect(requested.status).toBe(202);
  const { id } = (await requested.json()) as { id: string };
  return waitFor(
    async () => {
      const body = (await (await api(`/api/patch-requests/${id}`)).json()) as {
        status: string;
        error: string | null;
        totalTokens: number;
        chargedTokens: number;
        ownKeyTokens: number;
        files: { provider: string; keySource: string | null; diff: string }[];
      };
      return ['ready', 'partially_ready', 'failed', 'cancelled'].includes(body.status) ? body : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200, describe: () => `preview ${id} to finish` },
  );
}

describe('examples/start-fakes.mts', () => {
  it('prints settings a service can use', async () => {
    const port = await findFreePort();
    const example = await startExample(examplePath, ['--port', String(port)]);
    const settings = parseSettings(example.stdout());

    expect(Object.keys(settings)).toEqual([
      'HOST',
      'PORT',
      'PUBLIC_URL',
      'APP_ID',
      'PRIVATE_KEY_PATH',
      'WEBHOOK_SECRET',
      'GITHUB_API_URL',
      'GITHUB_URL',
      'GITHUB_CLIENT_ID',
      'GITHUB_CLIENT_SECRET',
      'GROQ_API_KEY',
      'GROQ_BASE_URL',
      'GEMINI_BASE_URL',
      'FAKES_PAYLOADS',
    ]);
    expect(settings.PORT).toBe(String(port));
    expect(settings.PUBLIC_URL).toBe(`http://127.0.0.1:${port}`);
    for (const name of ['GITHUB_API_URL', 'GROQ_BASE_URL', 'GEMINI_BASE_URL']) {
      expect(settings[name], name).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    }
    expect(await readFile(settings.PRIVATE_KEY_PATH!, 'utf8')).toContain('-----BEGIN RSA PRIVATE KEY-----');

    database = await createTestDatabase();
    service = await startServiceProcess({ ...settings, DATABASE_URL: database.url }, port);

    // The printed receive commands deliver the installation and the pull request.
    const receives = [...example.stderr().matchAll(/^ {2}npx fixwright (receive .+)$/gm)].map((match) =>
      match[1]!.split(' '),
    );
    expect(receives.map((args) => args.at(-1))).toEqual([
      path.join(settings.FAKES_PAYLOADS!, 'installation.json'),
      path.join(settings.FAKES_PAYLOADS!, 'pull_request.json'),
      path.join(settings.FAKES_PAYLOADS!, 'check_run.requested_action.json'),
    ]);
    expect(receives[2]!.slice(0, 3)).toEqual(['receive', '--event', 'check_run']);
    for (const args of receives.slice(0, 2)) {
      const result = await runCliToExit(args, cliEnv(settings), { timeoutMs: 30_000 });
      expect(result.code, result.stderr).toBe(0);
    }

    const api = await serviceApi(database.url);

    // The service reads the pull request from the fake GitHub with the app's key.
    const run = await waitFor(
      async () => {
        const listed = await api('/api/runs?repository=Codertocat/Hello-World&pr=2');
        const { runs } = (await listed.json()) as { runs: { id: string; status: string; error: string | null }[] };
        if (runs[0]?.status === 'failed') throw new Error(`The run failed: ${runs[0].error}`);
        return runs[0]?.status === 'completed' ? runs[0] : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, describe: () => `the run to complete; service output:\n${service!.output()}` },
    );
    const { findings } = (await (await api(`/api/runs/${run.id}`)).json()) as {
      findings: { id: string; rule: string }[];
    };
    expect(findings.map((finding) => finding.rule)).toEqual([
      'secret/hardcoded-credential',
      'debug/console-log',
      'debug/debugger',
    ]);

    // The platform Groq key and base URL reach the fake Groq, which returns the fixed file.
    const credential = findings.find((finding) => finding.rule === 'secret/hardcoded-credential')!;
    const preview = await previewFinding(api, run.id, credential.id);
    expect(preview.status).toBe('ready');
    expect(preview.files[0]!.provider).toBe('groq');
    expect(preview.files[0]!.keySource).toBe('platform');
    expect(preview.chargedTokens).toBe(preview.totalTokens);
    expect(preview.chargedTokens).toBeGreaterThan(0);
    expect(preview.ownKeyTokens).toBe(0);
    expect(preview.files[0]!.diff).toContain('+const apiKey = process.env.DEMO_API_KEY;');

    // The "Fix with AI" payload names the check run that the service posted on the head commit.
    const { checkRunId, headSha } = (await (await api(`/api/runs/${run.id}`)).json()) as {
      checkRunId: number;
      headSha: string;
    };
    const fixWithAiFile = receives[2]!.at(-1)!;
    const press = await waitFor(
      async () => (existsSync(fixWithAiFile) ? JSON.parse(await readFile(fixWithAiFile, 'utf8')) : undefined),
      { timeoutMs: 10_000, intervalMs: 100, describe: () => `${fixWithAiFile}; stderr:\n${example.stderr()}` },
    );
    expect(press.action).toBe('requested_action');
    expect(press.requested_action).toEqual({ identifier: 'fix' });
    expect(press.check_run.id).toBe(checkRunId);
    expect(press.check_run.head_sha).toBe(headSha);
    expect(press.installation).toEqual({ id: 957387 });
    expect(press.repository.full_name).toBe('Codertocat/Hello-World');
    expect(example.stderr()).toContain(`Wrote ${fixWithAiFile} for check run ${checkRunId} on ${headSha}.\n`);

    // The free plan has too few tokens left for the other findings, so the owner moves to pro.
    const plan = await runCliToExit(
      ['users', 'plan', '--login', 'Codertocat', '--plan', 'pro'],
      cliEnv({ DATABASE_URL: database.url }),
      { timeoutMs: 30_000 },
    );
    expect(plan.code, plan.stderr).toBe(0);
    const pressed = await runCliToExit(receives[2]!, cliEnv(settings), { timeoutMs: 30_000 });
    expect(pressed.code, pressed.stderr).toBe(0);
    expect(pressed.stdout).toMatch(/"outcome":"patch request [0-9a-f-]{36} queued for run /);

    // The OAuth client settings sign in through the fake GitHub.
    const { cookie, endUrl } = await signInThroughFakeGitHub(`${service.url}/`);
    expect(endUrl).toBe(`${service.url}/`);
    const home = await fetch(endUrl, { headers: { cookie } });
    expect(home.status).toBe(200);
    expect(await home.text()).toContain('Codertocat/Hello-World#2');

    // The fake Gemini returns Gemini's model list, which the key check of own keys reads.
    const models = await fetch(`${settings.GEMINI_BASE_URL}/v1beta/models`, {
      headers: { 'x-goog-api-key': `AIza${'k'.repeat(35)}` },
    });
    expect(models.status).toBe(200);
    expect(((await models.json()) as { models: unknown[] }).models.length).toBeGreaterThan(0);

    await service.stop('SIGTERM');
    service = undefined;
    expect(await stopExample(example, 'SIGINT')).toEqual({ code: 0, signal: null });
    const folder = removedFolder(example.stderr());
    expect(path.dirname(settings.PRIVATE_KEY_PATH!)).toBe(folder);
    expect(settings.FAKES_PAYLOADS).toBe(folder);
    expect(existsSync(folder)).toBe(false);
    await expect(fetch(settings.GITHUB_API_URL!)).rejects.toThrow();
  }, 120_000);

  it('runs as a copy outside the repository', async () => {
    const outside = await mkdtemp(path.join(os.tmpdir(), 'fixwright-fakes-copy-'));
    folders.push(outside);
    const source = await readFile(examplePath, 'utf8');
    const copy = path.join(outside, 'my-fakes.mts');
    await writeFile(copy, source.replaceAll("from '../src/", `from '${repositoryRoot}/src/`));

    const port = await findFreePort();
    const example = await startExample(copy, ['--port', String(port)], outside);
    const settings = parseSettings(example.stdout());

    expect(settings.PUBLIC_URL).toBe(`http://127.0.0.1:${port}`);
    expect(await stopExample(example, 'SIGTERM')).toEqual({ code: 0, signal: null });
    expect(example.stderr()).toContain('Received SIGTERM; stopping the fakes.\n');
    expect(existsSync(removedFolder(example.stderr()))).toBe(false);
  }, 90_000);

  /** Runs the example with `args`, which must make it exit, and returns its status and stderr. */
  async function runToExit(args: string[]) {
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR };
    const child = spawn(process.execPath, [tsxPath, examplePath, ...args], { env });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise((resolve) => child.once('close', resolve));
    return { code, stderr };
  }

  it('keeps its state across restarts', async () => {
    const stateFolder = path.join(await mkdtemp(path.join(os.tmpdir(), 'fixwright-fakes-state-')), 'state');
    folders.push(path.dirname(stateFolder));
    const port = await findFreePort();
    const args = ['--port', String(port), '--state', stateFolder];
    const first = await startExample(examplePath, args);
    const settings = parseSettings(first.stdout());
    expect(settings.FAKES_PAYLOADS).toBe(stateFolder);
    expect(path.dirname(settings.PRIVATE_KEY_PATH!)).toBe(stateFolder);
    const pullRequestFile = path.join(stateFolder, 'pull_request.json');
    const firstPayload = JSON.parse(await readFile(pullRequestFile, 'utf8'));

    database = await createTestDatabase();
    service = await startServiceProcess({ ...settings, DATABASE_URL: database.url }, port);
    for (const file of ['installation.json', 'pull_request.json']) {
      const event = file === 'installation.json' ? 'installation' : 'pull_request';
      const result = await runCliToExit(
        ['receive', '--event', event, '--payload', path.join(stateFolder, file)],
        cliEnv(settings),
        { timeoutMs: 30_000 },
      );
      expect(result.code, result.stderr).toBe(0);
    }
    const api = await serviceApi(database.url);
    type ListedRun = { id: string; status: string; headSha: string; error: string | null };
    const completedRunOf = (headSha: string) =>
      waitFor(
        async () => {
          const listed = await api('/api/runs?repository=Codertocat/Hello-World&pr=2');
          const { runs } = (await listed.json()) as { runs: ListedRun[] };
          const run = runs.find((candidate) => candidate.headSha === headSha);
          if (run?.status === 'failed' || run?.status === 'superseded') {
            throw new Error(`The run of ${headSha} is ${run.status}: ${run.error}`);
          }
          return run?.status === 'completed' ? run : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200, describe: () => `the run of ${headSha}; service output:\n${service!.output()}` },
      );
    const firstRun = await completedRunOf(firstPayload.pull_request.head.sha);

    expect(await stopExample(first, 'SIGINT')).toEqual({ code: 0, signal: null });
    expect(first.stderr()).toContain(`Stopped the fakes and kept ${stateFolder} for the next start with --state.\n`);
    // An apply's commit on the pull request's branch, as the fake GitHub writes it.
    const repositoryDir = (await readdir(stateFolder)).find((entry) => entry.startsWith('fixwright-git-'))!;
    const newHead = await commitOnBranch(path.join(stateFolder, repositoryDir), 'feature', {
      [demoFilePath]: `${demoHeadFiles[demoFilePath]}console.log('again');\n`,
    });

    const second = await startExample(examplePath, args);
    expect(parseSettings(second.stdout())).toEqual(settings);
    const secondPayload = JSON.parse(await readFile(pullRequestFile, 'utf8'));
    expect(secondPayload.pull_request.head.sha).toBe(newHead);
    expect(Date.parse(secondPayload.pull_request.updated_at)).toBeGreaterThanOrEqual(
      Date.parse(firstPayload.pull_request.updated_at),
    );
    expect(Date.parse(firstPayload.pull_request.updated_at)).toBeGreaterThan(Date.parse('2026-01-01T00:00:00Z'));

    // The service kept running with the same settings and its cached installation token.
    const resent = await runCliToExit(
      ['receive', '--event', 'pull_request', '--payload', pullRequestFile],
      cliEnv(settings),
      { timeoutMs: 30_000 },
    );
    expect(resent.code, resent.stderr).toBe(0);
    expect(resent.stdout).not.toContain('Superseded on arrival');
    const newRun = await completedRunOf(newHead);
    const older = (await (await api(`/api/runs/${firstRun.id}`)).json()) as { status: string };
    expect(older.status).toBe('superseded');

    // A preview on the new run passes the head check against the restarted fake GitHub.
    const { findings } = (await (await api(`/api/runs/${newRun.id}`)).json()) as {
      findings: { id: string; rule: string }[];
    };
    const credential = findings.find((finding) => finding.rule === 'secret/hardcoded-credential')!;
    const preview = await previewFinding(api, newRun.id, credential.id);
    expect(preview.status).toBe('ready');
    expect(preview.error).toBeNull();

    await service.stop('SIGTERM');
    service = undefined;
    expect(await stopExample(second, 'SIGTERM')).toEqual({ code: 0, signal: null });
    expect(existsSync(settings.PRIVATE_KEY_PATH!)).toBe(true);
  }, 180_000);

  it('stops once on repeated group signals', async () => {
    const port = await findFreePort();
    const example = await startExample(examplePath, ['--port', String(port)], repositoryRoot, true);
    const settings = parseSettings(example.stdout());

    // A Ctrl-C reaches every process of the group, and npx sends its child one more.
    process.kill(-example.child.pid!, 'SIGINT');
    await new Promise((resolve) => setTimeout(resolve, 10));
    process.kill(-example.child.pid!, 'SIGINT');

    expect(await example.exit).toEqual({ code: 0, signal: null });
    expect(example.stderr().match(/Received SIGINT; stopping the fakes\./g)).toHaveLength(1);
    expect(removedFolder(example.stderr())).toBe(settings.FAKES_PAYLOADS);
    expect(existsSync(settings.FAKES_PAYLOADS!)).toBe(false);
  }, 60_000);

  it('rejects a state folder of other files', async () => {
    const folder = await mkdtemp(path.join(os.tmpdir(), 'fixwright-fakes-other-'));
    folders.push(folder);
    await mkdir(path.join(folder, 'notes'));
    const { code, stderr } = await runToExit(['--state', folder]);

    expect(code).toBe(1);
    expect(stderr).toContain(
      `Starting the fakes failed: The --state folder ${folder} is not empty and has no fakes.json, ` +
        'so it is not a folder of the fakes. Give a new or empty folder.\n',
    );
    expect(await readdir(folder)).toEqual(['notes']);
  }, 30_000);

  it('rejects an invalid port', async () => {
    const { code, stderr } = await runToExit(['--port', '70000']);

    expect(code).toBe(2);
    expect(stderr).toBe('Invalid --port "70000": give the service\'s port, from 1 to 65535.\n');
  }, 30_000);

  it('prints usage below an unknown option', async () => {
    const { code, stderr } = await runToExit(['--prot', '3000']);

    expect(code).toBe(2);
    expect(stderr.split('\n')).toEqual([
      expect.stringContaining("Unknown option '--prot'"),
      'Usage: npx tsx examples/start-fakes.mts [--port N] [--state DIR]',
      '',
    ]);
  }, 30_000);
});
