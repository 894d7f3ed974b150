import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { patchFiles, patchRequests } from '../../src/db/schema/index.ts';
import { createApp } from '../../src/web/app.tsx';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertReadyPatchRequest,
  insertRun,
  insertUser,
  type GitHubTestContext,
} from '../helpers/github-context.ts';
import { resetPullRequestHead } from '../helpers/apply-context.ts';

const execFileAsync = promisify(execFile);

const head = {
  'win.txt': 'one\r\ntwo\r\nthree\r\nfour\r\n',
  'nonl.txt': 'alpha\nbeta\ngamma',
  'bin/run.sh': '#!/bin/sh\necho hi\necho debug\n',
};
const proposed = {
  'win.txt': 'one\r\nTWO\r\nthree\r\nfour\r\n',
  'nonl.txt': 'alpha\nbeta\nGAMMA',
  'bin/run.sh': '#!/bin/sh\necho hi\n',
};

let setup: GitHubTestContext;
let app: ReturnType<typeof createApp>;
let user: Awaited<ReturnType<typeof insertUser>>;
let runId: string;

async function git(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', ['-C', setup.git.dir, ...args]);
  return stdout.trim();
}

async function blobBytes(commit: string, path: string): Promise<Buffer> {
  const { stdout } = await execFileAsync(
    'git',
    ['-C', setup.git.dir, 'cat-file', 'blob', `${commit}:${path}`],
    { encoding: 'buffer' },
  );
  return stdout;
}

