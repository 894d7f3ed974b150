import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isProcessAlive } from '../../src/process-alive.ts';
import { signInThroughFakeGitHub } from '../helpers/fake-sign-in.ts';
import { waitFor } from '../helpers/process.ts';

/**
 * Runs `fixwright demo` as `npm run demo` does, as a child process, with settings in its
 * environment that the demo must ignore, and checks what it prints and that SIGINT stops
 * every process it started.
 */

const execFileAsync = promisify(execFile);

let demo: ChildProcess;
let output = '';
let errors = '';
let exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

/** Returns the first capture group of `pattern` in the demo's output. */
function capture(pattern: RegExp): string {
  const match = pattern.exec(output);
  if (!match) throw new Error(`The demo output has no match for ${pattern}:\n${output}`);
  return match[1]!;
}

beforeAll(async () => {
  demo = spawn(process.execPath, ['bin/fixwright.js', 'demo'], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TMPDIR: process.env.TMPDIR,
      // The demo must pass none of these to its service. The addresses are closed ports on
      // 127.0.0.1, so a leak makes the run fail instead of reaching anything.
      DATABASE_URL: 'postgres://nobody:secret@127.0.0.1:9/none',
      GITHUB_API_URL: 'http://127.0.0.1:9',
      GROQ_API_KEY: 'gsk_operator_key_that_must_not_be_used',
      GROQ_BASE_URL: 'http://127.0.0.1:9',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  demo.stdout!.on('data', (chunk) => (output += chunk));
  demo.stderr!.on('data', (chunk) => (errors += chunk));
  exit = new Promise((resolve) => demo.once('exit', (code, signal) => resolve({ code, signal })));
  await waitFor(
    async () => {
      if (demo.exitCode !== null) throw new Error(`the demo exited with ${demo.exitCode}`);
      return output.includes('Press Ctrl-C');
    },
    { timeoutMs: 150_000, intervalMs: 200, describe: () => `the demo to start:\n${output}\n${errors}` },
  );
}, 160_000);

afterAll(async () => {
  if (demo && demo.exitCode === null && demo.signalCode === null) {
    demo.kill('SIGINT');
    await exit;
  }
});

describe('npm run demo', () => {
  it('ignores credentials from the environment', () => {
    expect(output).toContain('Ignoring DATABASE_URL, GITHUB_API_URL, GROQ_API_KEY, GROQ_BASE_URL');
    expect(output).not.toContain('gsk_operator_key_that_must_not_be_used');
  });

  it('prints only 127.0.0.1 addresses', () => {
    const urls = output.match(/https?:\/\/[^\s"'/]+/g) ?? [];
    expect(urls.length).toBeGreaterThan(5);
    for (const url of urls) expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('writes the service log to a file', () => {
    const logPath = capture(/^Service log: (\S+) /m);
    expect(logPath).toMatch(/\/fixwright-demo-[^/]+\/service\.log$/);
    const log = readFileSync(logPath, 'utf8');
    expect(log).toContain('"event":"service.started"');
    expect(log).toContain('"event":"webhook.accepted"');
  });

  it('prints the findings of the run', () => {
    const findings = output.match(/^ {2}finding \S+ \w+ \S+(?=:)/gm);
    expect(findings).toEqual([
      '  finding src/notify.ts:1 error secret/hardcoded-credential',
      '  finding src/notify.ts:4 warning debug/console-log',
      '  finding src/notify.ts:5 warning debug/debugger',
    ]);
    expect(output).toMatch(/Report: check run "Fixwright" on [0-9a-f]{7} concluded failure with 3 annotations/);
  });

  it('prints the preview diff', () => {
    expect(output).toMatch(/Preview [0-9a-f-]{36} is ready \(\d+ tokens\)/);
    expect(output).toContain('  --- a/src/notify.ts');
    expect(output).toContain('  +++ b/src/notify.ts');
    expect(output).toContain('  -const apiKey = "sk_live_51HqLyjWDarjtT1zdp7dc";');
    expect(output).toContain('  +const apiKey = process.env.DEMO_API_KEY;');
    // Only the credential was in the preview, so the debug lines stay as context.
    expect(output).not.toContain("  -  console.log('notify', user);");
  });

  it('prints a plan command that keeps to the demo database', () => {
    const dataDir = capture(/env -u DATABASE_URL DATA_DIR=(\S+) npx fixwright users plan --login Codertocat --plan pro/);
    expect(dataDir).toContain('fixwright-demo-');
  });

  it('prints the usage of the free plan', () => {
    const used = Number(capture(/^Usage: plan free, used (\d+), remaining \d+ of 1000 tokens$/m));
    const remaining = Number(capture(/^Usage: plan free, used \d+, remaining (\d+) of 1000 tokens$/m));
    const previewTokens = Number(capture(/^Preview [0-9a-f-]{36} is ready \((\d+) tokens\)/m));
    const reported = Number(capture(/the fake Groq reported (\d+) \(/));
    const reserved = Number(capture(/the call reserved (\d+) tokens/));
    const systemPrompt = Number(capture(/the system prompt alone is (\d+) tokens/));
    expect(used).toBe(reported);
    expect(previewTokens).toBe(reported);
    expect(used + remaining).toBe(1000);
    expect(reserved).toBeLessThanOrEqual(1000);
    expect(used).toBeGreaterThan(systemPrompt);
    // The system prompt has the fix guidance for secrets alone, and the file is 162 bytes.
    expect(systemPrompt).toBe(430);
    expect(reserved).toBe(878);
    expect(used).toBe(577);
  });

  it('presses Fix with AI with the printed command', async () => {
    const token = capture(/^API token: (fxw_\S+)$/m);
    const base = capture(/^Dashboard: (\S+)$/m);
    const planCommand = capture(/^More tokens: (.+)$/m);
    const pressCommand = capture(/^ {2}(cd .* npx fixwright receive --event check_run .+)$/m);
    const shellEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR };
    await execFileAsync('sh', ['-c', planCommand], { env: shellEnv });

    const { stdout } = await execFileAsync('sh', ['-c', pressCommand], { env: shellEnv });
    const patchRequestId = /"outcome":"patch request (\S+) queued/.exec(stdout)?.[1];
    expect(patchRequestId, stdout).toBeDefined();
    const preview = await waitFor(
      async () => {
        const response = await fetch(new URL(`/api/patch-requests/${patchRequestId}`, base), {
          headers: { authorization: `Bearer ${token}` },
        });
        const body = (await response.json()) as {
          status: string;
          files: { path: string; provider: string; diff: string }[];
        };
        return body.status === 'ready' ? body : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, describe: () => `preview ${patchRequestId} to be ready` },
    );
    const [file] = preview.files;
    expect(file!.path).toBe('src/notify.ts');
    expect(file!.provider).toBe('groq');
    expect(file!.diff).toContain('+const apiKey = process.env.DEMO_API_KEY;');
    expect(file!.diff).toContain("-  console.log('notify', user);");
    expect(file!.diff).toContain('-  debugger;');
  });

  it('applies the preview with the printed token', async () => {
    const token = capture(/^API token: (fxw_\S+)$/m);
    const applyUrl = capture(/(http:\/\/127\.0\.0\.1:\d+\/api\/patch-requests\/[0-9a-f-]{36}\/apply)/);
    const response = await fetch(applyUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ mode: 'commit' }),
    });
    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(200);
    expect(body.commitSha).toMatch(/^[0-9a-f]{40}$/);
    expect(body.files).toEqual(['src/notify.ts']);

    // The fake GitHub sends pull_request.synchronize for the commit, so a run of it starts.
    const runsUrl = new URL('/api/runs?repository=Codertocat/Hello-World&pr=2', applyUrl);
    const runs = await waitFor(
      async () => {
        const listed = await fetch(runsUrl, { headers: { authorization: `Bearer ${token}` } });
        const { runs } = (await listed.json()) as {
          runs: { headSha: string; status: string; title: string }[];
        };
        return runs.length === 2 ? runs : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, describe: () => `a run of ${body.commitSha}` },
    );
    expect(runs[0]!.headSha).toBe(body.commitSha);
    expect(runs[1]!.status).toBe('superseded');
    expect(runs.map((run) => run.title)).toEqual(['Add src/notify.ts', 'Add src/notify.ts']);
  });

  it('fixes the findings with an own Gemini key', async () => {
    const token = capture(/^API token: (fxw_\S+)$/m);
    const base = capture(/^Dashboard: (\S+)$/m);
    const api = (route: string, init: RequestInit = {}) =>
      fetch(new URL(route, base), {
        ...init,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      });

    const saved = await api('/api/user/keys/gemini', {
      method: 'PUT',
      body: JSON.stringify({ key: `AIza${'k'.repeat(35)}` }),
    });
    expect(saved.status, await saved.clone().text()).toBe(201);
    const order = await api('/api/user/provider-order', {
      method: 'PUT',
      body: JSON.stringify({ order: ['gemini', 'groq'] }),
    });
    expect(order.status).toBe(200);

    // The run of the commit that the previous test applied still reports both debug lines.
    const run = await waitFor(
      async () => {
        const listed = await api('/api/runs?repository=Codertocat/Hello-World&pr=2');
        const { runs } = (await listed.json()) as { runs: { id: string; status: string }[] };
        if (runs[0]?.status !== 'completed') return undefined;
        const detail = await api(`/api/runs/${runs[0].id}`);
        return (await detail.json()) as { id: string; findings: { id: string; rule: string }[] };
      },
      { timeoutMs: 30_000, intervalMs: 200, describe: () => 'the run of the applied commit' },
    );
    expect(run.findings.map((finding) => finding.rule)).toEqual(['debug/console-log', 'debug/debugger']);

    const requested = await api(`/api/runs/${run.id}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: run.findings.map((finding) => finding.id) }),
    });
    expect(requested.status).toBe(202);
    const { id } = (await requested.json()) as { id: string };
    const preview = await waitFor(
      async () => {
        const response = await api(`/api/patch-requests/${id}`);
        const body = (await response.json()) as {
          status: string;
          files: { provider: string; diff: string; linesAdded: number; linesDeleted: number }[];
        };
        return body.status === 'ready' ? body : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, describe: () => `preview ${id} to be ready` },
    );
    const [file] = preview.files;
    expect(file!.provider).toBe('gemini');
    expect(file!.linesAdded).toBe(0);
    expect(file!.linesDeleted).toBe(2);
    expect(file!.diff).toContain("-  console.log('notify', user);");
    expect(file!.diff).toContain('-  debugger;');
    expect(file!.diff).toContain('   return send(user, apiKey);');
  });

  it('signs in to the dashboard through the fake GitHub', async () => {
    const dashboard = capture(/^Dashboard: (\S+)$/m);
    const { cookie, endUrl } = await signInThroughFakeGitHub(dashboard);
    expect(endUrl).toBe(dashboard);
    const home = await fetch(dashboard, { headers: { cookie } });
    expect(home.status).toBe(200);
    expect(await home.text()).toContain('Codertocat/Hello-World#2');

    // The tokens page lists the demo's token by the label that the demo printed.
    const label = capture(/^Created a personal access token labelled "([^"]+)" for Codertocat with /m);
    const tokens = await fetch(new URL('/tokens', dashboard), { headers: { cookie } });
    expect(tokens.status).toBe(200);
    const names = [...(await tokens.text()).matchAll(/<tr><td>([^<]*)<\/td><td><code>fxw_/g)].map((row) => row[1]);
    expect(names).toEqual([label]);
  });

  it('prints how it created the token', () => {
    expect(output).toContain(
      'Created a personal access token labelled "demo" for Codertocat with ' +
        '"npx fixwright users token --login Codertocat --name demo"\n',
    );
  });

  it('stops every process it started on SIGINT', async () => {
    const pids = {
      demo: Number(capture(/^Processes: demo pid (\d+)/m)),
      service: Number(capture(/^Processes: .*service pid (\d+)/m)),
      postgres: Number(capture(/^Processes: .*PostgreSQL pid (\d+)/m)),
    };
    const folder = capture(/^Demo folder: (\S+)/m);
    expect(pids.demo).toBe(demo.pid);
    for (const pid of Object.values(pids)) expect(isProcessAlive(pid)).toBe(true);

    demo.kill('SIGINT');
    const result = await Promise.race([
      exit,
      new Promise((resolve) => setTimeout(() => resolve('timed out'), 60_000)),
    ]);
    expect(result, `${output}\n${errors}`).toEqual({ code: 0, signal: null });
    expect(output).toContain('Stopped everything the demo started');
    expect(errors).toBe('');
    expect(isProcessAlive(pids.service)).toBe(false);
    expect(isProcessAlive(pids.postgres)).toBe(false);
    expect(existsSync(folder)).toBe(false);
  }, 70_000);
});
