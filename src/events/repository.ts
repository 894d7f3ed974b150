import { and, eq, ne, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Transaction } from '../db/client.ts';
import { prRuns } from '../db/schema/index.ts';
import { pickForm } from '../text/plural.ts';
import { githubId } from './github-id.ts';
import { repositoryFullName } from './github-names.ts';
import { ignoredActionOutcome } from './outcome-values.ts';

export const repositoryPayload = z.object({
  action: z.string(),
  repository: z.object({
    id: githubId,
    full_name: repositoryFullName,
  }),
});
export type RepositoryPayload = z.infer<typeof repositoryPayload>;

/** Actions after which a repository has a new OWNER/NAME. */
const nameChangingActions = new Set(['renamed', 'transferred']);

/**
 * Gives the runs of a renamed or transferred repository its new OWNER/NAME, so that the runs
 * filter finds its older runs under the new name and later GitHub requests for those runs use
 * it. The head repository changes with it on runs whose pull request came from a branch of the
 * same repository.
 *
 * NOTE: The events carry no time to order them by, so two renames delivered out of order leave
 * the older name until the next rename. So does a run created from a pull_request event that
 * GitHub sent before the rename but delivered after it, because that payload has the old name.
 */
export async function handleRepositoryEvent(
  tx: Transaction,
  payload: RepositoryPayload,
): Promise<string> {
  if (!nameChangingActions.has(payload.action)) {
    return ignoredActionOutcome('repository', payload.action);
  }
  const { id, full_name: name } = payload.repository;
  const renamed = await tx
    .update(prRuns)
    .set({
      repository: name,
      headRepository: sql`CASE WHEN ${prRuns.headRepository} = ${prRuns.repository} THEN ${name} ELSE ${prRuns.headRepository} END`,
    })
    .where(and(eq(prRuns.repositoryId, id), ne(prRuns.repository, name)))
    .returning({ id: prRuns.id });
  const noun = pickForm(renamed.length, 'run', 'runs');
  return `repository ${id} is now ${name}; renamed ${renamed.length} ${noun}`;
}
