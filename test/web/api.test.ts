import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findings,
  installations,
  patchFiles,
  patchRequestFindings,
  patchRequests,
  prRuns,
  users,
} from '../../src/db/schema/index.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { testPlatformKeys, createTestContext, type TestContext } from '../helpers/context.ts';
import { createRunWithFindings } from '../helpers/web.ts';
import { waitForLockWait } from '../helpers/webhooks.ts';

let context: TestContext;
let app: ReturnType<typeof createApp>;
const people: Record<'owner' | 'stranger', { id: string; token: string }> = {} as never;
let runId: string;
let findingIds: string[];

beforeAll(async () => {
  context = await createTestContext({ BILLING_PERIOD: 'monthly', ...testPlatformKeys });
  app = createApp(context);
  for (const [index, role] of (['owner', 'stranger'] as const).entries()) {
    const [user] = await context.db
      .insert(users)
      .values({ login: `api-${role}`, githubId: 100 + index, tokenLimit: 1000, tokensUsed: 250 * (index + 1) })
      .returning();
    const { token } = await mintApiToken(context.db, user!.id, 'tests');
    people[role] = { id: user!.id, token };
  }
  await context.db.insert(installations).values({
    id: 501,
    accountLogin: 'api-owner',
    accountId: 100,
    accountType: 'User',
    userId: people.owner.id,
  });
  const [older] = await context.db
    .insert(prRuns)
    .values({
      installationId: 501,
      repositoryId: 9,
      repository: 'api-owner/app',
      prNumber: 7,
      baseSha: 'a'.repeat(40),
      headSha: 'b'.repeat(40),
      headRef: 'feature',
      headRepository: 'api-owner/app',
      status: 'completed',
      createdAt: new Date('2026-01-01T00:00:00Z'),
    })
    .returning();
  const [newer] = await context.db
    .insert(prRuns)
    .values({
      installationId: 501,
      repositoryId: 9,
      repository: 'api-owner/app',
      prNumber: 7,
      baseSha: 'a'.repeat(40),
      headSha: 'c'.repeat(40),
      headRef: 'feature',
      headRepository: 'api-owner/app',
      status: 'completed',
      createdAt: new Date('2026-01-02T00:00:00Z'),
    })
    .returning();
  expect(older).toBeDefined();
  runId = newer!.id;
  const inserted = await context.db
    .insert(findings)
    .values([
      { runId, path: 'b.ts', startLine: 4, endLine: 4, ruleId: 'todo-comment', severity: 'notice', message: 'New TODO.', fingerprint: 'f1' },
      { runId, path: 'a.ts', startLine: 9, endLine: 9, ruleId: 'debug/debugger', severity: 'warning', message: 'Remove debugger.', fingerprint: 'f2' },
    ])
    .returning();
  findingIds = inserted.map((row) => row.id);
});

afterAll(async () => {
  await context.close();
});

function call(caller: keyof typeof people | null, path: string, init: RequestInit = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (caller) headers.authorization = `Bearer ${people[caller].token}`;
  return app.request(path, { ...init, headers });
}

describe('JSON API authentication', () => {
  it('rejects a request without a token', async () => {
    const response = await call(null, '/api/runs');
    expect(response.status).toBe(401);
    expect((await response.json()).error.message).toContain('fixwright users token');
  });

  it('rejects an unknown token', async () => {
    const response = await app.request('/api/runs', { headers: { authorization: 'Bearer fxw_nope' } });
    expect(response.status).toBe(401);
  });
});

describe('JSON API caching', () => {
  it('forbids caching every response', async () => {
    const responses = {
      ok: await call('owner', `/api/runs/${runId}`),
      notFound: await call('stranger', `/api/runs/${runId}`),
      unauthorized: await call(null, `/api/runs/${runId}`),
    };
    expect(responses.ok.status).toBe(200);
    expect(responses.notFound.status).toBe(404);
    expect(responses.unauthorized.status).toBe(401);
    for (const [name, response] of Object.entries(responses)) {
      expect(response.headers.get('cache-control'), name).toBe('private, no-store');
    }
  });
});

