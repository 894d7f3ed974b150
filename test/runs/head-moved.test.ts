import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prRuns } from '../../src/db/schema/index.ts';
import { analyzeRun } from '../../src/runs/analyze-run.ts';
import { commitOnBranch, headBranch } from '../../src/demo/git-repository.ts';
import {
  createGitHubTestContext,
  insertInstallation,
  insertRun,
  type GitHubTestContext,
} from '../helpers/github-context.ts';

let setup: GitHubTestContext;

beforeAll(async () => {
  setup = await createGitHubTestContext({
    base: { 'src/app.ts': 'export const a = 1;\n' },
    head: { 'src/app.ts': "export const a = 1;\nconsole.log('a', a);\n" },
  });
  await insertInstallation(setup.context, { id: setup.installationId });
});

afterAll(async () => {
  await setup?.close();
});

describe('analyzeRun', () => {
  it('supersedes a run whose commit is no longer the head', async () => {
    // The fake's pull request head stays at the first head commit; this run is for a later one.
    const laterSha = await commitOnBranch(setup.git.dir, headBranch, { 'b.txt': 'b\n' });
    const run = await insertRun(setup.context, {
      installationId: setup.installationId,
      headSha: laterSha,
      baseSha: setup.git.baseSha,
      status: 'queued',
    });

    const outcome = await analyzeRun(setup.context, run.id, setup.context.logger);

    expect(outcome).toEqual({ status: 'skipped', findings: 0, files: 0 });
    const [stored] = await setup.context.db.select().from(prRuns).where(eq(prRuns.id, run.id));
    expect(stored!.status).toBe('superseded');
    expect(stored!.error).toContain(`moved to ${setup.git.headSha}`);
    const listed = setup.fake.requests.filter((request) => request.path.endsWith('/files'));
    expect(listed).toHaveLength(0);
  });
});
