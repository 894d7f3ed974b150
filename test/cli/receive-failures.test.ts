// fixwright receive against servers that stall, respond with the wrong thing or are named wrongly,
// and with bad input: each case exits 1 (failed delivery) or 2 (usage error) with a message.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve } from '@hono/node-server';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { loopbackUnavailableReason } from '../helpers/ipv6-loopback.ts';
import { skipWithReason } from '../helpers/skip.ts';
import { serveTestApp } from '../helpers/web.ts';
import { examplePayload } from '../helpers/webhooks.ts';

const secret = 'receive-test-secret';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  killed: boolean;
}

let dir: string;
let payload: string;
let context: TestContext;
let fixwright: Awaited<ReturnType<typeof serveTestApp>>;
let fixwrightBase: string;
const servers: Server[] = [];

/**
 * Runs `fixwright ARGS`, killing it by pid after `limitMs`, and returns what it printed. The
 * default leaves room for a start through tsx on a busy machine, which took over 8 s at a load
 * average of 7.
 */
function runFixwright(
  args: string[],
  limitMs = 25_000,
  env: Record<string, string> = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/fixwright.js', ...args], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        TMPDIR: process.env.TMPDIR,
        NODE_ENV: 'test',
        WEBHOOK_SECRET: secret,
        ...env,
      },
      stdio: 'pipe',
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, killed });
    });
  });
}

function receive(url: string, extra: string[] = [], file = payload, limitMs?: number) {
  return runFixwright(
    ['receive', '--event', 'ping', '--payload', file, '--url', url, ...extra],
    limitMs,
  );
}

async function startServer(
  handler: (request: IncomingMessage, response: ServerResponse) => void,
): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fixwright-receive-'));
  payload = path.join(dir, 'payload.json');
  await writeFile(payload, JSON.stringify({ zen: 'Design for failure.', hook_id: 7 }));
  context = await createTestContext({ WEBHOOK_SECRET: secret });
  fixwright = await serveTestApp(context);
  fixwrightBase = fixwright.url;
});

afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  await fixwright?.close();
  await context?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('receive against slow servers', () => {
  it('gives up on a server that never answers', async () => {
    const url = await startServer(() => {
      // Reads the request and never responds.
    });
    const result = await receive(`${url}/webhooks/github`, ['--timeout', '2'], payload, 25_000);

    expect(result.killed).toBe(false);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`Timed out after 2 s waiting for ${url}/webhooks/github to respond.`);
  }, 30_000);

  it('gives up on a body that never ends', async () => {
    const url = await startServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write('{"delivery":');
    });
    const result = await receive(`${url}/webhooks/github`, ['--timeout', '2'], payload, 25_000);

    expect(result.killed).toBe(false);
    expect(result.code).toBe(1);
  }, 30_000);
});

describe('receive against wrong answers', () => {
  it('names a redirect', async () => {
    const url = await startServer((_request, response) => {
      response.writeHead(302, { location: '/login' });
      response.end();
    });
    const result = await receive(`${url}/`);

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('redirected to /login (302 Found)');
    expect(result.stderr).toContain(`Post to ${url}/webhooks/github instead.`);
  });

  it('names an HTML answer', async () => {
    const url = await startServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end('<html>hi</html>');
    });
    const result = await receive(`${url}/webhooks/github`);

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('returned 200 OK with text/html');
  });

  it('rejects JSON naming another delivery', async () => {
    const url = await startServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"delivery":"someone-else"}');
    });
    const result = await receive(`${url}/webhooks/github`, ['--delivery', 'mine']);

    expect(result.code).toBe(1);
  });

  it('rejects invalid JSON declared as JSON', async () => {
    const url = await startServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{not json');
    });
    const result = await receive(`${url}/webhooks/github`);

    expect(result.code).toBe(1);
  });
});