describe('GET /api/runs', () => {
  it('lists the caller runs newest first', async () => {
    const response = await call('owner', '/api/runs?repository=api-owner/app&pr=7');
    expect(response.status).toBe(200);
    const { runs } = await response.json();
    expect(runs.map((run: { headSha: string }) => run.headSha)).toEqual(['c'.repeat(40), 'b'.repeat(40)]);
  });

  it('matches the repository without case', async () => {
    const response = await call('owner', '/api/runs?repository=API-Owner/App&pr=7');
    expect(response.status).toBe(200);
    const { runs } = await response.json();
    expect(runs.map((run: { headSha: string }) => run.headSha)).toEqual(['c'.repeat(40), 'b'.repeat(40)]);
    expect(runs.map((run: { repository: string }) => run.repository)).toEqual(['api-owner/app', 'api-owner/app']);
  });

  it('filters by repository through an index', async () => {
    const plan = await context.db.transaction(async (tx) => {
      // On a table this small the planner picks a sequential scan unless that is disabled.
      await tx.execute(sql`SET LOCAL enable_seqscan = off`);
      return tx.execute<{ 'QUERY PLAN': string }>(
        sql`EXPLAIN SELECT id FROM pr_runs WHERE lower(repository) = lower(${'API-Owner/App'}) AND pr_number = 7`,
      );
    });
    const text = plan.map((row) => row['QUERY PLAN']).join('\n');
    expect(text).toContain('pr_runs_lower_repository_pr_number_index');
  });

  it('shows another user nothing', async () => {
    const { runs } = await (await call('stranger', '/api/runs?repository=api-owner/app')).json();
    expect(runs).toEqual([]);
  });

  it('rejects a pull request number over the integer range', async () => {
    const response = await call('owner', '/api/runs?pr=2147483648');
    expect(response.status).toBe(400);
    expect((await response.json()).error.message).toBe(
      'Invalid pr "2147483648": expected a pull request number such as 12, at most 2147483647.',
    );
  });

  it('names each invalid query parameter', async () => {
    const cases: [string, string][] = [
      ['pr=abc', 'Invalid pr "abc": expected a pull request number such as 12.'],
      ['pr=1.5', 'Invalid pr "1.5": expected a pull request number such as 12.'],
      ['pr=0', 'Invalid pr "0": expected a pull request number such as 12, more than 0.'],
      ['limit=500', 'Invalid limit "500": expected a whole number from 1 to 200.'],
      [
        'pr=abc&limit=x',
        'Invalid pr "abc": expected a pull request number such as 12. ' +
          'Invalid limit "x": expected a whole number from 1 to 200.',
      ],
    ];
    for (const [query, expected] of cases) {
      const response = await call('owner', `/api/runs?${query}`);
      expect(response.status, query).toBe(400);
      const { error } = await response.json();
      expect(error.code, query).toBe('bad_request');
      expect(error.message, query).toBe(expected);
    }
  });

  it('rejects a repeated query parameter', async () => {
    const cases: [string, string, string[]][] = [
      [
        'repository=api-owner/app&repository=other/app',
        'Invalid query: repository is sent 2 times; send each parameter once.',
        ['repository'],
      ],
      [
        'limit=1&pr=7&limit=500&pr=8&pr=9',
        'Invalid query: pr is sent 3 times and limit 2 times; send each parameter once.',
        ['pr', 'limit'],
      ],
    ];
    for (const [query, expected, fields] of cases) {
      const response = await call('owner', `/api/runs?${query}`);
      expect(response.status, query).toBe(400);
      const { error } = await response.json();
      expect(error.code, query).toBe('bad_request');
      expect(error.message, query).toBe(expected);
      expect(error.fields, query).toEqual(fields);
    }
  });

  it('rejects numbers in other notations', async () => {
    // Number() reads all of these, as 16, 10, 12, 3 and 100.
    const cases: [string, string][] = [
      ['pr=0x10', 'Invalid pr "0x10": expected a pull request number such as 12.'],
      ['pr=1e1', 'Invalid pr "1e1": expected a pull request number such as 12.'],
      ['pr=%2012', 'Invalid pr " 12": expected a pull request number such as 12.'],
      ['limit=0b11', 'Invalid limit "0b11": expected a whole number from 1 to 200.'],
      ['limit=1e2', 'Invalid limit "1e2": expected a whole number from 1 to 200.'],
    ];
    for (const [query, expected] of cases) {
      const response = await call('owner', `/api/runs?${query}`);
      expect(response.status, query).toBe(400);
      expect((await response.json()).error.message, query).toBe(expected);
    }
  });

  it('rejects NUL in the query string', async () => {
    const response = await call('owner', '/api/runs?repository=o%00/app');
    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.code).toBe('bad_request');
    expect(error.message).toContain('Invalid query parameter "repository"');
  });

  it('rejects an invalid repository filter', async () => {
    const response = await call('owner', '/api/runs?repository=justaname');
    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.message).toBe(
      'Invalid repository "justaname": expected OWNER/NAME such as octo-org/widgets, each part at most 100 characters.',
    );
    expect(error.fields).toEqual(['repository']);
  });
});

