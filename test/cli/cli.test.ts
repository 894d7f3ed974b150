import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { apiTokens, users } from '../../src/db/schema/index.ts';
import { maxLiveTokensPerUser } from '../../src/users/api-tokens.ts';
import { upsertGitHubUser } from '../../src/users/upsert-github-user.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { loopbackUnavailableReason } from '../helpers/ipv6-loopback.ts';
import { skipWithReason } from '../helpers/skip.ts';
import { runCliToExit, waitFor } from '../helpers/process.ts';
import { serviceEnv } from '../helpers/service.ts';
import { serveTestApp } from '../helpers/web.ts';

const secret = 'cli-test-secret';

let context: TestContext;
let served: Awaited<ReturnType<typeof serveTestApp>>;
let base: string;
let payloadDir: string;
let payload: string;

/** Runs `fixwright ARGS` with only the variables a command needs, and returns its exit code. */
function runFixwright(args: string[], env: Record<string, string> = {}) {
  return runCliToExit(args, {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    NODE_ENV: 'test',
    WEBHOOK_SECRET: secret,
    ...env,
  });
}

function receive(event: string, url: string, delivery: string, env?: Record<string, string>) {
  const args = ['receive', '--event', event, '--payload', payload, '--url', url];
  return runFixwright([...args, '--delivery', delivery], env);
}