describe('receive with invalid input', () => {
  it('rejects a payload that is not JSON', async () => {
    const file = path.join(dir, 'not-json.json');
    await writeFile(file, 'zen=1');
    const result = await receive(`${fixwrightBase}/webhooks/github`, [], file);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('the file is not valid JSON');
  });

  it('rejects a UTF-16 payload by its encoding', async () => {
    const file = path.join(dir, 'utf16.json');
    const text = JSON.stringify({ zen: 'Design for failure.' });
    await writeFile(file, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]));
    const result = await receive(`${fixwrightBase}/webhooks/github`, [], file);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('the file is UTF-16 text; save it as UTF-8');
  });

  it('rejects a directory as payload', async () => {
    const result = await receive(`${fixwrightBase}/webhooks/github`, [], dir);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      `Invalid --payload: ${JSON.stringify(dir)} is a directory, not a regular file.`,
    );
  });

  it('rejects a device as payload', async () => {
    const result = await receive(`${fixwrightBase}/webhooks/github`, [], '/dev/zero');

    expect(result.killed).toBe(false);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'Invalid --payload: "/dev/zero" is a character device, not a regular file. Give a JSON ' +
        "payload file of at most 26214400 bytes, the webhook endpoint's limit (GitHub's limit of 25 MB).",
    );
  });

  it('rejects a FIFO as payload', async () => {
    const fifo = path.join(dir, 'payload-pipe');
    execFileSync('mkfifo', [fifo]);
    const result = await receive(`${fixwrightBase}/webhooks/github`, [], fifo);

    expect(result.killed).toBe(false);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`Invalid --payload: ${JSON.stringify(fifo)} is a FIFO (named pipe)`);
  });

  it('rejects an unknown event', async () => {
    const result = await runFixwright([
      'receive',
      '--event',
      'pull-request',
      '--payload',
      payload,
      '--url',
      `${fixwrightBase}/webhooks/github`,
    ]);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('Did you mean "pull_request"?');
  });

  it.each([
    ['check_run', 'pull_request', 'opened', 'a pull_request', 'a check_run'],
    ['pull_request', 'check_run', 'requested_action', 'a check_run', 'a pull_request'],
    ['pull_request', 'installation', 'created', 'an installation', 'a pull_request'],
  ])('rejects --event %s with the %s payload', async (event, fileEvent, action, looksLike, expected) => {
    const file = path.join(dir, `${fileEvent}.json`);
    await writeFile(file, JSON.stringify(examplePayload(fileEvent, action, 42)));

    const result = await runFixwright(['receive', '--event', event, '--payload', file, '--url', `${fixwrightBase}/webhooks/github`]);

    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      `Invalid --payload ${JSON.stringify(file)} for --event ${event}: the file has no "${event}" key ` +
        `but has "${fileEvent}", so --event and the file do not match: the file looks like ` +
        `${looksLike} payload. Use --event ${fileEvent}, or give ${expected} payload file.\n`,
    );
  });

  it('rejects a payload without the event key', async () => {
    const result = await runFixwright(['receive', '--event', 'check_run', '--payload', payload]);

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `Invalid --payload ${JSON.stringify(payload)} for --event check_run: the file has no ` +
        '"check_run" key, which every check_run payload has. Give a check_run payload file.\n',
    );
  });

  it('names an invalid --delivery', async () => {
    const result = await receive(`${fixwrightBase}/webhooks/github`, ['--delivery', 'a\nb']);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--delivery');
    expect(result.stderr).not.toContain('npm start');
  });

  it('names a URL with credentials', async () => {
    const result = await receive(
      `${fixwrightBase.replace('http://', 'http://user:hunter2@')}/webhooks/github`,
    );

    expect(result.code).toBe(2);
    expect(result.stderr).not.toContain('hunter2');
    expect(result.stderr).not.toContain('npm start');
  });

  it('names a URL that is not http', async () => {
    const result = await receive('ftp://127.0.0.1:1/webhooks/github');

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--url');
    expect(result.stderr).not.toContain('npm start');
  });

  it('rejects a payload over GitHub limit', async () => {
    const file = path.join(dir, 'huge.json');
    await writeFile(file, JSON.stringify({ zen: 'x'.repeat(26 * 1024 * 1024) }));
    const result = await receive(`${fixwrightBase}/webhooks/github`, [], file, 30_000);

    expect(result.killed).toBe(false);
    expect(result.code).toBe(2);
    expect(result.stderr).not.toContain('npm start');
    expect(result.stderr).toContain(
      `Invalid --payload: ${JSON.stringify(file)} is 27262986 bytes, over the limit of 26214400 bytes.`,
    );
  }, 40_000);

  it('rejects a payload with a byte order mark', async () => {
    const file = path.join(dir, 'bom.json');
    await writeFile(file, '\uFEFF' + JSON.stringify({ zen: 'bom', hook_id: 8 }));
    const result = await receive(`${fixwrightBase}/webhooks/github`, [], file);

    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'the file starts with a byte order mark, which GitHub never sends; save it as UTF-8 without one.',
    );
  });

  it('delivers to HOST ::1 without --url', async (test) => {
    const unavailable = await loopbackUnavailableReason('::1');
    if (unavailable) skipWithReason(test, unavailable);
    const server = serve({ fetch: createApp(context).fetch, hostname: '::1', port: 0 });
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    servers.push(server as Server);
    const port = String((server.address() as AddressInfo).port);
    const args = ['receive', '--event', 'ping', '--payload', payload, '--delivery', 'ipv6-1'];
    const result = await runFixwright(args, undefined, { HOST: '::1', PORT: port });

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('(delivery ipv6-1)');
  });

  it('delivers to the real endpoint', async () => {
    const result = await receive(`${fixwrightBase}/webhooks/github`, ['--delivery', 'ok-1']);

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});
