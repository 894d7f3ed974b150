import { createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';
import { count, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  installations,
  prRuns,
  users,
  webhookDeliveries,
} from '../../src/db/schema/index.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';

const secret = 'webhook-secret-for-tests';
const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, unknown>[];
}[];

function example(event: string, action: string): Record<string, unknown> {
  const found = examples
    .find((entry) => entry.name === event)!
    .examples.find((payload) => payload.action === action);
  return structuredClone(found!);
}

function sign(body: string, key = secret): string {
  return 'sha256=' + createHmac('sha256', key).update(body).digest('hex');
}

let context: TestContext;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  context = await createTestContext({ WEBHOOK_SECRET: secret });
  app = createApp(context);
});
afterAll(async () => {
  await context.close();
});

function post(body: string, headers: Record<string, string>) {
  return app.request('/webhooks/github', {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

function pullRequestOpened(installationId: number) {
  const payload = example('pull_request', 'opened');
  payload.installation = { id: installationId, node_id: 'MDIz' };
  return JSON.stringify(payload);
}

async function countRows(table: typeof prRuns | typeof webhookDeliveries) {
  const [row] = await context.db.select({ value: count() }).from(table);
  return row!.value;
}

describe('POST /webhooks/github', () => {
  it('creates one run for a redelivered delivery', async () => {
    const body = pullRequestOpened(4242);
    const headers = {
      'x-github-event': 'pull_request',
      'x-github-delivery': 'delivery-twice',
      'x-hub-signature-256': sign(body),
    };
    const first = await post(body, headers);
    const second = await post(body, headers);

    expect(first.status).toBe(202);
    expect(await first.json()).toMatchObject({ delivery: 'delivery-twice' });
    expect(second.status).toBe(200);
    expect(await second.json()).toEqual({ delivery: 'delivery-twice', duplicate: true });
    const runs = await context.db.select().from(prRuns).where(eq(prRuns.installationId, 4242));
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({
      repository: 'Codertocat/Hello-World',
      prNumber: 2,
      headSha: 'ec26c3e57ca3a959ca5aad62de7213c562f8c821',
      status: 'queued',
    });
    const jobs = await context.boss.fetch('analyze', { batchSize: 10 });
    expect(jobs.map((job) => job.data)).toEqual([{ runId: runs[0]!.id }]);
  });

  it('creates one run for a new delivery of the same head sha', async () => {
    const body = pullRequestOpened(4242);
    await post(body, {
      'x-github-event': 'pull_request',
      'x-github-delivery': 'same-sha-1',
      'x-hub-signature-256': sign(body),
    });
    const again = await post(body, {
      'x-github-event': 'pull_request',
      'x-github-delivery': 'same-sha-2',
      'x-hub-signature-256': sign(body),
    });
    expect(again.status).toBe(202);
    expect((await again.json()).outcome).toMatch(/^ignored: a run for/);
    const runs = await context.db.select().from(prRuns).where(eq(prRuns.prNumber, 2));
    expect(runs).toHaveLength(1);
  });

  it('rejects a wrong signature and stores nothing', async () => {
    const deliveriesBefore = await countRows(webhookDeliveries);
    const runsBefore = await countRows(prRuns);
    const body = pullRequestOpened(5000);
    const response = await post(body, {
      'x-github-event': 'pull_request',
      'x-github-delivery': 'forged',
      'x-hub-signature-256': sign(body, 'some-other-secret'),
    });
    expect(response.status).toBe(401);
    const error = (await response.json()).error;
    expect(error.code).toBe('invalid_signature');
    expect(error.message).toContain('WEBHOOK_SECRET');
    expect(typeof error.requestId).toBe('string');
    expect(await countRows(webhookDeliveries)).toBe(deliveriesBefore);
    expect(await countRows(prRuns)).toBe(runsBefore);
  });

  it('rejects a tampered body', async () => {
    const body = pullRequestOpened(5001);
    const response = await post(body.replace('Hello-World', 'Hello-Wörld'), {
      'x-github-event': 'pull_request',
      'x-github-delivery': 'tampered',
      'x-hub-signature-256': sign(body),
    });
    expect(response.status).toBe(401);
  });

  it('rejects a missing signature', async () => {
    const response = await post('{}', { 'x-github-event': 'ping', 'x-github-delivery': 'unsigned' });
    expect(response.status).toBe(401);
    expect((await response.json()).error.message).toContain('X-Hub-Signature-256');
  });

  it('rejects a signed body that is not JSON', async () => {
    const body = 'payload=%7B%7D';
    const response = await post(body, {
      'x-github-event': 'ping',
      'x-github-delivery': 'form-encoded',
      'x-hub-signature-256': sign(body),
    });
    expect(response.status).toBe(400);
    expect((await response.json()).error.message).toContain('not valid JSON');
  });

  it('checks the signature over the body bytes', async () => {
    const ping = Buffer.from(JSON.stringify({ zen: 'Grüße aus Köln', hook_id: 1 }));
    const cases = [
      { name: 'utf-8', body: ping, status: 202, message: undefined },
      { name: 'empty', body: Buffer.alloc(0), status: 400, message: 'not valid JSON' },
      {
        name: 'byte order mark',
        body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), ping]),
        status: 400,
        message: 'not valid JSON',
      },
      {
        name: 'latin-1',
        body: Buffer.from('{"zen":"Gr\xfc\xdfe"}', 'latin1'),
        status: 400,
        message: 'not valid UTF-8',
      },
      { name: 'gzip', body: gzipSync(ping), status: 400, message: 'not valid UTF-8' },
    ];
    for (const { name, body, status, message } of cases) {
      const response = await app.request('/webhooks/github', {
        method: 'POST',
        body: new Uint8Array(body),
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'ping',
          'x-github-delivery': `bytes-${name}`,
          'x-hub-signature-256':
            'sha256=' + createHmac('sha256', secret).update(body).digest('hex'),
        },
      });
      const json = await response.json();
      expect(response.status, name).toBe(status);
      if (message === undefined) {
        expect(json.outcome, name).toBe('pong');
      } else {
        expect(json.error.code, name).toBe('bad_request');
        expect(json.error.message, name).toContain(message);
      }
    }
  });

  it('rejects a payload missing required fields', async () => {
    const payload = JSON.parse(pullRequestOpened(5002));
    delete payload.pull_request.head;
    const body = JSON.stringify(payload);
    const response = await post(body, {
      'x-github-event': 'pull_request',
      'x-github-delivery': 'no-head',
      'x-hub-signature-256': sign(body),
    });
    expect(response.status).toBe(400);
    expect((await response.json()).error.message).toContain('pull_request.head');
    const stored = await context.db
      .select()
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.deliveryId, 'no-head'));
    expect(stored).toHaveLength(0);
  });

  it('rejects a body over 25 MB', async () => {
    const body = JSON.stringify({ padding: 'x'.repeat(25 * 1024 * 1024 + 10) });
    const response = await post(body, {
      'x-github-event': 'ping',
      'x-github-delivery': 'huge',
      'x-hub-signature-256': sign(body),
      'content-length': String(Buffer.byteLength(body)),
    });
    expect(response.status).toBe(413);
  });

  it('rejects a streamed body over 25 MB', async () => {
    const chunk = new Uint8Array(1024 * 1024).fill(0x20);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += 1;
        if (sent > 26) controller.close();
        else controller.enqueue(chunk);
      },
    });
    const response = await app.request('/webhooks/github', {
      method: 'POST',
      body,
      duplex: 'half',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'ping',
        'x-github-delivery': 'huge-streamed',
        'x-hub-signature-256': sign('{}'),
      },
    } as RequestInit);
    expect(response.status).toBe(413);
    expect((await response.json()).error.code).toBe('payload_too_large');
    // The read stopped at the first chunk past the limit.
    expect(sent).toBeLessThan(28);
  });

  it('records the installing user of an installation', async () => {
    const payload = example('installation', 'created');
    const body = JSON.stringify(payload);
    const response = await post(body, {
      'x-github-event': 'installation',
      'x-github-delivery': 'installed',
      'x-hub-signature-256': sign(body),
    });
    expect(response.status).toBe(202);
    const installationId = (payload.installation as { id: number }).id;
    const [installation] = await context.db
      .select({ account: installations.accountLogin, login: users.login, plan: users.plan })
      .from(installations)
      .innerJoin(users, eq(users.id, installations.userId))
      .where(eq(installations.id, installationId));
    expect(installation).toEqual({ account: 'Codertocat', login: 'Codertocat', plan: 'free' });
  });

  it('acknowledges events it does not handle', async () => {
    const body = JSON.stringify(example('pull_request', 'labeled'));
    const response = await post(body, {
      'x-github-event': 'pull_request',
      'x-github-delivery': 'labeled',
      'x-hub-signature-256': sign(body),
    });
    expect(response.status).toBe(202);
    expect((await response.json()).outcome).toBe('ignored: pull_request action "labeled"');
  });
});

