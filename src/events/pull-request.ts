import { z } from 'zod';
import type { Transaction } from '../db/client.ts';
import { maxInteger } from '../db/schema/columns.ts';
import { installations, prRuns } from '../db/schema/index.ts';
import { transactionDb, type PgBoss } from '../jobs/boss.ts';
import { analyzeQueue, type AnalyzeJobData } from '../jobs/analyze.ts';

export const pullRequestPayload = z.object({
  action: z.string(),
  number: z.number().int().positive().max(maxInteger),
  installation: z.object({ id: z.number().int() }).optional(),
  repository: z.object({
    id: z.number().int(),
    full_name: z.string().regex(/^[^/\s]+\/[^/\s]+$/),
    owner: z.object({ id: z.number().int(), login: z.string(), type: z.string().optional() }),
  }),
  pull_request: z.object({
    title: z.string(),
    head: z.object({
      sha: z.string().regex(/^[0-9a-f]{40}$/),
      ref: z.string(),
      repo: z.object({ full_name: z.string() }).nullable(),
    }),
    base: z.object({ sha: z.string().regex(/^[0-9a-f]{40}$/), ref: z.string() }),
  }),
});
export type PullRequestPayload = z.infer<typeof pullRequestPayload>;

const analyzedActions = new Set(['opened', 'synchronize', 'reopened']);

/**
 * Creates one run per (repository, pull request, head sha) and queues its analysis in the
 * same transaction, so a run never exists without its job.
 */
export async function handlePullRequestEvent(
  tx: Transaction,
  boss: PgBoss,
  payload: PullRequestPayload,
): Promise<string> {
  if (!analyzedActions.has(payload.action)) {
    return `ignored: pull_request action ${payload.action}`;
  }
  const installationId = payload.installation?.id;
  if (!installationId) return 'ignored: the payload names no app installation';

  const { repository, pull_request: pullRequest } = payload;
  // The app may have been installed before this database existed; keep the run reachable.
  await tx
    .insert(installations)
    .values({
      id: installationId,
      accountLogin: repository.owner.login,
      accountId: repository.owner.id,
      accountType: repository.owner.type ?? 'User',
    })
    .onConflictDoNothing();

  const [run] = await tx
    .insert(prRuns)
    .values({
      installationId,
      repositoryId: repository.id,
      repository: repository.full_name,
      prNumber: payload.number,
      prTitle: pullRequest.title.slice(0, 1000),
      baseSha: pullRequest.base.sha,
      headSha: pullRequest.head.sha,
      headRef: pullRequest.head.ref,
      headRepository: pullRequest.head.repo?.full_name ?? repository.full_name,
    })
    .onConflictDoNothing()
    .returning({ id: prRuns.id });
  if (!run) {
    return `ignored: a run for ${repository.full_name}#${payload.number} at ${pullRequest.head.sha} exists`;
  }

  const data: AnalyzeJobData = { runId: run.id };
  await boss.send(analyzeQueue, data, { db: transactionDb(tx) });
  return `run ${run.id} queued`;
}
