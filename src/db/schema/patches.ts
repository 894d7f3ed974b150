import { relations, sql } from 'drizzle-orm';
import {
  bigint,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { timestamps } from './columns.ts';
import { findings, prRuns } from './runs.ts';
import { users } from './users.ts';

export const patchRequestStatuses = [
  'queued',
  'running',
  'ready',
  'partially_ready',
  'failed',
  'cancelled',
] as const;
export type PatchRequestStatus = (typeof patchRequestStatuses)[number];

/** Ways to apply a patch request: one commit on the head branch, or a review with suggestions. */
export const applyModes = ['commit', 'suggestions'] as const;
export type ApplyMode = (typeof applyModes)[number];

/**
 * Outcome of the check that a close of the pull request starts for an unconfirmed apply, when
 * the check found neither the commit nor the review.
 */
export interface ClosedApplyCheck {
  /**
   * `not_found`: GitHub showed that the write did not take effect. `not_checked`: reading
   * GitHub failed on every attempt, or the installation was suspended or uninstalled.
   */
  outcome: 'not_found' | 'not_checked';
  mode: ApplyMode;
  /** For mode `commit`, the commit that the unconfirmed ref update named. */
  commitSha: string | null;
  /** When the apply ended unconfirmed (`applyUnconfirmedAt`), as an ISO 8601 time. */
  unconfirmedAt: string;
  /** When the check ended, as an ISO 8601 time. */
  checkedAt: string;
}

export const patchRequests = pgTable(
  'patch_requests',
  {
    id: uuid().primaryKey().defaultRandom(),
    runId: uuid()
      .notNull()
      .references(() => prRuns.id, { onDelete: 'cascade' }),
    /** Whose allowance and keys pay for the model calls. */
    userId: uuid()
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    status: text({ enum: patchRequestStatuses }).notNull().default('queued'),
    error: text(),
    filesTotal: integer().notNull().default(0),
    filesDone: integer().notNull().default(0),
    totalTokens: bigint({ mode: 'number' }).notNull().default(0),
    completedAt: timestamp({ withTimezone: true }),
    /** pg-boss id of the preview job, so a superseded run or a closed pull request cancels it. */
    previewJobId: uuid(),
    /**
     * When the rate limit lifts that preview job `previewJobId` waits for, after GitHub
     * rate-limited an earlier job of the preview. Cleared when that job starts. It is stored as
     * soon as the rate-limited job's file read got the limit, while that job still ends its
     * model calls under way, before it queues the waiting job.
     */
    previewRateLimitedUntil: timestamp({ withTimezone: true }),
    /** Set while an apply is in progress, so two concurrent applies cannot both commit. */
    applyStartedAt: timestamp({ withTimezone: true }),
    applyMode: text({ enum: applyModes }),
    appliedAt: timestamp({ withTimezone: true }),
    /** The commit pushed to the head branch, for mode `commit`. */
    appliedCommitSha: text(),
    /** The pull request review with the suggestions, for mode `suggestions`. */
    appliedReviewId: bigint({ mode: 'number' }),
    /**
     * Message to the user about how the apply went, such as the suggestions that it posted after
     * GitHub rejected its commit of workflow files. Null for most applies.
     */
    appliedNote: text(),
    /**
     * pg-boss id of the apply job that continues an apply that GitHub rate-limited, so a
     * suspend or uninstall cancels it.
     */
    applyJobId: uuid(),
    /** When the rate limit lifts that apply job `applyJobId` waits for; cleared when it starts. */
    applyRateLimitedUntil: timestamp({ withTimezone: true }),
    /**
     * When apply job `applyJobId` starts, which met the claim of another call and waits for that
     * claim to be released or go stale. A release moves it to the release time. Cleared when the
     * job starts.
     */
    applyClaimWaitUntil: timestamp({ withTimezone: true }),
    /**
     * Reason the last apply job failed or was cancelled. Cleared when a new apply is accepted:
     * an API call claims the request, an apply job is queued for a rate limit, or an apply
     * succeeds.
     */
    applyError: text(),
    /**
     * When an apply ended without knowing whether its write took effect. GitHub returned a server
     * error, no response or an invalid response to the ref update or the review, and the read of
     * the branch or the reviews that checks the write failed too. Cleared once an apply records
     * its result or reads GitHub and finds that the write did not take effect.
     */
    applyUnconfirmedAt: timestamp({ withTimezone: true }),
    /** The mode of that unconfirmed write. */
    applyUnconfirmedMode: text({ enum: applyModes }),
    /** For mode `commit`, the commit that the unconfirmed ref update named. */
    applyUnconfirmedCommitSha: text(),
    /**
     * Outcome of the check of the unconfirmed write after the pull request closed, when that
     * check found no commit or review. `not_found` clears the unconfirmed columns, and
     * `not_checked` keeps them, so an apply after a reopen still looks for the write first.
     * Cleared when an apply claims the request.
     */
    applyClosedCheck: jsonb().$type<ClosedApplyCheck>(),
    ...timestamps,
  },
  (table) => [index().on(table.userId), index().on(table.runId)],
);

export const patchRequestFindings = pgTable(
  'patch_request_findings',
  {
    patchRequestId: uuid()
      .notNull()
      .references(() => patchRequests.id, { onDelete: 'cascade' }),
    findingId: uuid()
      .notNull()
      .references(() => findings.id, { onDelete: 'cascade' }),
  },
  (table) => [
    primaryKey({ columns: [table.patchRequestId, table.findingId] }),
    index().on(table.findingId),
  ],
);

export const patchFileStatuses = ['pending', 'running', 'ready', 'failed'] as const;
export type PatchFileStatus = (typeof patchFileStatuses)[number];

/** A ready result of a patch file, kept while the file is regenerated. */
export interface KeptPatchFileResult {
  /** Generation whose model call produced the result; the preview version names it. */
  generation: number;
  baseBlobSha: string | null;
  originalText: string;
  proposedText: string;
  diff: string | null;
  provider: string | null;
  model: string | null;
  totalTokens: number;
  /** The file's `keyNotice`; absent in results kept before that column. */
  keyNotice?: string | null;
}

export const patchFiles = pgTable(
  'patch_files',
  {
    id: uuid().primaryKey().defaultRandom(),
    patchRequestId: uuid()
      .notNull()
      .references(() => patchRequests.id, { onDelete: 'cascade' }),
    path: text().notNull(),
    /** Git blob sha of the file at the previewed head commit. */
    baseBlobSha: text(),
    originalText: text(),
    proposedText: text(),
    diff: text(),
    status: text({ enum: patchFileStatuses }).notNull().default('pending'),
    error: text(),
    provider: text(),
    model: text(),
    totalTokens: bigint({ mode: 'number' }).notNull().default(0),
    /**
     * Message that names the user's own key that its provider rejected and the user's own key of
     * the next provider that produced the result instead. Null when the first key tried did.
     */
    keyNotice: text(),
    /** Bumped each time the file is regenerated; part of each model call's idempotency key. */
    generation: integer().notNull().default(0),
    /**
     * Generation of the result that a failed regeneration put back, or null when the file's
     * result, if any, comes from `generation`.
     */
    restoredGeneration: integer(),
    /**
     * The ready result that the file had when it was regenerated, until the regeneration stores
     * its own result or fails and puts this one back. Null when nothing is kept.
     */
    keptResult: jsonb().$type<KeptPatchFileResult>(),
    /**
     * Reason the file's last regeneration failed, set when the file got its earlier result
     * back. Cleared by the next regeneration.
     */
    regenerationError: text(),
    ...timestamps,
  },
  (table) => [
    // On the path's MD5, because a git path can be longer than a btree index entry can contain
    // (about 2,700 bytes). Two paths of one request with the same MD5 would keep only the first.
    uniqueIndex('patch_files_patch_request_id_md5_path_index').on(
      table.patchRequestId,
      sql`md5(${table.path})`,
    ),
  ],
);

export const patchRequestsRelations = relations(patchRequests, ({ one, many }) => ({
  run: one(prRuns, { fields: [patchRequests.runId], references: [prRuns.id] }),
  user: one(users, { fields: [patchRequests.userId], references: [users.id] }),
  files: many(patchFiles),
  selected: many(patchRequestFindings),
}));

export const patchRequestFindingsRelations = relations(patchRequestFindings, ({ one }) => ({
  patchRequest: one(patchRequests, {
    fields: [patchRequestFindings.patchRequestId],
    references: [patchRequests.id],
  }),
  finding: one(findings, {
    fields: [patchRequestFindings.findingId],
    references: [findings.id],
  }),
}));

export const patchFilesRelations = relations(patchFiles, ({ one }) => ({
  patchRequest: one(patchRequests, {
    fields: [patchFiles.patchRequestId],
    references: [patchRequests.id],
  }),
}));