describe('POST /webhooks/github with unusual input', () => {
  function signedHeaders(body: string, event: string, deliveryId: string) {
    return {
      'x-github-event': event,
      'x-github-delivery': deliveryId,
      'x-hub-signature-256': sign(body),
    };
  }

  it('rejects a pull request number over the integer range', async () => {
    const payload = JSON.parse(pullRequestOpened(5003));
    payload.number = 2147483648;
    const body = JSON.stringify(payload);

    const response = await post(body, signedHeaders(body, 'pull_request', 'number-too-big'));

    expect(response.status).toBe(400);
    expect((await response.json()).error.message).toContain('number');
    const stored = await context.db
      .select()
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.deliveryId, 'number-too-big'));
    expect(stored).toHaveLength(0);
  });

  it('accepts the largest integer pull request number', async () => {
    const payload = JSON.parse(pullRequestOpened(5004));
    payload.number = 2147483647;
    const body = JSON.stringify(payload);

    const response = await post(body, signedHeaders(body, 'pull_request', 'number-max'));

    expect(response.status).toBe(202);
    const runs = await context.db.select().from(prRuns).where(eq(prRuns.installationId, 5004));
    expect(runs.map((run) => run.prNumber)).toEqual([2147483647]);
  });

  it('ignores events named like object members', async () => {
    for (const event of ['constructor', '__proto__']) {
      const body = JSON.stringify({ action: 'created' });

      const response = await post(body, signedHeaders(body, event, `member-${event}`));

      expect(response.status, event).toBe(202);
      expect((await response.json()).outcome, event).toBe(`ignored: event ${event}`);
    }
  });

  it('rejects timestamps PostgreSQL cannot store', async () => {
    const cases = [
      ['pull_request.updated_at', 'opened', '+275760-09-13T00:00:00.000Z'],
      ['pull_request.updated_at', 'opened', '0000-01-01T00:00:00Z'],
      ['pull_request.updated_at', 'opened', 'Tue, 15 May 2019 15:20:33 GMT'],
      ['pull_request.closed_at', 'closed', '-000001-01-01T00:00:00Z'],
    ] as const;
    for (const [field, action, value] of cases) {
      const payload = example('pull_request', action) as { pull_request: Record<string, unknown> };
      payload.pull_request[field.split('.')[1]!] = value;
      const body = JSON.stringify(payload);
      const deliveryId = `timestamp-${action}-${value}`;

      const response = await post(body, signedHeaders(body, 'pull_request', deliveryId));

      expect(response.status).toBe(400);
      expect((await response.json()).error.message).toBe(
        `Invalid pull_request payload: ${field}: must be an ISO 8601 date and time from ` +
          '1970 to 9999 such as 2019-05-15T15:20:33Z.',
      );
    }
  });

  it('stores no head repository for a deleted fork', async () => {
    const payload = JSON.parse(pullRequestOpened(5006));
    payload.repository.id = 5006;
    // GitHub sends head.repo null once the fork of a pull request is deleted.
    payload.pull_request.head.repo = null;
    const body = JSON.stringify(payload);

    const response = await post(body, signedHeaders(body, 'pull_request', 'deleted-fork'));

    expect(response.status).toBe(202);
    const runs = await context.db.select().from(prRuns).where(eq(prRuns.installationId, 5006));
    expect(runs.map((run) => run.headRepository)).toEqual(['']);
  });

  it('strips NUL from stored pull request text', async () => {
    const payload = JSON.parse(pullRequestOpened(5005));
    // Another repository id, so the run is not a duplicate of an earlier test's run.
    payload.repository.id = 5005;
    payload.action = 'open\u0000ed';
    payload.pull_request.title = 'Fix\u0000 the handler';
    payload.pull_request.head.ref = 'feat\u0000ure';
    payload.sender.login = 'octo\u0000cat';
    const body = JSON.stringify(payload);
    expect(body).toContain('\\u0000');

    const response = await post(body, signedHeaders(body, 'pull_request', 'nul-in-text'));

    expect(response.status).toBe(202);
    const [run] = await context.db.select().from(prRuns).where(eq(prRuns.installationId, 5005));
    expect(run?.prTitle).toBe('Fix the handler');
    expect(run?.headRef).toBe('feature');
    const [delivery] = await context.db
      .select()
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.deliveryId, 'nul-in-text'));
    expect(delivery?.action).toBe('opened');
  });

  it('strips NUL from the installing user login', async () => {
    const payload = example('installation', 'created') as {
      installation: { id: number; account: { login: string } };
      sender: { id: number; login: string };
    };
    payload.installation.id = 5006;
    payload.installation.account.login = 'nul\u0000-org';
    payload.sender = { ...payload.sender, id: 5006, login: 'nul\u0000-user' };
    const body = JSON.stringify(payload);

    const response = await post(body, signedHeaders(body, 'installation', 'nul-in-login'));

    expect(response.status).toBe(202);
    const [installation] = await context.db
      .select({ account: installations.accountLogin, login: users.login })
      .from(installations)
      .innerJoin(users, eq(users.id, installations.userId))
      .where(eq(installations.id, 5006));
    expect(installation).toEqual({ account: 'nul-org', login: 'nul-user' });
  });

  it('records an invalid installation id as absent', async () => {
    for (const id of ['1.5', '1e19', '0', '-3']) {
      const body = `{"action":"x","installation":{"id":${id}}}`;
      const deliveryId = `installation-id-${id}`;

      const response = await post(body, signedHeaders(body, 'push', deliveryId));

      expect(response.status, id).toBe(202);
      expect(await response.json(), id).toEqual({
        delivery: deliveryId,
        outcome: 'ignored: event push',
      });
      const [delivery] = await context.db
        .select()
        .from(webhookDeliveries)
        .where(eq(webhookDeliveries.deliveryId, deliveryId));
      expect(delivery?.installationId, id).toBeNull();
    }
  });

  it('rejects ids that GitHub never sends', async () => {
    const cases: [string, string, (payload: Record<string, any>) => void][] = [
      ['pull_request', 'installation.id', (p) => (p.installation.id = 0)],
      ['pull_request', 'repository.id', (p) => (p.repository.id = -4)],
      ['pull_request', 'repository.owner.id', (p) => (p.repository.owner.id = 2 ** 53)],
      ['check_run', 'installation.id', (p) => (p.installation = { id: -1 })],
      ['installation', 'installation.id', (p) => (p.installation.id = 0)],
      ['installation', 'sender.id', (p) => (p.sender.id = -2)],
    ];
    for (const [event, field, spoil] of cases) {
      const payload =
        event === 'pull_request'
          ? JSON.parse(pullRequestOpened(5010))
          : example(event, event === 'check_run' ? 'requested_action' : 'created');
      spoil(payload);
      const body = JSON.stringify(payload);
      const deliveryId = `bad-id-${event}-${field}`;

      const response = await post(body, signedHeaders(body, event, deliveryId));

      expect(response.status, deliveryId).toBe(400);
      expect((await response.json()).error.message, deliveryId).toContain(field);
      const stored = await context.db
        .select()
        .from(webhookDeliveries)
        .where(eq(webhookDeliveries.deliveryId, deliveryId));
      expect(stored, deliveryId).toHaveLength(0);
    }
  });

  it('rejects names longer than GitHub allows', async () => {
    // Random text, because PostgreSQL compresses a repetitive value below its index size limit.
    const long = randomBytes(5000).toString('hex');
    const cases: [string, string, (payload: Record<string, any>) => void][] = [
      ['pull_request', 'repository.full_name', (p) => (p.repository.full_name = `octo/${long}`)],
      ['pull_request', 'repository.owner.login', (p) => (p.repository.owner.login = long)],
      [
        'pull_request',
        'pull_request.head.repo.full_name',
        (p) => (p.pull_request.head.repo.full_name = `octo/${long}`),
      ],
      ['installation', 'sender.login', (p) => (p.sender.login = long)],
      ['installation', 'installation.account.login', (p) => (p.installation.account.login = long)],
      ['repository', 'repository.full_name', (p) => (p.repository.full_name = `octo/${long}`)],
    ];
    for (const [event, field, spoil] of cases) {
      const payload =
        event === 'pull_request'
          ? JSON.parse(pullRequestOpened(5011))
          : example(event, event === 'repository' ? 'renamed' : 'created');
      spoil(payload);
      const body = JSON.stringify(payload);
      const deliveryId = `long-name-${event}-${field}`;

      const response = await post(body, signedHeaders(body, event, deliveryId));

      expect(response.status, deliveryId).toBe(400);
      expect((await response.json()).error.message, deliveryId).toContain(field);
    }
  });

  it('rejects dot names as owner or repository', async () => {
    const cases: [string, string, string, (payload: Record<string, any>) => void][] = [
      ['pull_request', 'repository.full_name', '../..', (p) => (p.repository.full_name = '../..')],
      ['pull_request', 'repository.full_name', 'octo/.', (p) => (p.repository.full_name = 'octo/.')],
      ['pull_request', 'repository.owner.login', '..', (p) => (p.repository.owner.login = '..')],
      [
        'pull_request',
        'pull_request.head.repo.full_name',
        '../repo',
        (p) => (p.pull_request.head.repo.full_name = '../repo'),
      ],
      ['installation', 'sender.login', '..', (p) => (p.sender.login = '..')],
      ['installation', 'installation.account.login', '.', (p) => (p.installation.account.login = '.')],
      ['repository', 'repository.full_name', '../..', (p) => (p.repository.full_name = '../..')],
    ];
    for (const [event, field, value, spoil] of cases) {
      const payload =
        event === 'pull_request'
          ? JSON.parse(pullRequestOpened(5012))
          : example(event, event === 'repository' ? 'renamed' : 'created');
      spoil(payload);
      const body = JSON.stringify(payload);
      const deliveryId = `dot-name-${event}-${field}-${value}`;

      const response = await post(body, signedHeaders(body, event, deliveryId));

      expect(response.status, deliveryId).toBe(400);
      const message = (await response.json()).error.message as string;
      expect(message, deliveryId).toContain(field);
      expect(message, deliveryId).toContain(JSON.stringify(value));
      expect(message, deliveryId).toContain('must not be "." or ".."');
    }
    const runs = await context.db.select().from(prRuns).where(eq(prRuns.installationId, 5012));
    expect(runs).toHaveLength(0);
  });

  it('rejects a pull request event with a non-positive installation id', async () => {
    for (const id of [0, -3]) {
      const payload = JSON.parse(pullRequestOpened(id));
      payload.repository.id = 5100 - id;
      const body = JSON.stringify(payload);

      const headers = signedHeaders(body, 'pull_request', `pr-installation-${id}`);
      const response = await post(body, headers);

      expect(response.status, String(id)).toBe(400);
      expect((await response.json()).error.message, String(id)).toBe(
        'Invalid pull_request payload: installation.id: Too small: expected number to be >0.',
      );
      const runs = await context.db.select().from(prRuns).where(eq(prRuns.installationId, id));
      expect(runs, String(id)).toEqual([]);
    }
  });

  it('records a valid installation id', async () => {
    const body = '{"action":"x","installation":{"id":9007199254740991}}';

    const response = await post(body, signedHeaders(body, 'push', 'installation-id-max'));

    expect(response.status).toBe(202);
    const [delivery] = await context.db
      .select()
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.deliveryId, 'installation-id-max'));
    expect(delivery?.installationId).toBe(9007199254740991);
  });

  it('ignores unknown well-formed event names', async () => {
    for (const event of ['merge_queue_entry', 'projects_v9', 'e'.repeat(64)]) {
      const body = JSON.stringify({ action: 'created' });
      const deliveryId = `unknown-${event.slice(0, 20)}`;

      const response = await post(body, signedHeaders(body, event, deliveryId));

      expect(response.status, event).toBe(202);
      expect((await response.json()).outcome, event).toBe(`ignored: event ${event}`);
      const [stored] = await context.db
        .select()
        .from(webhookDeliveries)
        .where(eq(webhookDeliveries.deliveryId, deliveryId));
      expect(stored?.event, event).toBe(event);
    }
  });

  it('rejects event names GitHub never sends', async () => {
    const cases: [string, string][] = [
      ['e'.repeat(10_000), `"${'e'.repeat(38)}…`],
      ['e'.repeat(65), `"${'e'.repeat(38)}…`],
      ['pull-request', '"pull-request"'],
      ['Pull_Request', '"Pull_Request"'],
      ['toString', '"toString"'],
      ['ping;reload', '"ping;reload"'],
    ];
    for (const [index, [event, quoted]] of cases.entries()) {
      const body = JSON.stringify({ zen: 'Keep it logically awesome.' });
      const deliveryId = `bad-event-${index}`;

      const response = await post(body, signedHeaders(body, event, deliveryId));

      expect(response.status, quoted).toBe(400);
      expect((await response.json()).error.message, quoted).toBe(
        `Invalid X-GitHub-Event header ${quoted}: expected a GitHub event name of 1 to 64 ` +
          'lowercase letters, digits and underscores, such as pull_request.',
      );
      const stored = await context.db
        .select()
        .from(webhookDeliveries)
        .where(eq(webhookDeliveries.deliveryId, deliveryId));
      expect(stored, quoted).toHaveLength(0);
    }
  });

  it('rejects a delivery id over 200 characters', async () => {
    const deliveryId = 'd'.repeat(8000);
    const body = JSON.stringify({ zen: 'Keep it logically awesome.' });

    const response = await post(body, signedHeaders(body, 'ping', deliveryId));

    expect(response.status).toBe(400);
    expect((await response.json()).error.message).toContain('X-GitHub-Delivery');
    const stored = await context.db
      .select()
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.deliveryId, deliveryId));
    expect(stored).toHaveLength(0);
  });
});

