import { bigint, integer, pgTable, primaryKey, uuid } from 'drizzle-orm/pg-core';
import { timestamps } from './columns.ts';
import { prRuns } from './runs.ts';

/**
 * The one summary comment per pull request. Its row is locked while the comment is posted or
 * edited, so two reports of the same pull request never both create a comment.
 */
export const summaryComments = pgTable(
  'summary_comments',
  {
    repositoryId: bigint({ mode: 'number' }).notNull(),
    prNumber: integer().notNull(),
    /** GitHub's issue comment id; null until the comment is found or created. */
    commentId: bigint({ mode: 'number' }),
    /** The run whose findings the comment shows. */
    runId: uuid().references(() => prRuns.id, { onDelete: 'set null' }),
    ...timestamps,
  },
  (table) => [primaryKey({ columns: [table.repositoryId, table.prNumber] })],
);
