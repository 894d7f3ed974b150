// Runs examples/start-fakes.mts with tsx, as the README shows. A service started with the
// settings it prints analyzes the pull request on the fake GitHub and previews a fix through
// the fake Groq. SIGINT or SIGTERM stops the fakes and removes their folder. A copy outside the
// repository runs too, because its .mts extension makes tsx load it as an ES module.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
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

/** Runs `tsx SCRIPT ARGS` in `cwd` and waits until it prints that the fakes run. */
async function startExample(script: string, args: string[], cwd = repositoryRoot): Promise<ExampleProcess> {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR };
  const child = spawn(process.execPath, [tsxPath, script, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
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

    const token = await runCliToExit(
      ['users', 'token', '--login', 'Codertocat'],
      cliEnv({ DATABASE_URL: database.url }),
      { timeoutMs: 30_000 },
    );
    expect(token.code, token.stderr).toBe(0);
    const api = (route: string, init: RequestInit = {}) =>
      fetch(`${service!.url}${route}`, {
        ...init,
        headers: { authorization: `Bearer ${token.stdout.trim()}`, 'content-type': 'application/json' },
      });

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
    const requested = await api(`/api/runs/${run.id}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: [credential.id] }),
    });
    expect(requested.status).toBe(202);
    const { id } = (await requested.json()) as { id: string };
    const preview = await waitFor(
      async () => {
        const body = (await (await api(`/api/patch-requests/${id}`)).json()) as {
          status: string;
          totalTokens: number;
          chargedTokens: number;
          ownKeyTokens: number;
          files: { provider: string; keySource: string | null; diff: string }[];
        };
        return ['ready', 'partially_ready', 'failed'].includes(body.status) ? body : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, describe: () => `preview ${id} to finish` },
    );
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
      'Usage: npx tsx examples/start-fakes.mts [--port N]',
      '',
    ]);
  }, 30_000);
});
