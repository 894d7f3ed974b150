import { relations, sql } from 'drizzle-orm';
import { excerptMaskVersion } from '../../analysis/mask-version.ts';
import {
  bigint,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uuid,
} from 'drizzle-orm/pg-core';
import { timestamps } from './columns.ts';
import { installations } from './github.ts';

/** A file that an analysis left unchecked, and why. */
export interface UncheckedFileReason {
  path: string;
  /** Lower-case phrase such as "binary file, not checked". */
  reason: string;
}

export const runStatuses = [
  'queued',
  'analyzing',
  'completed',
  'failed',
  'superseded',
  'cancelled',
] as const;
export type RunStatus = (typeof runStatuses)[number];

/** One analysis of one pull request at one head commit. */
export const prRuns = pgTable(
  'pr_runs',
  {
    id: uuid().primaryKey().defaultRandom(),
    installationId: bigint({ mode: 'number' })
      .notNull()
      .references(() => installations.id, { onDelete: 'cascade' }),
    repositoryId: bigint({ mode: 'number' }).notNull(),
    /** OWNER/NAME of the base repository. */
    repository: text().notNull(),
    prNumber: integer().notNull(),
    prTitle: text().notNull().default(''),
    /**
     * `base.sha` of the event that queued the run, then of the base that the analysis compared
     * against.
     */
    baseSha: text().notNull(),
    /**
     * Name of the base branch, set like baseSha. It is '' for runs stored before the column
     * existed and not analyzed since.
     */
    baseRef: text().notNull().default(''),
    headSha: text().notNull(),
    headRef: text().notNull(),
    /**
     * OWNER/NAME of the head repository, which differs from repository for forks. It is '' when
     * GitHub sent no head repository because the fork was deleted.
     */
    headRepository: text().notNull(),
    status: text({ enum: runStatuses }).notNull().default('queued'),
    error: text(),
    completedAt: timestamp({ withTimezone: true }),
    /**
     * `pull_request.updated_at` of the event that created the run. Events arrive out of order,
     * so a run whose value is older than another run's of the same pull request is superseded.
     */
    prUpdatedAt: timestamp({ withTimezone: true }),
    /** pg-boss id of the analyze job, so closing the pull request can cancel it. */
    analyzeJobId: uuid(),
    /**
     * pg-boss id of the report job, so a suspended or deleted installation can cancel it.
     * Null until the run completes, and for runs completed before this column existed.
     */
    reportJobId: uuid(),
    /** GitHub's id of the "Fixwright" check run on the head commit, once created. */
    checkRunId: bigint({ mode: 'number' }),
    /** Annotations already sent to the check run; a retried report job sends only the rest. */
    checkRunAnnotations: integer().notNull().default(0),
    /**
     * Paths of changed files whose added lines were not checked: GitHub sent no diff for them
     * and their content could not be read in its place, or `uncheckedFileReasons` names the
     * reason. A NUL character in a path is stored as U+FFFD.
     */
    uncheckedFiles: text().array().notNull().default(sql`'{}'::text[]`),
    /**
     * Reasons of the unchecked files that were skipped for another reason than a missing
     * diff, such as a binary file. Each path is also in `uncheckedFiles`.
     */
    uncheckedFileReasons: jsonb().$type<UncheckedFileReason[]>().notNull().default([]),
    /** Changed files that GitHub left out of the pull request's file list (it lists 3,000). */
    unlistedFiles: integer().notNull().default(0),
    /** Findings past the most severe 10,000 of the run, which were not stored. */
    omittedFindings: integer().notNull().default(0),
    /**
     * When the check run and summary comment of the run's current findings were posted. An
     * analysis that completes the run again clears it, because its findings are not posted yet.
     */
    reportedAt: timestamp({ withTimezone: true }),
    /** Reason the check run or summary comment could not be posted, or null after posting. */
    reportError: text(),
    /**
     * When the pull request was closed, set on every run of the pull request by its `closed`
     * event and cleared by `reopened`. While it is set, no patch request, regeneration or
     * apply is accepted for the run.
     */
    prClosedAt: timestamp({ withTimezone: true }),
    /**
     * `pull_request.updated_at` of the latest `reopened` event, set on every run of the pull
     * request. A `closed` event from before it arrived late and changes nothing.
     */
    prReopenedAt: timestamp({ withTimezone: true }),
    /**
     * When the GitHub rate limit lifts that the run's job `rateLimitedJobId` waits for, in queue
     * `rateLimitedQueue` (analyze, report or fix-press-notice). Cleared when that job starts.
     * NOTE: one wait at a time, so a notice that starts waiting while the report waits replaces
     * the report's wait, and once the notice's job starts the run shows no wait at all.
     */
    rateLimitedUntil: timestamp({ withTimezone: true }),
    rateLimitedJobId: uuid(),
    rateLimitedQueue: text(),
    ...timestamps,
  },
  (table) => [
    unique().on(table.repositoryId, table.prNumber, table.headSha),
    index().on(table.installationId),
    // GitHub compares owner and repository names without case, and so does the runs filter.
    index('pr_runs_lower_repository_pr_number_index').on(sql`lower(${table.repository})`, table.prNumber),
    index().on(table.repositoryId, table.prNumber),
    index().on(table.checkRunId),
  ],
);