/** Returns a port on 127.0.0.1 that nothing listens on, by opening and closing a server. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  context = await createTestContext({ WEBHOOK_SECRET: secret });
  served = await serveTestApp(context);
  base = served.url;
  payloadDir = await mkdtemp(path.join(tmpdir(), 'fixwright-cli-'));
  payload = path.join(payloadDir, 'payload.json');
  await writeFile(payload, JSON.stringify({ zen: 'Keep it logically awesome.', hook_id: 1 }));
});

afterAll(async () => {
  await served?.close();
  await context?.close();
  if (payloadDir) await rm(payloadDir, { recursive: true, force: true });
});

describe('fixwright receive', () => {
  it('delivers to the webhook endpoint', async () => {
    const result = await receive('ping', `${base}/webhooks/github`, 'cli-ok');

    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      '202 Accepted (delivery cli-ok)\n{"delivery":"cli-ok","outcome":"pong"}\n',
    );
    expect(result.stderr).toBe('');
  });

  it('takes a delivery id of 200 characters', async () => {
    const longest = 'd'.repeat(200);
    const accepted = await receive('ping', `${base}/webhooks/github`, longest);
    const tooLong = await receive('ping', `${base}/webhooks/github`, `${longest}x`);

    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stdout).toBe(
      `202 Accepted (delivery ${longest})\n{"delivery":"${longest}","outcome":"pong"}\n`,
    );
    expect(tooLong.code).toBe(2);
    expect(tooLong.stdout).toBe('');
    expect(tooLong.stderr).toBe(
      `Invalid --delivery "${'d'.repeat(59)}…": it has 201 characters, more than the 200 that the ` +
        'webhook endpoint accepts; use 1 to 200 printable ASCII characters without spaces, such ' +
        'as a UUID.\n',
    );
  });

  it('fails on the base URL without following the redirect', async () => {
    const result = await receive('ping', `${base}/`, 'cli-base');

    expect(result.code).toBe(1);
    expect(result.stdout).toBe('303 See Other (delivery cli-base)\n');
    expect(result.stderr).toBe(
      `Delivery cli-base failed: ${base}/ redirected to /sign-in (303 See Other), which is ` +
        `not the webhook endpoint's JSON response. Post to ${base}/webhooks/github instead.\n`,
    );
  });

  it('fails on an API path', async () => {
    const result = await receive('ping', `${base}/api/github/webhooks`, 'cli-api');

    expect(result.code).toBe(1);
    expect(result.stdout).toContain('401 Unauthorized (delivery cli-api)\n');
    expect(result.stderr).toBe(
      `Delivery cli-api failed: ${base}/api/github/webhooks returned 401 Unauthorized with ` +
        "application/json, which is not the webhook endpoint's JSON response. Post to " +
        `${base}/webhooks/github instead.\n`,
    );
  });

  it('reports the endpoint error for a wrong secret', async () => {
    const result = await receive('ping', `${base}/webhooks/github`, 'cli-secret', {
      WEBHOOK_SECRET: 'another-secret',
    });

    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `Delivery cli-secret failed: ${base}/webhooks/github returned 401 Unauthorized: ` +
        'X-Hub-Signature-256 does not match the body; check that WEBHOOK_SECRET equals the ' +
        'secret set on the GitHub App.\n',
    );
  });

  it('fails when nothing listens', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}/webhooks/github`;
    const result = await receive('ping', url, 'cli-closed');

    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `Cannot reach ${url}: connect ECONNREFUSED 127.0.0.1:${port}. Is "npm start" running?\n`,
    );
  });

  it('names a port that fetch blocks', async () => {
    const url = 'http://127.0.0.1:1/webhooks/github';
    const result = await receive('ping', url, 'cli-bad-port');

    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `Cannot post to ${url}: fetch blocks port 1, as browsers do for ports such as 1, 25 and ` +
        '6000. Run the service on another PORT and post to that port.\n',
    );
  });

  it('rejects a misspelled event name', async () => {
    const result = await receive('pull_requests', `${base}/webhooks/github`, 'cli-typo');

    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'Unknown --event "pull_requests": GitHub sends no such webhook event. Did you mean ' +
        '"pull_request"? Fixwright acts on check_run, installation, ping, pull_request and ' +
        'repository.\n',
    );
  });

  it('rejects an event name with an action', async () => {
    const result = await receive('pull_request.opened', `${base}/webhooks/github`, 'cli-dot');

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'Invalid --event "pull_request.opened": X-GitHub-Event carries only the event name. ' +
        'Use --event pull_request and put "action": "opened" in the payload.\n',
    );
  });

  it('rejects an unknown event without a close match', async () => {
    const result = await receive('deploy-everything', `${base}/webhooks/github`, 'cli-far');

    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'Unknown --event "deploy-everything": GitHub sends no such webhook event. Fixwright ' +
        'acts on check_run, installation, ping, pull_request and repository.\n',
    );
  });

  it('warns about an event the app ignores', async () => {
    const result = await receive('star', `${base}/webhooks/github`, 'cli-star');

    expect(result.code).toBe(0);
    expect(result.stderr).toBe(
      'Warning: Fixwright records star deliveries but does nothing with them; it acts on ' +
        'check_run, installation, ping, pull_request and repository.\n',
    );
    expect(result.stdout).toContain('"outcome":"ignored: event star"');
  });
});

describe('fixwright usage errors', () => {
  const choices = 'use start, migrate, receive, users, keys or demo.';
  const cases: [string[], string][] = [
    [[], `Missing command: ${choices}`],
    [['frob'], `Unknown command "frob": ${choices}`],
    [['keys'], 'Missing keys command: use rotate or discard.'],
    [['keys', 'list'], 'Unknown keys command "list": use rotate or discard.'],
    [['keys', 'rotat'], 'Unknown keys command "rotat": use rotate or discard. Did you mean rotate?'],
    [['strat'], `Unknown command "strat": ${choices} Did you mean start?`],
    [
      ['users', 'plna'],
      'Unknown users command "plna": use token, plan, apply-limits, reset-usage, show, reset-admin. ' +
        'Did you mean plan?',
    ],
    [
      ['keys', 'discard', '--dry-run'],
      'Missing --version: give the master key version whose lost key encrypted the keys to delete.',
    ],
    [['keys', 'discard', '--version', '0'], 'Invalid --version "0": use a whole number from 1.'],
    [['keys', 'discard', '--version', '1.5'], 'Invalid --version "1.5": use a whole number from 1.'],
    [
      ['keys', 'discard', '--version', '1', '--batch-size', '5'],
      'Invalid option --batch-size for keys discard: it takes only --version and --dry-run.',
    ],
    [['keys', 'rotate', '--dry-run'], 'Invalid option --dry-run for keys rotate: it takes only --batch-size.'],
    [['users'], 'Missing users command: use token, plan, apply-limits, reset-usage, show, reset-admin.'],
    [
      ['users', 'delete'],
      'Unknown users command "delete": use token, plan, apply-limits, reset-usage, show, reset-admin.',
    ],
    [['receive', '--payload', 'x.json'], 'Missing --event: name the GitHub event, for example pull_request.'],
    [['start', '--role', 'cron'], 'Invalid --role "cron": use all, web or worker.'],
    [
      ['start', '--role', 'web'],
      'Missing DATABASE_URL for --role web: the bundled PostgreSQL serves only the process that ' +
        'starts it, so no worker process could run the jobs that this web process queues. Set ' +
        'DATABASE_URL to a PostgreSQL that the web and worker processes share, or run "fixwright ' +
        'start" without --role to run the HTTP server and the job workers in one process.',
    ],
    [
      ['start', '--role', 'worker'],
      'Missing DATABASE_URL for --role worker: the bundled PostgreSQL serves only the process ' +
        'that starts it, so no web process could receive the webhooks and requests that queue ' +
        'jobs for this worker. Set DATABASE_URL to a PostgreSQL that the web and worker processes ' +
        'share, or run "fixwright start" without --role to run the HTTP server and the job ' +
        'workers in one process.',
    ],
    [
      ['users', 'token', '--login', 'a'.repeat(50)],
      `Invalid --login "${'a'.repeat(50)}": it is 50 characters long, but GitHub logins are at most 39.`,
    ],
    [
      ['users', 'token', '--login', 'bad login'],
      'Invalid --login "bad login": GitHub logins are letters, digits and hyphens, starting with a ' +
        'letter or digit.',
    ],
    [
      ['users', 'token', '--login', `${'b'.repeat(36)} bad`],
      `Invalid --login "${'b'.repeat(36)} bad": it is 40 characters long, but GitHub logins are at ` +
        'most 39, and they are letters, digits and hyphens, starting with a letter or digit.',
    ],
    [
      ['users', 'token', '--login', 'has space[bot]', '--create'],
      'Invalid --login "has space[bot]": an app\'s login is its GitHub App slug followed by ' +
        '"[bot]", and slugs are lowercase letters, digits and hyphens, starting with a letter or digit.',
    ],
    [
      ['users', 'token', '--login', '[bot]', '--create'],
      'Invalid --login "[bot]": an app\'s login is its GitHub App slug followed by "[bot]", and ' +
        'slugs are lowercase letters, digits and hyphens, starting with a letter or digit.',
    ],
    [
      ['users', 'show', '--login', 'Dependabot[bot]'],
      'Invalid --login "Dependabot[bot]": an app\'s login is its GitHub App slug followed by ' +
        '"[bot]", and slugs are lowercase letters, digits and hyphens, starting with a letter or digit.',
    ],
    [
      ['users', 'token', '--login', `${'a'.repeat(4000)}[bot]`, '--create'],
      `Invalid --login "${'a'.repeat(59)}…": its app slug before "[bot]" is 4000 characters ` +
        'long, but GitHub App slugs are at most 34.',
    ],
    [
      ['users', 'show', '--login', `${'a'.repeat(35)}[bot]`],
      `Invalid --login "${'a'.repeat(35)}[bot]": its app slug before "[bot]" is 35 characters ` +
        'long, but GitHub App slugs are at most 34.',
    ],
    [
      ['users', 'show', '--login', 'bad~login'],
      'Invalid --login "bad~login": GitHub logins are letters, digits and hyphens, starting with ' +
        'a letter or digit; a user whose login GitHub gave to another account is named LOGIN~ID, ' +
        'with ID its GitHub id or, when it has none, its user id.',
    ],
    [
      ['users', 'show', '--login', 'bad login~42'],
      'Invalid --login "bad login~42": GitHub logins are letters, digits and hyphens, starting ' +
        'with a letter or digit.',
    ],
    [
      ['users', 'token', '--login', 'alice~42', '--create'],
      'Invalid --login "alice~42" with --create: a login of the form LOGIN~ID names a user whose ' +
        'login GitHub gave to another account, so no new user can have it. Give the GitHub login ' +
        'of the account to create a user for.',
    ],
    [
      ['users', 'reset-admin', '--login', 'alice~42'],
      'Invalid --login "alice~42" for users reset-admin: give a login listed in ADMIN_LOGINS, ' +
        'which are GitHub logins without "~".',
    ],
    [
      ['users', 'show', '--login', 'alice', '--plan', 'pro'],
      'Invalid option --plan for users show: it takes only --login.',
    ],
    [
      ['users', 'reset-usage', '--login', 'alice', '--plan', 'pro'],
      'Invalid option --plan for users reset-usage: it takes only --login.',
    ],
    [
      ['users', 'token', '--login', 'alice', '--name', '  '],
      'Invalid --name: it has 0 characters without the spaces around it; give 1 to 100, such as "ci".',
    ],
    [
      ['users', 'token', '--login', 'alice', '--name', 'n'.repeat(101)],
      'Invalid --name: it has 101 characters without the spaces around it; give 1 to 100, such as "ci".',
    ],
    [
      ['users', 'token', '--login', 'alice', '--name', '\u{1F600}'.repeat(101)],
      'Invalid --name: it has 101 characters without the spaces around it; give 1 to 100, such as "ci".',
    ],
    [
      ['users', 'token', '--login', '\u{1F600}'.repeat(40)],
      // The quote stops before the emoji that would be cut in half.
      `Invalid --login "${'\u{1F600}'.repeat(29)}…": it is 40 characters long, but GitHub logins are at ` +
        'most 39, and they are letters, digits and hyphens, starting with a letter or digit.',
    ],
    [
      ['users', 'token', '--login', 'alice', '--plan', 'pro'],
      'Invalid option --plan for users token: it takes only --login, --name and --create.',
    ],
    [
      ['users', 'plan', '--login', 'alice', '--plan', 'pro', '--name', 'ci'],
      'Invalid option --name for users plan: it takes only --login and --plan.',
    ],
    [['users', 'apply-limits', '--plan', 'gold'], 'Invalid --plan "gold": use free, pro or enterprise.'],
    [['users', 'apply-limits', '--plan', ''], 'Invalid --plan "": use free, pro or enterprise.'],
    [
      ['users', 'apply-limits', '--plan'],
      'Option \'--plan <value>\' argument missing. Run "fixwright users apply-limits --help" for ' +
        'the options.',
    ],
    [
      ['users', 'apply-limits', '--login', 'alice'],
      'Invalid option --login for users apply-limits: it takes only --plan and --dry-run.',
    ],
    [
      ['users', 'apply-limits', '--dry-run', '--dry-run'],
      'Repeated option --dry-run for users apply-limits: give it once.',
    ],
    [
      ['users', 'token', '--login', 'alice', '--dry-run'],
      'Invalid option --dry-run for users token: it takes only --login, --name and --create.',
    ],
    [
      ['users', 'show', '--login', 'alice', '--create'],
      'Invalid option --create for users show: it takes only --login.',
    ],
    [
      ['users', 'token', '--login', 'alice', '--create', '--create'],
      'Repeated option --create for users token: give it once.',
    ],
    [
      ['users', 'token', '--login', 'alice', '--login', 'bob'],
      'Repeated option --login for users token: give it once.',
    ],
    [
      ['users', 'plan', '--login', 'alice', '--plan=free', '--plan', 'pro'],
      'Repeated option --plan for users plan: give it once.',
    ],
    [
      ['keys', 'rotate', '--batch-size', '5', '--batch-size', '6'],
      'Repeated option --batch-size for keys rotate: give it once.',
    ],
    [
      ['receive', '--event', 'ping', '--event', 'push', '--payload', 'x.json'],
      'Repeated option --event for receive: give it once.',
    ],
    [['start', '--role', 'web', '--role', 'worker'], 'Repeated option --role for start: give it once.'],
    [
      ['users', 'plan', '--login', 'alice', '--pla', 'pro'],
      'Unknown option \'--pla\'. Did you mean --plan? Run "fixwright users plan --help" for the options.',
    ],
    [
      ['users', 'show', '--logn', 'alice'],
      'Unknown option \'--logn\'. Did you mean --login? Run "fixwright users show --help" for the options.',
    ],
    [
      ['receive', '--evnt', 'ping', '--payload', 'x.json'],
      'Unknown option \'--evnt\'. Did you mean --event? Run "fixwright receive --help" for the options.',
    ],
    [
      ['start', '--port', '1'],
      'Unknown option \'--port\'. Set PORT to choose the port. Run "fixwright start --help" for the options.',
    ],
    [
      ['start', '--host', '0.0.0.0'],
      'Unknown option \'--host\'. Set HOST to choose the listening address. Run "fixwright start --help" for the options.',
    ],
    [
      ['start', '--database-url=postgres://127.0.0.1/x'],
      'Unknown option \'--database-url\'. Set DATABASE_URL to choose the database. Run "fixwright start --help" ' +
        'for the options.',
    ],
    [
      ['start', '--llm-timeout-ms', '5000'],
      'Unknown option \'--llm-timeout-ms\'. Set the environment variable LLM_TIMEOUT_MS instead. Run ' +
        '"fixwright start --help" for the options.',
    ],
    [['start', '--rule', 'web'], 'Unknown option \'--rule\'. Did you mean --role? Run "fixwright start --help" for the options.'],
    [['start', '--xyz'], 'Unknown option \'--xyz\'. Run "fixwright start --help" for the options.'],
    [['users', 'plan', '--login', 'alice', '--plan', 'Gold'], 'Invalid --plan "Gold": use free, pro or enterprise.'],
    [
      ['keys', 'rotate', '--batch-size', '1e3'],
      'Invalid --batch-size "1e3": use a whole number from 1 to 10000.',
    ],
    [
      ['receive', '--event', 'ping', '--payload', 'x.json', '--timeout', '0x10'],
      'Invalid --timeout "0x10": expected whole seconds from 1 to 600.',
    ],
  ];
  for (const [args, message] of cases) {
    it(`exits 2 for "${args.join(' ')}"`, async () => {
      // A command that wrongly passes the usage check then uses neither ./data nor port 3000.
      const dataDir = path.join(payloadDir, 'usage-data');
      const result = await runFixwright(args, { DATA_DIR: dataDir, PORT: '0' });
      expect(result.code).toBe(2);
      expect(result.stderr.split('\n')[0]).toBe(message);
      expect(result.stdout).toBe('');
      expect(existsSync(dataDir)).toBe(false);
    });
  }

  it('prints help with exit 0', async () => {
    const result = await runFixwright(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Usage: fixwright <command> [options]');
    expect(result.stdout).toContain('2 for a usage or configuration error');
    for (const command of ['token', 'plan', 'reset-usage', 'show', 'reset-admin']) {
      expect(result.stdout).toContain(`users ${command} --login NAME`);
    }
    expect(result.stdout).toContain('  users apply-limits [--plan free|pro|enterprise] [--dry-run]\n');
  });

  it('names all three fakes in the demo line', async () => {
    const result = await runFixwright(['--help']);
    expect(result.stdout).toContain(
      '  demo                            Run the service against fake GitHub, Groq and Gemini servers\n' +
        '                                  on 127.0.0.1, open a pull request and preview a fix (npm run demo)\n',
    );
  });

  // Each command's first usage line, and lines that give its options with units and defaults.
  const commandHelp: [string[], string, string[]][] = [
    [
      ['start', '--help'],
      'Usage: fixwright start [--role all|web|worker]',
      [
        '  --role all|web|worker  all: HTTP server and job workers (default); web: HTTP server only;',
        '                         worker: job workers only. web and worker need DATABASE_URL: the',
      ],
    ],
    [
      ['migrate', '--help'],
      'Usage: fixwright migrate',
      ['Applies the database migrations and exits. It takes no options.'],
    ],
    [
      ['receive', '-h'],
      'Usage: fixwright receive --event NAME --payload FILE [--url URL] [--delivery ID] [--timeout S]',
      [
        '  --url URL        http or https URL to post to (default: http://HOST:PORT/webhooks/github,',
        '  --timeout S      seconds to wait for the response, 1 to 600 (default: 30)',
      ],
    ],
    [
      ['keys', '--help'],
      'Usage: fixwright keys rotate [--batch-size N]',
      ['  --batch-size N   with rotate: keys re-encrypted per transaction, 1 to 10000 (default: 100)'],
    ],
    [
      ['keys', 'rotate', '--help'],
      'Usage: fixwright keys rotate [--batch-size N]',
      ['  --batch-size N   keys re-encrypted per transaction, 1 to 10000 (default: 100)'],
    ],
    [
      ['keys', 'discard', '--help'],
      'Usage: fixwright keys discard --version N [--dry-run]',
      [
        '  --version N   the master key version, as configured (required)',
        '  --dry-run     print what would be deleted and delete nothing. Exits 0 also when the key of',
      ],
    ],
    [
      ['demo', '--help'],
      'Usage: fixwright demo',
      ['Runs the service against fake GitHub, Groq and Gemini servers on 127.0.0.1, with the bundled'],
    ],
    [
      ['users', 'token', '--help'],
      'Usage: fixwright users token --login NAME [--name LABEL] [--create]',
      [
        '  --name LABEL   label of the new token, shown on the dashboard, 1 to 100 characters',
        '                 (default: command line)',
      ],
    ],
    [
      ['users', 'plan', '-h'],
      'Usage: fixwright users plan --login NAME --plan free|pro|enterprise',
      ['  --plan PLAN    free, pro or enterprise (required)'],
    ],
    [
      ['users', 'apply-limits', '--help'],
      'Usage: fixwright users apply-limits [--plan free|pro|enterprise] [--dry-run]',
      ['  --dry-run      print what would change and change nothing'],
    ],
    [
      ['users', 'reset-admin', '--help'],
      'Usage: fixwright users reset-admin --login NAME',
      ['  --login NAME   a login listed in ADMIN_LOGINS, matched without regard to case (required)'],
    ],
    [
      ['users', '--help'],
      'Usage: fixwright users token --login NAME [--name LABEL] [--create]',
      ['  --dry-run      with apply-limits: print what would change and change nothing'],
    ],
  ];
  for (const [args, firstLine, optionLines] of commandHelp) {
    it(`prints its own usage for "${args.join(' ')}"`, async () => {
      // The configuration is not read, so an invalid one does not matter.
      const result = await runFixwright(args, { DATABASE_URL: 'not a url' });
      const lines = result.stdout.split('\n');
      expect(result.code).toBe(0);
      expect(result.stderr).toBe('');
      expect(lines[0]).toBe(firstLine);
      for (const line of optionLines) expect(lines).toContain(line);
      expect(result.stdout).not.toContain('Usage: fixwright <command> [options]');
    });
  }

  // A subcommand's help leaves out the other subcommands of its group.
  for (const [group, subcommands] of [
    ['users', ['token', 'plan', 'apply-limits', 'reset-usage', 'show', 'reset-admin']],
    ['keys', ['rotate', 'discard']],
  ] as const) {
    it(`prints one subcommand's usage for each of "${group}"`, async () => {
      for (const subcommand of subcommands) {
        const result = await runFixwright([group, subcommand, '--help'], { DATABASE_URL: 'not a url' });
        const label = `${group} ${subcommand}`;
        expect(result.code, label).toBe(0);
        expect(result.stdout, label).toMatch(new RegExp(`^Usage: fixwright ${label}[ \n]`));
        expect(result.stdout, label).toContain('\nOptions:\n');
        expect(result.stdout, label).not.toContain('Subcommands:');
        for (const other of subcommands.filter((name) => name !== subcommand)) {
          expect(result.stdout, label).not.toContain(`fixwright ${group} ${other}`);
        }
      }
    }, 60_000);
  }
});

describe('fixwright migrate', () => {
  const cases: [string[], string][] = [
    [['--dry-run'], 'Unknown option \'--dry-run\'. Run "fixwright migrate --help" for the options.'],
    [['--foo'], 'Unknown option \'--foo\'. Run "fixwright migrate --help" for the options.'],
    [
      ['extra'],
      "Unexpected argument 'extra'. This command does not take positional arguments. Run " +
        '"fixwright migrate --help" for the options.',
    ],
  ];
  for (const [args, message] of cases) {
    it(`rejects "${args.join(' ')}" without migrating`, async () => {
      const dataDir = path.join(payloadDir, `migrate-data-${args[0]}`);
      const result = await runFixwright(['migrate', ...args], { DATA_DIR: dataDir });
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(`${message}\n`);
      expect(result.stdout).toBe('');
      expect(existsSync(dataDir)).toBe(false);
    });
  }
});

describe('fixwright start on HOST ::1', () => {
  it('logs a URL with the address in brackets', async (test) => {
    const unavailable = await loopbackUnavailableReason('::1');
    if (unavailable) skipWithReason(test, unavailable);
    const env = { ...serviceEnv({ DATABASE_URL: context.database.url }, 0), HOST: '::1' };
    const child = spawn(process.execPath, ['bin/fixwright.js', 'start', '--role', 'web'], { env, stdio: 'pipe' });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const line = await waitFor(
        async () => output.split('\n').find((text) => text.includes('"event":"service.started"')),
        { timeoutMs: 30_000, describe: () => `the service.started line; output:\n${output}` },
      );
      const started = JSON.parse(line) as { host: string; port: number; url: string };
      expect(started.host).toBe('::1');
      expect(started.url).toBe(`http://[::1]:${started.port}`);
      expect((await fetch(`${started.url}/healthz`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
    expect(child.exitCode).toBe(0);
  }, 60_000);
});

describe('fixwright users', () => {
  it('prints its usage for --help', async () => {
    const result = await runFixwright(['users', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      'Usage: fixwright users token --login NAME [--name LABEL] [--create]\n' +
        '       fixwright users plan --login NAME --plan free|pro|enterprise\n' +
        '       fixwright users apply-limits [--plan free|pro|enterprise] [--dry-run]\n' +
        '       fixwright users reset-usage --login NAME\n' +
        '       fixwright users show --login NAME\n' +
        '       fixwright users reset-admin --login NAME\n' +
        '\n' +
        'Subcommands:\n' +
        '  token          create a personal access token for the JSON API for an existing user, or\n' +
        '                 with --create for a new one\n' +
        "  plan           switch the user's plan; the plan name may be in any case\n" +
        '  apply-limits   apply PLAN_FREE_TOKENS, PLAN_PRO_TOKENS and PLAN_ENTERPRISE_TOKENS to the\n' +
        '                 users whose stored limit differs, as choosing their own plan again with\n' +
        '                 users plan does: the period and usage are kept, usage is capped at a lower\n' +
        '                 limit, and each change is recorded. Changes up to 100 users per transaction\n' +
        '                 and prints, per plan, how many users changed and their old limits\n' +
        '  reset-usage    start a new billing period for the user now\n' +
        "  show           print the user's role, plan and usage as JSON\n" +
        '  reset-admin    delete the GitHub id recorded for an ADMIN_LOGINS login\n' +
        '\n' +
        'Options:\n' +
        '  --login NAME   GitHub login of the user, matched without regard to case (required by all\n' +
        '                 but apply-limits), or LOGIN~ID for a user whose login GitHub gave to another\n' +
        '                 account\n' +
        '  --name LABEL   label of the new token, shown on the dashboard, 1 to 100 characters\n' +
        '                 (default: command line)\n' +
        '  --plan PLAN    free, pro or enterprise (required by users plan; apply-limits checks only\n' +
        '                 the users on this plan when given, and all users otherwise)\n' +
        '  --dry-run      with apply-limits: print what would change and change nothing\n' +
        '  --create       with token: create the user when no user has the login; without it, an\n' +
        '                 unknown login exits 1 and creates nothing\n',
    );
  });

  it('exits 1 for a user that does not exist', async () => {
    const result = await runFixwright(['users', 'show', '--login', 'nobody-here'], {
      DATABASE_URL: context.database.url,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'User "nobody-here" not found. Users appear when they install the app or sign in, or ' +
        'create one with "fixwright users token --login nobody-here --create".\n',
    );
    expect(result.stdout).toBe('');
  });

  it('token rejects an unknown login', async () => {
    const result = await runFixwright(['users', 'token', '--login', 'no-such-user'], {
      DATABASE_URL: context.database.url,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'User "no-such-user" not found, so no token was created. Check the login, or run ' +
        '"fixwright users token --login no-such-user --create" to create a user with it.\n',
    );
    expect(result.stdout).toBe('');
    const created = await context.db.select().from(users).where(eq(users.login, 'no-such-user'));
    expect(created).toEqual([]);
  });

  it('suggests close logins for unknown ones', async () => {
    await context.db.insert(users).values([{ login: 'Codertocat' }, { login: 'codertocat-bot' }]);

    const reset = await runFixwright(['users', 'reset-usage', '--login', 'Codertocatt'], {
      DATABASE_URL: context.database.url,
    });
    expect(reset.code).toBe(1);
    expect(reset.stderr).toBe('User "Codertocatt" not found. Did you mean Codertocat?\n');
    expect(reset.stdout).toBe('');

    const token = await runFixwright(['users', 'token', '--login', 'codertocat-bt'], {
      DATABASE_URL: context.database.url,
    });
    expect(token.code).toBe(1);
    expect(token.stderr).toBe('User "codertocat-bt" not found, so no token was created. Did you mean codertocat-bot?\n');
    const created = await context.db.select().from(users).where(eq(users.login, 'codertocat-bt'));
    expect(created).toEqual([]);
  });

  it('token --create creates the user once', async () => {
    const first = await runFixwright(['users', 'token', '--login', 'created-user', '--create'], {
      DATABASE_URL: context.database.url,
    });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toBe(
      'Created user created-user; their installations link to it on the next installation event.\n' +
        'Personal access token for created-user (shown once; store it now):\n',
    );
    expect(first.stdout).toMatch(/^fxw_\S+\n$/);

    // With --create, an existing login gets a token and no second user.
    const again = await runFixwright(['users', 'token', '--login', 'CREATED-user', '--create'], {
      DATABASE_URL: context.database.url,
    });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toBe('Personal access token for created-user (shown once; store it now):\n');
    const rows = await context.db.select().from(users).where(eq(users.login, 'created-user'));
    expect(rows).toHaveLength(1);
    const tokens = await context.db.select().from(apiTokens).where(eq(apiTokens.userId, rows[0]!.id));
    expect(tokens).toHaveLength(2);
  });

  it('stores the token name trimmed', async () => {
    const result = await runFixwright(
      ['users', 'token', '--login', 'named-token', '--name', '  deploy bot  ', '--create'],
      { DATABASE_URL: context.database.url },
    );

    expect(result.code, result.stderr).toBe(0);
    const [user] = await context.db.select().from(users).where(eq(users.login, 'named-token'));
    const tokens = await context.db.select().from(apiTokens).where(eq(apiTokens.userId, user!.id));
    expect(tokens.map((token) => token.name)).toEqual(['deploy bot']);
  });

  it('exits 1 past the token limit', async () => {
    const [user] = await context.db.insert(users).values({ login: 'many-tokens' }).returning();
    await context.db.insert(apiTokens).values(
      Array.from({ length: maxLiveTokensPerUser }, (_, index) => ({
        userId: user!.id,
        name: `t${index}`,
        tokenHash: `cli-hash-${index}`,
        lastFour: '0000',
      })),
    );

    const result = await runFixwright(['users', 'token', '--login', 'many-tokens'], {
      DATABASE_URL: context.database.url,
    });

    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'many-tokens already has 100 live personal access tokens, the maximum; revoke one on the ' +
        'tokens page of the dashboard, then create the new one.\n',
    );
    expect(result.stdout).toBe('');
  });
});

describe('fixwright users and renamed logins', () => {
  function runUsers(args: string[]) {
    return runFixwright(['users', ...args], { DATABASE_URL: context.database.url });
  }

  it('reaches a user renamed to LOGIN~ID', async () => {
    // GitHub gave the login of account 8101 to account 8102, so 8101's user is renamed.
    await upsertGitHubUser(context.db, { id: 8101, login: 'handed-over' }, context.config);
    await upsertGitHubUser(context.db, { id: 8102, login: 'handed-over' }, context.config);
    const renamed = await context.db.select().from(users).where(eq(users.githubId, 8101));
    expect(renamed.map((user) => user.login)).toEqual(['handed-over~8101']);

    const shown = await runUsers(['show', '--login', 'HANDED-over~8101']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout).login).toBe('handed-over~8101');
    const token = await runUsers(['token', '--login', 'handed-over~8101']);
    expect(token.code, token.stderr).toBe(0);
    expect(token.stderr).toBe(
      'Personal access token for handed-over~8101 (shown once; store it now):\n',
    );
    const tokens = await context.db
      .select()
      .from(apiTokens)
      .where(eq(apiTokens.userId, renamed[0]!.id));
    expect(tokens).toHaveLength(1);
  });

  it('token --create accepts an app login', async () => {
    const result = await runUsers(['token', '--login', 'fix-bot-2[bot]', '--create']);

    expect(result.code, result.stderr).toBe(0);
    const created = await context.db.select().from(users).where(eq(users.login, 'fix-bot-2[bot]'));
    expect(created).toHaveLength(1);
  });
});

describe('fixwright users and login case', () => {
  const stored = 'Mixed-Case';

  function runUsers(args: string[]) {
    return runFixwright(['users', ...args], { DATABASE_URL: context.database.url });
  }

  beforeAll(async () => {
    const created = await runUsers(['token', '--login', stored, '--create']);
    expect(created.code, created.stderr).toBe(0);
  });

  it('token names the stored login', async () => {
    const result = await runUsers(['token', '--login', 'MIXED-case']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('Personal access token for Mixed-Case (shown once; store it now):\n');
  });

  it('plan names the stored login', async () => {
    const changed = await runUsers(['plan', '--login', 'mixed-case', '--plan', 'pro']);
    expect(changed.code).toBe(0);
    expect(changed.stdout).toBe('Mixed-Case: free -> pro, limit 100000, used 0 -> 0\n');

    const unchanged = await runUsers(['plan', '--login', 'MIXED-CASE', '--plan', 'pro']);
    expect(unchanged.code).toBe(0);
    expect(unchanged.stdout).toBe(
      'Mixed-Case is already on pro; nothing changed. To start a new period, run fixwright ' +
        'users reset-usage --login Mixed-Case.\n',
    );
  });

  it('plan accepts any case of the plan', async () => {
    const changed = await runUsers(['plan', '--login', 'mixed-case', '--plan', 'Enterprise']);
    expect(changed.code, changed.stderr).toBe(0);
    expect(changed.stdout).toMatch(/^Mixed-Case: (free|pro) -> enterprise, limit unlimited, /);

    const back = await runUsers(['plan', '--login', 'mixed-case', '--plan', 'PRO']);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toMatch(/^Mixed-Case: enterprise -> pro, limit 100000, /);
  });

  it('reset-usage names the stored login', async () => {
    const result = await runUsers(['reset-usage', '--login', 'mixed-CASE']);
    const [user] = await context.database.db.select().from(users).where(eq(users.login, stored));
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      `Mixed-Case: used 0 -> 0; a new period starts now and ends ${user!.periodEndsAt.toISOString()}.\n`,
    );
  });

  it('show names the stored login', async () => {
    const result = await runUsers(['show', '--login', 'MIXED-CASE']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).login).toBe('Mixed-Case');
  });

  it('show prints the role', async () => {
    const before = await runUsers(['show', '--login', stored]);
    expect(before.code).toBe(0);
    expect(JSON.parse(before.stdout).role).toBe('user');

    await context.database.db.update(users).set({ role: 'admin' }).where(eq(users.login, stored));
    const after = await runUsers(['show', '--login', stored]);
    expect(after.code).toBe(0);
    expect(JSON.parse(after.stdout).role).toBe('admin');
    await context.database.db.update(users).set({ role: 'user' }).where(eq(users.login, stored));
  });
});