describe('POST /webhooks/github with long payload values', () => {
  const longValue = 'x'.repeat(100_000);
  // quoteValue keeps the opening quote, 58 characters and an ellipsis, 60 characters in all.
  const quotedLongValue = `"${'x'.repeat(58)}…`;

  async function postLongValue(event: string, payload: Record<string, unknown>, deliveryId: string) {
    const body = JSON.stringify(payload);
    return post(body, {
      'x-github-event': event,
      'x-github-delivery': deliveryId,
      'x-hub-signature-256': sign(body),
    });
  }

  async function storedDelivery(deliveryId: string) {
    const [row] = await context.db
      .select({ outcome: webhookDeliveries.outcome, action: webhookDeliveries.action })
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.deliveryId, deliveryId));
    return row;
  }

  async function storedOutcome(deliveryId: string) {
    return (await storedDelivery(deliveryId))?.outcome;
  }

  async function storedAction(deliveryId: string) {
    return (await storedDelivery(deliveryId))?.action;
  }

  it('shortens a long action everywhere', async () => {
    const payload = { ...example('pull_request', 'labeled'), action: longValue };
    const expected = `ignored: pull_request action ${quotedLongValue}`;

    const response = await postLongValue('pull_request', payload, 'long-action');

    expect(response.status).toBe(202);
    expect((await response.json()).outcome).toBe(expected);
    expect(await storedOutcome('long-action')).toBe(expected);
    expect(await storedAction('long-action')).toBe(`${'x'.repeat(59)}…`);
    const accepted = logsOf(context, 'webhook.accepted', { deliveryId: 'long-action' });
    expect(accepted).toHaveLength(1);
    expect(accepted[0]!.outcome).toBe(expected);
  });

  it('shortens long actions of each handler', async () => {
    const cases = [
      ['check_run', example('check_run', 'created')],
      ['installation', example('installation', 'new_permissions_accepted')],
      ['repository', example('repository', 'edited')],
    ] as const;
    for (const [event, payload] of cases) {
      const deliveryId = `long-action-${event}`;

      const response = await postLongValue(event, { ...payload, action: longValue }, deliveryId);

      expect(response.status, event).toBe(202);
      const expected = `ignored: ${event} action ${quotedLongValue}`;
      expect((await response.json()).outcome, event).toBe(expected);
      expect(await storedOutcome(deliveryId), event).toBe(expected);
      expect(await storedAction(deliveryId), event).toBe(`${'x'.repeat(59)}…`);
    }
  });

  it('stores a long action of an ignored event shortened', async () => {
    const response = await postLongValue('push', { action: longValue }, 'long-action-push');

    expect(response.status).toBe(202);
    expect((await response.json()).outcome).toBe('ignored: event push');
    expect(await storedAction('long-action-push')).toBe(`${'x'.repeat(59)}…`);
  });

  it('shortens a long requested action', async () => {
    const payload = example('check_run', 'requested_action');
    payload.requested_action = { identifier: longValue };
    const expected = `ignored: requested action ${quotedLongValue} is not fix`;

    const response = await postLongValue('check_run', payload, 'long-identifier');

    expect(response.status).toBe(202);
    expect((await response.json()).outcome).toBe(expected);
    expect(await storedOutcome('long-identifier')).toBe(expected);
  });

  it('rejects a long suspended_by login', async () => {
    const payload = example('installation', 'suspend');
    payload.installation = {
      ...(payload.installation as Record<string, unknown>),
      suspended_by: { login: longValue },
    };

    const response = await postLongValue('installation', payload, 'long-suspender');

    expect(response.status).toBe(400);
    const message: string = (await response.json()).error.message;
    expect(message).toBe(
      'Invalid installation payload: installation.suspended_by.login: Too big: expected string to have <=100 characters.',
    );
    expect(await storedOutcome('long-suspender')).toBeUndefined();
  });
});

