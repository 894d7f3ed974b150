import { createHash } from 'node:crypto';
import { eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { excerptMaskVersion } from '../../src/analysis/mask-version.ts';
import { findings } from '../../src/db/schema/index.ts';
import { remaskStoredExcerpts } from '../../src/jobs/remask-excerpts.ts';
import { startWorkers } from '../../src/jobs/workers.ts';
import { listRunFindings } from '../../src/runs/run-findings.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, logsOf, type TestContext } from '../helpers/context.ts';
import { createRunWithFindings, createSignedInUser, type SignedInUser } from '../helpers/web.ts';

// Excerpts as the rules before mask version 2 stored them, and as the current rules mask them.
const storedExcerpts = [
  {
    path: 'src/a.ts',
    stored: 'fetch("https://h/x?user=a&password=hunter2");',
    masked: 'fetch("https://h/x?user=a&password=h*****2");',
  },
  {
    path: 'src/b.ts',
    stored: 'const headers = { Authorization: "Bearer a8Fk29dLq83mZpQ7" };',
    masked: 'const headers = { Authorization: "Bearer a8Fk********ZpQ7" };',
  },
  {
    path: 'src/c.ts',
    stored: 'const url = "postgres://u:pa/ss?w#rd@db:5432/app";',
    masked: 'const url = "postgres://u:pa******rd@db:5432/app";',
  },
  {
    path: 'src/d.ts',
    stored: 'const password = "hun********er2"; console.log(password);',
    masked: 'const password = "hun********er2"; console.log(password);',
  },
  { path: 'src/e.ts', stored: "console.log('x');", masked: "console.log('x');" },
];

let context: TestContext;
let user: SignedInUser;
let runId: string;

beforeAll(async () => {
  context = await createTestContext();
  user = await createSignedInUser(context.db, { login: 'remask-user' });
});

afterAll(async () => {
  await context.close();
});

beforeEach(async () => {
  // Each test gets a run of its own, and the rows of earlier tests are masked first, so that
  // a batch reads only the rows of this test.
  await remaskStoredExcerpts(context);
  const { run } = await createRunWithFindings(context.db, {
    userId: user.userId,
    findings: storedExcerpts.map(({ path, stored }) => ({ path, line: 1, excerpt: stored })),
  });
  runId = run.id;
});

async function storedRows() {
  return context.db
    .select()
    .from(findings)
    .where(eq(findings.runId, runId))
    .orderBy(findings.path);
}

/**
 * Inserts a finding of this test's run for each of `excerpts`, stored under `maskVersion`, with
 * the path `src/v<maskVersion>-<index>.ts` and the fingerprint `fp-v<maskVersion>-<index>`.
 */
async function insertExcerpts(excerpts: readonly string[], maskVersion: number) {
  return context.db
    .insert(findings)
    .values(
      excerpts.map((excerpt, index) => ({
        runId,
        path: `src/v${maskVersion}-${index}.ts`,
        startLine: 1,
        endLine: 1,
        ruleId: 'debug/console-log',
        severity: 'warning' as const,
        message: 'Remove the console.log call.',
        excerpt,
        fingerprint: `fp-v${maskVersion}-${index}`,
        maskVersion,
      })),
    )
    .returning();
}

describe('findings stored before a mask', () => {
  it('store the version before mask versions', async () => {
    const rows = await storedRows();
    expect(rows.map((row) => row.maskVersion)).toEqual([1, 1, 1, 1, 1]);
    expect(excerptMaskVersion).toBe(4);
  });

  it('are masked when listed', async () => {
    const listed = await listRunFindings(context.db, runId);
    expect(listed.map((row) => row.excerpt)).toEqual(storedExcerpts.map((row) => row.masked));

    // A read writes nothing, so the job still finds the rows.
    const rows = await storedRows();
    expect(rows.map((row) => row.excerpt)).toEqual(storedExcerpts.map((row) => row.stored));
  });

  it('are masked in the runs API', async () => {
    const app = createApp(context);
    const { token } = await mintApiToken(context.db, user.userId, 'remask');
    const response = await app.request(`/api/runs/${runId}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { findings: { path: string; excerpt: string }[] };
    expect(body.findings.map((finding) => finding.excerpt)).toEqual(
      storedExcerpts.map((row) => row.masked),
    );
  });

  it('are masked on the run page', async () => {
    const app = createApp(context);
    const response = await app.request(`/runs/${runId}`, { headers: { cookie: user.cookie } });
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).not.toContain('hunter2');
    expect(html).not.toContain('a8Fk29dLq83mZpQ7');
    expect(html).not.toContain('pa/ss?w#rd');
    expect(html).toContain('password=h*****2');
    expect(html).toContain('Bearer a8Fk********ZpQ7');
    expect(html).toContain('postgres://u:pa******rd@db:5432/app');
  });
});

describe('remaskStoredExcerpts', () => {
  it('rewrites excerpts in bounded batches', async () => {
    const first = await remaskStoredExcerpts(context, { batchSize: 2, maxBatches: 1 });
    expect(first).toEqual({ rows: 2, changed: expect.any(Number), more: true });
    const afterFirst = await storedRows();
    expect(afterFirst.filter((row) => row.maskVersion === excerptMaskVersion)).toHaveLength(2);

    const rest = await remaskStoredExcerpts(context, { batchSize: 2 });
    expect(rest.rows).toBe(3);
    expect(rest.more).toBe(false);
    expect(first.changed + rest.changed).toBe(3);

    const rows = await storedRows();
    expect(rows.map((row) => row.excerpt)).toEqual(storedExcerpts.map((row) => row.masked));
    expect(rows.map((row) => row.maskVersion)).toEqual(Array(5).fill(excerptMaskVersion));

    const again = await remaskStoredExcerpts(context, { batchSize: 2 });
    expect(again).toEqual({ rows: 0, changed: 0, more: false });
  });

  it('replaces the fingerprints of changed excerpts only', async () => {
    const before = await storedRows();
    await remaskStoredExcerpts(context);
    const after = await storedRows();

    for (const [index, row] of after.entries()) {
      const old = before[index]!;
      if (row.excerpt === old.excerpt) {
        expect(row.fingerprint, row.path).toBe(old.fingerprint);
      } else {
        const expected = createHash('sha256')
          .update([row.ruleId, row.path, row.excerpt, row.id].join('\0'))
          .digest('hex');
        expect(row.fingerprint, row.path).toBe(expected);
      }
    }
    expect(after.filter((row, index) => row.fingerprint !== before[index]!.fingerprint)).toHaveLength(3);
  });

  it('masks rows of version 2 with the current rules', async () => {
    const stored = [
      'headers: {Authorization: Bearer ghx9f8e7d6c5b4a3z2y1x0w}  # TODO rotate this',
      'DATABASE_URL=postgres://app:p@ss/w:rd9999secret@db/app',
      'fetch("https://maps.googleapis.com/api?key=AIzaSyA1234567890abcdefghijkl");',
    ];
    const rows = await insertExcerpts(stored, 2);
    await remaskStoredExcerpts(context);

    const remasked = await Promise.all(
      rows.map(async (row) => {
        const [found] = await context.db.select().from(findings).where(eq(findings.id, row.id));
        return found!;
      }),
    );
    expect(remasked.map((row) => row.excerpt)).toEqual([
      'headers: {Authorization: Bearer ghx9***************1x0w}  # TODO rotate this',
      'DATABASE_URL=postgres://app:p@ss***********cret@db/app',
      'fetch("https://maps.googleapis.com/api?key=AIza*********************ijkl");',
    ]);
    expect(remasked.map((row) => row.maskVersion)).toEqual([4, 4, 4]);
    expect(remasked.map((row) => row.fingerprint)).not.toContain('fp-v2-0');
  });

  it('masks rows of version 3 with the rules of version 4', async () => {
    const stored = [
      'const url = "https://u:p/a@ss@host.example/";',
      "log('Bearer abc123def456 is the token');",
      'const re = /a?token=**; // Bearer token123 is used',
      'const url = "https://u:ab/@cd1234@host.internal/";',
    ];
    const rows = await insertExcerpts(stored, 3);
    const masked = [
      'const url = "https://u:p****s@host.example/";',
      "log('Bearer abc******456 is the token');",
      'const re = /a?token=**; // Bearer token123 is used',
      'const url = "https://u:ab******34@host.internal/";',
    ];

    const listed = await listRunFindings(context.db, runId);
    const listedV3 = listed.filter((row) => row.path.startsWith('src/v3-'));
    expect(listedV3.map((row) => row.excerpt)).toEqual(masked);

    await remaskStoredExcerpts(context);
    const ids = rows.map((row) => row.id);
    const remasked = await context.db
      .select()
      .from(findings)
      .where(inArray(findings.id, ids))
      .orderBy(findings.path);
    expect(remasked.map((row) => row.excerpt)).toEqual(masked);
    expect(remasked.map((row) => row.maskVersion)).toEqual([4, 4, 4, 4]);
    expect(remasked.map((row) => row.fingerprint)).toEqual([
      expect.not.stringMatching(/^fp-v3-0$/),
      expect.not.stringMatching(/^fp-v3-1$/),
      'fp-v3-2',
      expect.not.stringMatching(/^fp-v3-3$/),
    ]);
  });

  it('leaves rows of the current version alone', async () => {
    const [row] = await context.db
      .insert(findings)
      .values({
        runId,
        path: 'src/f.ts',
        startLine: 1,
        endLine: 1,
        ruleId: 'debug/console-log',
        severity: 'warning',
        message: 'Remove the console.log call.',
        excerpt: 'console.log("https://h/x?password=hunter2");',
        fingerprint: 'fp-current',
        maskVersion: excerptMaskVersion,
      })
      .returning();
    await remaskStoredExcerpts(context);

    const [stored] = await context.db.select().from(findings).where(eq(findings.id, row!.id));
    expect(stored!.excerpt).toBe('console.log("https://h/x?password=hunter2");');
    expect(stored!.fingerprint).toBe('fp-current');
  });
});

describe('workers', () => {
  it('mask stored excerpts again at start', async () => {
    // A context of its own, because the workers stop its pg-boss at the end.
    const own = await createTestContext();
    const owner = await createSignedInUser(own.db, { login: 'remask-worker-user' });
    const { run } = await createRunWithFindings(own.db, {
      userId: owner.userId,
      findings: storedExcerpts.map(({ path, stored }) => ({ path, line: 1, excerpt: stored })),
    });
    const workers = await startWorkers(own, own.database.url);
    try {
      const deadline = Date.now() + 30_000;
      let rows = await own.db.select().from(findings).where(eq(findings.runId, run.id));
      while (rows.some((row) => row.maskVersion < excerptMaskVersion)) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((resolve) => setTimeout(resolve, 200));
        rows = await own.db.select().from(findings).where(eq(findings.runId, run.id));
      }
      const byPath = rows.sort((left, right) => left.path.localeCompare(right.path));
      expect(byPath.map((row) => row.excerpt)).toEqual(storedExcerpts.map((row) => row.masked));
      expect(logsOf(own, 'job.remask_excerpts')).toEqual([
        expect.objectContaining({
          rows: 5,
          changed: 3,
          more: false,
          maskVersion: excerptMaskVersion,
        }),
      ]);
    } finally {
      await own.boss.stop({ graceful: false, wait: true });
      await workers.close();
      await own.close();
    }
  });
});