describe('GET /api/runs/:runId', () => {
  it('returns the run with findings sorted by path', async () => {
    const body = await (await call('owner', `/api/runs/${runId}`)).json();
    expect(body.headSha).toBe('c'.repeat(40));
    expect(body.findings.map((finding: { path: string; line: number; rule: string }) => [finding.path, finding.line, finding.rule])).toEqual([
      ['a.ts', 9, 'debug/debugger'],
      ['b.ts', 4, 'todo-comment'],
    ]);
  });

  it('returns what the run left out', async () => {
    await context.db
      .update(prRuns)
      .set({
        uncheckedFiles: ['data/large.sql', 'logo.png'],
        uncheckedFileReasons: [{ path: 'logo.png', reason: 'binary file, not checked' }],
        unlistedFiles: 2,
        omittedFindings: 3,
      })
      .where(eq(prRuns.id, runId));
    try {
      const body = await (await call('owner', `/api/runs/${runId}`)).json();
      expect(body.uncheckedFiles).toEqual(['data/large.sql', 'logo.png']);
      expect(body.uncheckedFileReasons).toEqual([{ path: 'logo.png', reason: 'binary file, not checked' }]);
      expect(body.unlistedFiles).toBe(2);
      expect(body.omittedFindings).toBe(3);
    } finally {
      await context.db
        .update(prRuns)
        .set({ uncheckedFiles: [], uncheckedFileReasons: [], unlistedFiles: 0, omittedFindings: 0 })
        .where(eq(prRuns.id, runId));
    }
  });

  it('returns unchecked paths as stored', async () => {
    // PostgreSQL quotes these elements in its text[] output and escapes `\\` and `"` in them.
    const paths = ['dir\\name.ts', 'ends-in\\', 'say "hi".ts', 'a,b{c}.ts', 'NULL', ' spaced ', ''];
    await context.db.update(prRuns).set({ uncheckedFiles: paths }).where(eq(prRuns.id, runId));
    try {
      const body = await (await call('owner', `/api/runs/${runId}`)).json();
      expect(body.uncheckedFiles).toEqual(paths);
    } finally {
      await context.db.update(prRuns).set({ uncheckedFiles: [] }).where(eq(prRuns.id, runId));
    }
  });

  it('finds a run by its upper-case id', async () => {
    const response = await call('owner', `/api/runs/${runId.toUpperCase()}`);
    expect(response.status).toBe(200);
    expect((await response.json()).id).toBe(runId);
  });

  it('answers 404 to another user', async () => {
    const response = await call('stranger', `/api/runs/${runId}`);
    expect(response.status).toBe(404);
  });

  it('answers 404 to an id that is not a uuid', async () => {
    const response = await call('owner', '/api/runs/not-a-uuid');
    expect(response.status).toBe(404);
  });
});

/**
 * Gives the owner an allowance that covers every preview of the block, which the platform key
 * charges, and restores the 1,000 tokens that the usage tests expect afterwards.
 */
function withLargeAllowance() {
  beforeAll(async () => {
    await context.db.update(users).set({ tokenLimit: 100_000 }).where(eq(users.id, people.owner.id));
  });
  afterAll(async () => {
    await context.db.update(users).set({ tokenLimit: 1000 }).where(eq(users.id, people.owner.id));
  });
}