function apply(id: string, body?: unknown, token = user.token) {
  return app.request(`/api/patch-requests/${id}/apply`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

function newRequest(files = proposed) {
  return insertReadyPatchRequest(setup.context, {
    runId,
    userId: user.id,
    files: Object.entries(files).map(([path, text]) => ({
      path,
      originalText: head[path as keyof typeof head],
      proposedText: text,
    })),
  });
}

/** Waits until a statement of this database waits for a row lock, for at most 10 s. */
async function waitForLockWait(): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const rows = await setup.context.db.execute(
      sql`SELECT 1 FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('Timed out after 10 s waiting for a statement to wait for a row lock.');
}

async function storedRequest(id: string) {
  const [stored] = await setup.context.db
    .select()
    .from(patchRequests)
    .where(eq(patchRequests.id, id));
  return stored!;
}

function commitRequests() {
  return setup.fake.requests.filter(
    (request) => request.method === 'POST' && request.path.endsWith('/git/commits'),
  );
}

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: {
      'win.txt': 'one\r\ntwo\r\nthree\r\n',
      'nonl.txt': 'alpha\nbeta',
      'bin/run.sh': { content: '#!/bin/sh\necho hi\n', mode: '100755' },
      'README.md': '# Widgets\n',
    },
    head: { ...head, 'bin/run.sh': { content: head['bin/run.sh'], mode: '100755' } },
  });
  app = createApp(setup.context);
  user = await insertUser(setup.context);
  await insertInstallation(setup.context, { id: setup.installationId, userId: user.id });
  const run = await insertRun(setup.context, {
    installationId: setup.installationId,
    headSha: setup.git.headSha,
    baseSha: setup.git.baseSha,
  });
  runId = run.id;
});

beforeEach(async () => {
  // A commit also moves the pull request's head on the fake GitHub, which Apply compares.
  await resetPullRequestHead(setup);
});

afterAll(async () => {
  await setup?.close();
});

describe('POST /api/patch-requests/:id/apply as commit', () => {
  it('commits the proposed bytes once', async () => {
    const request = await newRequest();
    const response = await apply(request.id);
    expect(response.status).toBe(200);
    const result = await response.json();

    expect(result.mode).toBe('commit');
    expect(result.alreadyApplied).toBe(false);
    expect(result.files).toEqual(['bin/run.sh', 'nonl.txt', 'win.txt']);
    expect(await git('rev-parse', headBranch)).toBe(result.commitSha);
    expect(await git('rev-list', '--count', `${setup.git.headSha}..${headBranch}`)).toBe('1');
    expect(await git('rev-parse', `${result.commitSha}^`)).toBe(setup.git.headSha);
    expect(await git('log', '-1', '--format=%s', result.commitSha)).toBe(
      'Apply Fixwright fixes to 3 files',
    );
    for (const [path, text] of Object.entries(proposed)) {
      const bytes = await blobBytes(result.commitSha, path);
      expect(Buffer.compare(bytes, Buffer.from(text, 'utf8')), path).toBe(0);
    }
    expect(await git('ls-tree', result.commitSha, 'bin/run.sh')).toMatch(/^100755 blob /);
    expect(await git('ls-tree', result.commitSha, 'win.txt')).toMatch(/^100644 blob /);
    expect(await git('rev-parse', `${result.commitSha}:README.md`)).toBe(
      await git('rev-parse', `${setup.git.headSha}:README.md`),
    );

    const [stored] = await setup.context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    expect(stored!.applyMode).toBe('commit');
    expect(stored!.appliedCommitSha).toBe(result.commitSha);
    expect(stored!.appliedAt).not.toBeNull();
    expect(stored!.applyStartedAt).toBeNull();
  });

  it('commits only once when applied twice', async () => {
    const request = await newRequest();
    const first = await (await apply(request.id)).json();
    const commitsBefore = commitRequests().length;
    const again = await apply(request.id, { mode: 'commit' });

    expect(again.status).toBe(200);
    const second = await again.json();
    expect(second.alreadyApplied).toBe(true);
    expect(second.commitSha).toBe(first.commitSha);
    expect(commitRequests()).toHaveLength(commitsBefore);
    expect(await git('rev-list', '--count', `${setup.git.headSha}..${headBranch}`)).toBe('1');
  });

  it('commits once for two concurrent applies', async () => {
    const request = await newRequest();
    const responses = await Promise.all([apply(request.id), apply(request.id)]);

    const statuses = responses.map((response) => response.status).sort();
    expect(statuses).toEqual([200, 409]);
    expect(await git('rev-list', '--count', `${setup.git.headSha}..${headBranch}`)).toBe('1');
    const rejected = await responses.find((response) => response.status === 409)!.json();
    expect(rejected.error.message).toContain('is being applied by another call');
  });

  it('commits nothing after a racing regeneration', async () => {
    const request = await newRequest();
    const commitsBefore = commitRequests().length;
    const { db } = setup.context;
    let signalLocked!: () => void;
    const locked = new Promise<void>((resolve) => (signalLocked = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    // Holds the request's row lock, as "Regenerate this file" does, until the apply has read the
    // ready files and waits to claim the request. Then it makes the writes that regeneration makes.
    const regeneration = db.transaction(async (tx) => {
      await tx.select().from(patchRequests).where(eq(patchRequests.id, request.id)).for('update');
      signalLocked();
      await released;
      await tx
        .update(patchFiles)
        .set({ status: 'pending', proposedText: null, originalText: null, diff: null })
        .where(eq(patchFiles.patchRequestId, request.id));
      await tx
        .update(patchRequests)
        .set({ status: 'running', completedAt: null })
        .where(eq(patchRequests.id, request.id));
    });
    await locked;

    const applying = apply(request.id);
    await waitForLockWait();
    release();
    await regeneration;
    const response = await applying;

    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toBe(
      `Patch request ${request.id} is still running; apply it once its preview is ready.`,
    );
    expect(commitRequests()).toHaveLength(commitsBefore);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.headSha);
    const [stored] = await db.select().from(patchRequests).where(eq(patchRequests.id, request.id));
    expect(stored!.applyStartedAt).toBeNull();
    expect(stored!.appliedAt).toBeNull();
  });

  it('records a commit that landed unrecorded', async () => {
    const request = await newRequest();
    const first = await (await apply(request.id)).json();
    // As if the process had died after the ref update but before storing the result.
    await setup.context.db
      .update(patchRequests)
      .set({ appliedAt: null, appliedCommitSha: null, applyMode: null })
      .where(eq(patchRequests.id, request.id));
    const response = await apply(request.id);

    expect(response.status).toBe(200);
    expect((await response.json()).commitSha).toBe(first.commitSha);
    expect(await git('rev-parse', headBranch)).toBe(first.commitSha);
  });

  it('answers 409 when the branch moved', async () => {
    const moved = await commitOnBranch(setup.git.dir, headBranch, { 'other.txt': 'pushed\n' });
    const request = await newRequest();
    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toContain(`moved from ${setup.git.headSha} to ${moved}`);
    expect(error.message).toContain('Request a new preview on the newest run of the pull request');
    expect(await git('rev-parse', headBranch)).toBe(moved);
    const stored = await storedRequest(request.id);
    expect(stored.appliedAt).toBeNull();
    expect(stored.applyStartedAt).toBeNull();
  });
  it('answers 409 when the branch went back', async () => {
    // A force push back to the base drops the previewed commit. A commit on top of that commit
    // would still be a fast forward from the base, so it would bring the dropped commit back.
    await git('update-ref', `refs/heads/${headBranch}`, setup.git.baseSha);
    const request = await newRequest();
    const response = await apply(request.id);

    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe('conflict');
    expect(error.message).toContain(`moved from ${setup.git.headSha} to ${setup.git.baseSha}`);
    expect(await git('rev-parse', headBranch)).toBe(setup.git.baseSha);
    const stored = await storedRequest(request.id);
    expect(stored.appliedAt).toBeNull();
    expect(stored.applyStartedAt).toBeNull();
  });
});

describe('POST /api/patch-requests/:id/apply checks', () => {
  it('answers 404 for another user', async () => {
    const request = await newRequest();
    const stranger = await insertUser(setup.context);
    const response = await apply(request.id, {}, stranger.token);
    expect(response.status).toBe(404);
    expect((await response.json()).error.message).toContain(request.id);
  });

  it('answers 409 for a failed preview', async () => {
    const request = await newRequest();
    await setup.context.db
      .update(patchRequests)
      .set({ status: 'failed' })
      .where(eq(patchRequests.id, request.id));
    const response = await apply(request.id);
    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toBe(
      `Patch request ${request.id} failed, so it has no file to apply; request a new preview.`,
    );
  });

  it('rejects an unknown mode', async () => {
    const request = await newRequest();
    const response = await apply(request.id, { mode: 'push' });
    expect(response.status).toBe(400);
    expect((await response.json()).error.message).toBe(
      'Invalid mode "push": expected "commit" or "suggestions".',
    );
  });
});