describe('POST /webhooks/github rejection logs', () => {
  it('logs one warning per rejected delivery', async () => {
    const body = JSON.stringify({ zen: 'body-text-not-for-logs' });
    const signature = sign(body, 'some-other-secret');
    const before = context.logs.length;

    const response = await post(body, {
      'x-github-event': 'ping',
      'x-github-delivery': 'rejected-logged',
      'x-hub-signature-256': signature,
    });

    expect(response.status).toBe(401);
    const warnings = context.logs
      .slice(before)
      .filter((line) => line.event === 'webhook.rejected');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({
      level: 40,
      deliveryId: 'rejected-logged',
      githubEvent: 'ping',
      status: 401,
      code: 'invalid_signature',
    });
    expect(warnings[0]!.reason).toContain('X-Hub-Signature-256 does not match');
    const logText = JSON.stringify(context.logs.slice(before));
    expect(logText).not.toContain('body-text-not-for-logs');
    expect(logText).not.toContain(signature.slice('sha256='.length));
  });

  it('logs the reason of an invalid payload', async () => {
    const payload = JSON.parse(pullRequestOpened(5007));
    delete payload.pull_request.head;
    const body = JSON.stringify(payload);
    const before = context.logs.length;

    const response = await post(body, {
      'x-github-event': 'pull_request',
      'x-github-delivery': 'invalid-logged',
      'x-hub-signature-256': sign(body),
    });

    expect(response.status).toBe(400);
    const warnings = context.logs
      .slice(before)
      .filter((line) => line.event === 'webhook.rejected');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ deliveryId: 'invalid-logged', status: 400 });
    expect(warnings[0]!.reason).toContain('pull_request.head');
  });

  it('logs a body over 25 MB', async () => {
    const before = context.logs.length;
    const response = await post('{}', {
      'x-github-event': 'ping',
      'x-github-delivery': 'huge-logged',
      'x-hub-signature-256': sign('{}'),
      'content-length': String(25 * 1024 * 1024 + 1),
    });

    expect(response.status).toBe(413);
    const warnings = context.logs
      .slice(before)
      .filter((line) => line.event === 'webhook.rejected');
    expect(warnings.map((line) => [line.deliveryId, line.status])).toEqual([['huge-logged', 413]]);
  });
});

describe('POST /webhooks/github without WEBHOOK_SECRET', () => {
  it('returns 503 naming the variable', async () => {
    const unconfigured = await createTestContext();
    try {
      const response = await createApp(unconfigured).request('/webhooks/github', {
        method: 'POST',
        body: '{}',
      });
      expect(response.status).toBe(503);
      expect((await response.json()).error.message).toContain('WEBHOOK_SECRET is not set');
    } finally {
      await unconfigured.close();
    }
  });
});