describe('POST /api/runs/:runId/patch-requests', () => {
  withLargeAllowance();

  it('creates a patch request owned by the caller', async () => {
    const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds }),
    });
    expect(response.status).toBe(202);
    const { id } = await response.json();
    const [stored] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, id));
    expect(stored).toMatchObject({ userId: people.owner.id, runId, status: 'queued' });
    const jobs = await context.boss.fetch('preview', { batchSize: 5 });
    expect(jobs.map((job) => job.data)).toContainEqual({ patchRequestId: id });

    const read = await call('owner', `/api/patch-requests/${id}`);
    expect(read.status).toBe(200);
    expect(await read.json()).toMatchObject({ id, status: 'queued', files: [] });
    expect((await call('stranger', `/api/patch-requests/${id}`)).status).toBe(404);
  });

  it('answers 404 to a preview id that is not a uuid', async () => {
    const response = await call('owner', '/api/patch-requests/not-a-uuid');

    expect(response.status).toBe(404);
    const { error } = await response.json();
    expect(error.message).toBe('Patch request "not-a-uuid" not found.');
  });

  it('shortens long ids in errors', async () => {
    const longId = 'a'.repeat(9000);
    const quoted = `"${'a'.repeat(78)}…`;
    const cases: [string, string, RequestInit, number, string][] = [
      ['run', `/api/runs/${longId}`, {}, 404, `Run ${quoted} not found.`],
      [
        'patch request of a run',
        `/api/runs/${longId}/patch-requests`,
        { method: 'POST', body: JSON.stringify({ findingIds }) },
        404,
        `Run ${quoted} not found.`,
      ],
      ['patch request', `/api/patch-requests/${longId}`, {}, 404, `Patch request ${quoted} not found.`],
      [
        'apply',
        `/api/patch-requests/${longId}/apply`,
        { method: 'POST' },
        404,
        `Patch request ${quoted} not found.`,
      ],
      [
        'provider',
        `/api/user/keys/${longId}`,
        { method: 'DELETE' },
        400,
        `Unknown provider "${'a'.repeat(38)}…: use groq or gemini.`,
      ],
      ['route', `/api/nothing/${longId}`, {}, 404, `No route for GET /api/nothing/${'a'.repeat(186)}….`],
      [
        'query parameter with NUL',
        `/api/runs?${longId}%00=1`,
        {},
        400,
        `Invalid query parameter "${'a'.repeat(78)}…: it contains a NUL character (%00); remove it.`,
      ],
    ];
    for (const [name, path, init, status, message] of cases) {
      const response = await call('owner', path, init);
      expect(response.status, name).toBe(status);
      const { error } = await response.json();
      expect(error.message, name).toBe(message);
    }
  });

  it('accepts upper-case run and finding ids', async () => {
    // One finding, because the test above left a queued preview of both.
    const response = await call('owner', `/api/runs/${runId.toUpperCase()}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: [findingIds[0]!.toUpperCase()] }),
    });
    expect(response.status).toBe(202);
    const { id } = await response.json();
    const selected = await context.db
      .select({ findingId: patchRequestFindings.findingId })
      .from(patchRequestFindings)
      .where(eq(patchRequestFindings.patchRequestId, id));
    expect(selected.map((row) => row.findingId)).toEqual([findingIds[0]]);

    const read = await call('owner', `/api/patch-requests/${id.toUpperCase()}`);
    expect(read.status).toBe(200);
    expect((await read.json()).id).toBe(id);
  });

  it('answers 404 when another user asks for a fix', async () => {
    const response = await call('stranger', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds }),
    });
    expect(response.status).toBe(404);
  });

  it('rejects finding ids of another run', async () => {
    const foreign = '00000000-0000-4000-8000-000000000000';
    const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: [findingIds[0], foreign] }),
    });
    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.message).toContain(foreign);
    expect(error.unknownFindingIds).toEqual([foreign]);
  });

  it('names each invalid field once', async () => {
    const longRepository = 'a'.repeat(5000);
    const cases: [string, string][] = [
      [
        'pr=99999999999999999999',
        'Invalid pr "99999999999999999999": expected a pull request number such as 12, at most 2147483647.',
      ],
      [
        `repository=${longRepository}`,
        `Invalid repository "${'a'.repeat(78)}…: expected OWNER/NAME such as octo-org/widgets, ` +
          'each part at most 100 characters.',
      ],
      [
        `repository=${longRepository}&pr=99999999999999999999`,
        `Invalid repository "${'a'.repeat(78)}…: expected OWNER/NAME such as octo-org/widgets, ` +
          'each part at most 100 characters. Invalid pr "99999999999999999999": expected a pull ' +
          'request number such as 12, at most 2147483647.',
      ],
    ];
    for (const [query, expected] of cases) {
      const response = await call('owner', `/api/runs?${query}`);
      expect(response.status, query.slice(0, 40)).toBe(400);
      const { error } = await response.json();
      expect(error.message, query.slice(0, 40)).toBe(expected);
    }
  });

  it('rejects a repository filter with a part over 100 characters', async () => {
    const response = await call('owner', `/api/runs?repository=${'a'.repeat(101)}/b`);
    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.message).toContain('Invalid repository "aaaa');
    expect(error.message).toContain('each part at most 100 characters');
  });

  it('keeps the message short for 1,000 bad ids', async () => {
    const badIds = Array.from({ length: 1000 }, (_, index) => `not-an-id-${index}`);
    const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: badIds }),
    });
    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.message).toContain('Invalid findingIds[0] "not-an-id-0"');
    expect(error.message).toContain('Invalid findingIds[4] "not-an-id-4"');
    expect(error.message).not.toContain('findingIds[5]');
    expect(error.message).toContain('995 more problems are not listed.');
    expect(error.message.length).toBeLessThan(1000);
  });

  it('counts one problem not listed', async () => {
    const badIds = Array.from({ length: 6 }, (_, index) => `not-an-id-${index}`);
    const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: badIds }),
    });
    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.message).toContain('Invalid findingIds[4] "not-an-id-4"');
    expect(error.message).not.toContain('findingIds[5]');
    expect(error.message).toMatch(/ 1 more problem is not listed\.$/);
  });

  it('names five unknown finding ids and counts the rest', async () => {
    const foreign = Array.from(
      { length: 8 },
      (_, index) => `00000000-0000-4000-8000-00000000000${index}`,
    );
    const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: foreign }),
    });
    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.message).toContain(`${foreign[4]} and 3 more are not a finding of run`);
    expect(error.unknownFindingIds).toHaveLength(8);
  });

  it('rejects a body without findingIds, naming the field', async () => {
    const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findings: [] }),
    });
    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.code).toBe('bad_request');
    expect(error.message).toBe(
      'Missing findingIds: send a JSON body like {"findingIds": ["…"]}.',
    );
    expect(error.fields).toEqual(['findingIds']);
  });

  it('names each invalid finding id', async () => {
    const cases: [unknown, string][] = [
      [{ findingIds: [] }, 'Invalid findingIds []: expected at least 1 item.'],
      [
        { findingIds: 'abc' },
        'Invalid findingIds "abc": expected an array of finding ids from GET /api/runs/:runId.',
      ],
      [
        { findingIds: [findingIds[0], 'nope'] },
        'Invalid findingIds[1] "nope": expected a finding id from GET /api/runs/:runId.',
      ],
      [[1, 2], 'Invalid body [1,2]: expected a JSON object like {"findingIds": ["…"]}.'],
    ];
    for (const [body, expected] of cases) {
      const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
        method: 'POST',
        body: JSON.stringify(body),
      });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect((await response.json()).error.message, JSON.stringify(body)).toBe(expected);
    }
  });

  it('rejects a deeply nested body with 400', async () => {
    const depth = 100_000;
    const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: '['.repeat(depth) + ']'.repeat(depth),
    });
    expect(response.status).toBe(400);
    const { error } = await response.json();
    expect(error.code).toBe('bad_request');
    expect(error.message).toBe(
      'Invalid body (a deeply nested array): expected a JSON object like {"findingIds": ["…"]}.',
    );
  });

  it('rejects a body that is not JSON', async () => {
    const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: 'findingIds=1',
    });
    expect(response.status).toBe(400);
  });
});