/**
 * Latest close of a pull request that had no run when its `closed` event arrived, because
 * GitHub delivered that event before `opened` or the app was installed after the pull request
 * was opened. Runs carry their own mark in pr_runs.pr_closed_at. This row stops an older event
 * that arrives after the close from starting an analysis, until a later `reopened` deletes it.
 */
export const pullRequestCloses = pgTable(
  'pull_request_closes',
  {
    repositoryId: bigint({ mode: 'number' }).notNull(),
    prNumber: integer().notNull(),
    closedAt: timestamp({ withTimezone: true }).notNull(),
  },
  (table) => [primaryKey({ columns: [table.repositoryId, table.prNumber] })],
);

export const severities = ['error', 'warning', 'notice'] as const;
export type Severity = (typeof severities)[number];

export const findings = pgTable(
  'findings',
  {
    id: uuid().primaryKey().defaultRandom(),
    runId: uuid()
      .notNull()
      .references(() => prRuns.id, { onDelete: 'cascade' }),
    path: text().notNull(),
    startLine: integer().notNull(),
    endLine: integer().notNull(),
    ruleId: text().notNull(),
    severity: text({ enum: severities }).notNull(),
    message: text().notNull(),
    source: text({ enum: ['builtin', 'sarif', 'model'] }).notNull().default('builtin'),
    /** The offending line as added, trimmed, for display, with its secrets masked. */
    excerpt: text().notNull().default(''),
    /**
     * `excerptMaskVersion` of the rules that masked the excerpt. A row with an older version is
     * masked again when it is read and by the `remask-excerpts` job. The default is the version
     * before this column, so a row inserted without it is masked again too.
     */
    maskVersion: integer().notNull().default(1),
    /** Hash of rule, path and line content; one finding per fingerprint per run. */
    fingerprint: text().notNull(),
    /**
     * Size of the file in bytes at the run's head commit, for the estimate of a preview's model
     * call. Null when unknown: the git tree request failed or left the file out, or the run was
     * analyzed before sizes were recorded.
     */
    fileBytes: integer(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [
    unique().on(table.runId, table.fingerprint),
    // Only rows that the `remask-excerpts` job still has to rewrite, so inserts at the current
    // version skip the index. Its predicate contains the version as a literal, which a query
    // must repeat to use it, and a raised version needs a new migration.
    index()
      .on(table.maskVersion)
      .where(sql`${sql.identifier('mask_version')} < ${sql.raw(String(excerptMaskVersion))}`),
  ],
);

export const prRunsRelations = relations(prRuns, ({ one, many }) => ({
  installation: one(installations, {
    fields: [prRuns.installationId],
    references: [installations.id],
  }),
  findings: many(findings),
}));

export const findingsRelations = relations(findings, ({ one }) => ({
  run: one(prRuns, { fields: [findings.runId], references: [prRuns.id] }),
}));