describe('POST /api/runs/:runId/patch-requests repeated', () => {
  withLargeAllowance();

  function requestFix(runIdToFix: string, ids: string[]) {
    return call('owner', `/api/runs/${runIdToFix}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: ids }),
    });
  }

  async function requestsOfRun(runIdToFix: string) {
    return context.db.select().from(patchRequests).where(eq(patchRequests.runId, runIdToFix));
  }

  async function newRun() {
    return createRunWithFindings(context.db, {
      userId: people.owner.id,
      findings: [
        { path: 'src/a.ts', line: 2 },
        { path: 'src/b.ts', line: 4 },
      ],
    });
  }

  it('returns the queued preview of the same findings', async () => {
    const { run, findings: rows } = await newRun();
    const ids = rows.map((row) => row.id);
    const first = await requestFix(run.id, ids);
    expect(first.status).toBe(202);
    const created = await first.json();
    expect(created).toEqual({ id: expect.any(String), status: 'queued', created: true });

    // The same set in another order, with a repeated and an upper-case id.
    const second = await requestFix(run.id, [ids[1]!.toUpperCase(), ids[0]!, ids[1]!]);
    expect(second.status).toBe(200);
    expect(await second.json()).toEqual({ id: created.id, status: 'queued', created: false });
    expect(await requestsOfRun(run.id)).toHaveLength(1);
  });

  it('returns a running preview even when its holds use the allowance', async () => {
    const { run, findings: rows } = await newRun();
    const ids = rows.map((row) => row.id);
    const { id } = await (await requestFix(run.id, ids)).json();
    await context.db.update(patchRequests).set({ status: 'running' }).where(eq(patchRequests.id, id));
    const [owner] = await context.db.select().from(users).where(eq(users.id, people.owner.id));
    const remaining = owner!.tokenLimit - owner!.tokensUsed;
    await context.db.update(users).set({ tokensReserved: remaining }).where(eq(users.id, people.owner.id));
    try {
      const second = await requestFix(run.id, ids);
      expect(second.status).toBe(200);
      expect(await second.json()).toEqual({ id, status: 'running', created: false });
    } finally {
      await context.db.update(users).set({ tokensReserved: 0 }).where(eq(users.id, people.owner.id));
    }
  });

  it('creates a preview for another set of findings', async () => {
    const { run, findings: rows } = await newRun();
    const first = await requestFix(run.id, [rows[0]!.id, rows[1]!.id]);
    const second = await requestFix(run.id, [rows[0]!.id]);
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect((await second.json()).id).not.toBe((await first.json()).id);
    expect(await requestsOfRun(run.id)).toHaveLength(2);
  });

  it('creates a new preview once the earlier one finished', async () => {
    const { run, findings: rows } = await newRun();
    const ids = rows.map((row) => row.id);
    const { id } = await (await requestFix(run.id, ids)).json();
    await context.db.update(patchRequests).set({ status: 'ready' }).where(eq(patchRequests.id, id));
    const second = await requestFix(run.id, ids);
    expect(second.status).toBe(202);
    expect((await second.json()).id).not.toBe(id);
  });

  it('creates one preview for two requests at once', async () => {
    const { run, installationId, findings: rows } = await newRun();
    const ids = rows.map((row) => row.id);
    // Both requests wait behind a lock on the installation, so that they look for an active
    // preview at the same moment.
    let responses!: Promise<Response[]>;
    await context.db.transaction(async (tx) => {
      await tx.execute(sql`SELECT 1 FROM installations WHERE id = ${installationId} FOR UPDATE`);
      responses = Promise.all([requestFix(run.id, ids), requestFix(run.id, ids)]);
      await waitForLockWait(context, 10_000, 2);
    });

    const [first, second] = await responses;
    expect([first!.status, second!.status].sort()).toEqual([200, 202]);
    const bodies = [await first!.json(), await second!.json()];
    expect(bodies[0].id).toBe(bodies[1].id);
    const stored = await requestsOfRun(run.id);
    expect(stored.map((request) => request.id)).toEqual([bodies[0].id]);
  });
});

describe('JSON API body limit', () => {
  const oversized = JSON.stringify({ findingIds: [], padding: 'x'.repeat(1024 * 1024) });

  it('rejects a streamed body over 1 MB', async () => {
    const response = await call('owner', `/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: oversized,
    });
    expect(response.status).toBe(413);
    const { error } = await response.json();
    expect(error.code).toBe('payload_too_large');
    expect(error.message).toContain('1048576 bytes');
  });

  it('rejects a declared Content-Length over 1 MB', async () => {
    const response = await app.request('/api/user/keys/groq', {
      method: 'PUT',
      body: oversized,
      headers: {
        authorization: `Bearer ${people.owner.token}`,
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(oversized)),
      },
    });
    expect(response.status).toBe(413);
    expect((await response.json()).error.code).toBe('payload_too_large');
  });
});

describe('POST /api/patch-requests/:id/apply', () => {
  it('answers 503 naming the missing GitHub App settings', async () => {
    const [request] = await context.db
      .insert(patchRequests)
      .values({ runId, userId: people.owner.id, status: 'ready', filesTotal: 1, filesDone: 1 })
      .returning();
    await context.db.insert(patchFiles).values({
      patchRequestId: request!.id,
      path: 'a.ts',
      status: 'ready',
      originalText: 'debugger;\n',
      proposedText: '\n',
      diff: '--- a/a.ts\n+++ b/a.ts\n',
    });
    const response = await call('owner', `/api/patch-requests/${request!.id}/apply`, {
      method: 'POST',
      body: '{}',
    });
    expect(response.status).toBe(503);
    const { error } = await response.json();
    expect(error.code).toBe('not_configured');
    expect(error.message).toContain('set APP_ID and PRIVATE_KEY');
  });
});

describe('GET /api/user/usage', () => {
  it('returns plan, limit, usage, period and own keys', async () => {
    await context.db
      .update(users)
      .set({
        tokensUsed: 850,
        tokensReserved: 60,
        periodStartedAt: new Date('2026-12-01T00:00:00Z'),
        periodAnchorAt: new Date('2026-12-01T00:00:00Z'),
      })
      .where(eq(users.id, people.owner.id));
    const body = await (await call('owner', '/api/user/usage')).json();
    expect(body).toEqual({
      plan: 'free',
      limit: 1000,
      unlimited: false,
      used: 850,
      reserved: 60,
      remaining: 90,
      percent: 91,
      nearLimit: true,
      periodStart: '2026-12-01T00:00:00.000Z',
      periodEnd: '2027-01-01T00:00:00.000Z',
      ownKeys: { groq: false, gemini: false },
    });
  });

  it('ends a clamped period on the anchor day', async () => {
    await context.db
      .update(users)
      .set({
        periodStartedAt: new Date('2027-02-28T07:45:00Z'),
        periodAnchorAt: new Date('2027-01-31T07:45:00Z'),
      })
      .where(eq(users.id, people.owner.id));
    const body = await (await call('owner', '/api/user/usage')).json();
    expect(body.periodStart).toBe('2027-02-28T07:45:00.000Z');
    expect(body.periodEnd).toBe('2027-03-31T07:45:00.000Z');
  });

  it('reports unlimited plans without a remaining count', async () => {
    await context.db
      .update(users)
      .set({ plan: 'enterprise', tokenLimit: -1, tokensUsed: 5_000_000 })
      .where(eq(users.id, people.stranger.id));
    const body = await (await call('stranger', '/api/user/usage')).json();
    expect(body).toMatchObject({ plan: 'enterprise', unlimited: true, remaining: null, percent: 0, nearLimit: false });
  });

  it('rounds percent down to one decimal', async () => {
    const [user] = await context.db.insert(users).values({ login: 'api-rounding' }).returning();
    const { token } = await mintApiToken(context.db, user!.id, 'tests');
    const cases = [
      { limit: 100_000, used: 99_951, reserved: 0, percent: 99.9, remaining: 49, nearLimit: true },
      { limit: 100_000, used: 99_000, reserved: 999, percent: 99.9, remaining: 1, nearLimit: true },
      { limit: 100_000, used: 100_000, reserved: 0, percent: 100, remaining: 0, nearLimit: true },
      { limit: 10_000, used: 8_995, reserved: 0, percent: 89.9, remaining: 1_005, nearLimit: false },
      { limit: 1000, used: 900, reserved: 0, percent: 90, remaining: 100, nearLimit: true },
      { limit: 3, used: 1, reserved: 0, percent: 33.3, remaining: 2, nearLimit: false },
      { limit: 1000, used: 1000, reserved: 400, percent: 100, remaining: 0, nearLimit: true },
    ];
    for (const { limit, used, reserved, ...expected } of cases) {
      await context.db
        .update(users)
        .set({ tokenLimit: limit, tokensUsed: used, tokensReserved: reserved })
        .where(eq(users.id, user!.id));
      const response = await app.request('/api/user/usage', { headers: { authorization: `Bearer ${token}` } });
      const body = await response.json();
      const label = `${used} + ${reserved} of ${limit}`;
      expect(body.percent, label).toBe(expected.percent);
      expect(body.remaining, label).toBe(expected.remaining);
      expect(body.nearLimit, label).toBe(expected.nearLimit);
    }
  });
});
