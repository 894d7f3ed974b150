import { and, eq, inArray, isNotNull, ne, sql, type SQL } from 'drizzle-orm';
import type { DiffWorker } from '../analysis/diff-worker.ts';
import { currentApplyWait } from '../apply/apply-wait.ts';
import type { AppContext } from '../context.ts';
import type { Database, Transaction } from '../db/client.ts';
import { safeErrorMessage, toSafeError } from '../errors/safe-error.ts';
import {
  patchFiles,
  patchRequests,
  type PatchFileStatus,
  type PatchRequestStatus,
} from '../db/schema/index.ts';
import { FileReadError, readFileAtRef } from '../github/file-content.ts';
import {
  describeInvalidResponse,
  failingProxyHint,
  UnexpectedGitHubAnswerError,
} from '../github/github-response.ts';
import { accessTokenPath, requireActiveInstallation } from '../github/installation-unavailable.ts';
import { asGitHubRateLimit, type GitHubRateLimit } from '../github/rate-limit.ts';
import { GitHubResponseTooLargeError } from '../github/responses.ts';
import { ProviderError } from '../llm/errors.ts';
import { parseModelOutput } from '../llm/output.ts';
import {
  buildFixPrompt,
  bytesPerToken,
  estimatePromptTokens,
  estimateTextTokens,
  findingKind,
  fixGuidanceBytes,
  fixGuidanceHeadingBytes,
  languageFromPath,
  type FindingKind,
  type FixFinding,
  type FixPrompt,
} from '../llm/prompt.ts';
import type { Logger } from '../logger.ts';
import { requireGitHubApp } from '../github/require-github-app.ts';
import { splitRepository } from '../github/repository-name.ts';
import { recordMovedHead } from '../runs/moved-head.ts';
import {
  checkAllowance,
  describeExhausted,
  describeMinimumReservation,
  getAllowance,
} from '../usage/allowance.ts';
import { mapWithConcurrency } from './concurrency.ts';
import { buildPreviewDiff } from './preview-diff.ts';
import { groupFindingsByFile } from './preview-files.ts';
import { checkPreviewHead } from './preview-head-check.ts';
import { cancelledRegenerationError, restoreKeptResults, restoredResultColumns } from './kept-result.ts';
import { generateOwnKeysLast } from './key-fallback.ts';
import { AllowanceExceededError, meterClient } from './metered-client.ts';
import { resolveModelClients, type KeyedClient } from './model-clients.ts';
import { guardPlatformKey } from './platform-key-guard.ts';

/** Output tokens that a call gets on top of the file's estimate, at the least. */
const leastOutputMarginTokens = 64;

/**
 * Minimum output cap that can hold a file of `fileBytes` UTF-8 bytes again: its estimated
 * tokens, a tenth more and a margin.
 */
function leastOutputTokens(fileBytes: number): number {
  return Math.ceil(Math.ceil(fileBytes / bytesPerToken) * 1.1) + leastOutputMarginTokens;
}

/**
 * Estimates the minimum tokens that a file's call reserves on platform keys: its prompt and the
 * minimum output cap, for a file of `fileBytes` UTF-8 bytes. A file whose estimate is over the
 * allowance left fails without a call. The estimate equals the worker's own unless the file
 * contains a tag like `<file>`, which makes the worker's prompt 68 bytes longer.
 */
export function estimateLeastCallTokens(input: {
  path: string;
  findings: FixFinding[];
  fileBytes: number;
}): number {
  const prompt = buildFixPrompt({ path: input.path, content: '', findings: input.findings });
  return estimatePromptTokens(prompt, input.fileBytes) + leastOutputTokens(input.fileBytes);
}

/** The parts of `estimateLeastCallTokens` that a page adds up for any subset of a file's findings. */
export interface CallEstimateParts {
  /**
   * UTF-8 bytes of the prompt with no findings, plus the file's bytes and the heading of the
   * fix guidance, which the prompt has once it has a finding.
   */
  baseBytes: number;
  /** Bytes that each finding adds to the findings block, in the order of the findings given. */
  findingBytes: number[];
  /** Kind of each finding, in the order of the findings given. */
  findingKinds: FindingKind[];
  /** Bytes that the fix guidance of each kind adds, once for any number of findings of that kind. */
  kindBytes: Map<FindingKind, number>;
  /** Tokens added after the bytes are converted: the chat template and the least output cap. */
  fixedTokens: number;
}

/**
 * Splits the estimate of a file's call so that the estimate for any non-empty subset S of
 * `findings` is `ceil((baseBytes + sum of findingBytes over S + sum of kindBytes over the
 * kinds of S) / bytesPerToken) + fixedTokens`, which equals `estimateLeastCallTokens` for S.
 * The sum is exact. The findings block has one line per finding, so each finding adds the bytes
 * of its line, wherever it is in the block. The system prompt adds the guidance heading
 * and one bullet for each kind among the findings (see `buildFixGuidance`).
 */
export function estimateLeastCallParts(input: {
  path: string;
  findings: FixFinding[];
  fileBytes: number;
}): CallEstimateParts {
  const language = languageFromPath(input.path);
  const userBytes = (findings: FixFinding[]) =>
    Buffer.byteLength(buildFixPrompt({ path: input.path, content: '', findings }).user, 'utf8');
  const empty = buildFixPrompt({ path: input.path, content: '', findings: [] });
  const emptyUserBytes = userBytes([]);
  const baseBytes =
    Buffer.byteLength(empty.system + empty.user, 'utf8') + fixGuidanceHeadingBytes + input.fileBytes;
  const findingKinds = input.findings.map((finding) => findingKind(finding.ruleId));
  const emptyEstimate = estimateLeastCallTokens({ path: input.path, findings: [], fileBytes: input.fileBytes });
  return {
    baseBytes,
    findingBytes: input.findings.map((finding) => userBytes([finding]) - emptyUserBytes),
    findingKinds,
    kindBytes: new Map(findingKinds.map((kind) => [kind, fixGuidanceBytes(kind, language)])),
    fixedTokens: emptyEstimate - Math.ceil((baseBytes - fixGuidanceHeadingBytes) / bytesPerToken),
  };
}

/**
 * Tokens of the smallest call there can be: the prompt for an empty file with no findings and
 * the least output cap. Every real call needs more tokens than this.
 */
export const minimumCallTokens = estimateLeastCallTokens({ path: '', findings: [], fileBytes: 0 });

/**
 * Returns the smallest minimum reservation among a preview's file calls, by the sizes that the
 * analysis recorded, and the clause that names it in an allowance message. The form estimates
 * the same number, and outputBudget does once it reads the file.
 */
function findCheapestCall(
  findingsByPath: ReadonlyMap<string, FixFinding[]>,
  fileBytes: ReadonlyMap<string, number | null>,
): { tokens: number; need: string } {
  const cheapest = [...findingsByPath]
    .map(([path, findings]) => ({
      path,
      tokens: estimateLeastCallTokens({ path, findings, fileBytes: fileBytes.get(path) ?? 0 }),
      bound: fileBytes.get(path) == null ? ('at least' as const) : ('about' as const),
    }))
    .reduce((least, call) => (call.tokens < least.tokens ? call : least));
  const subject =
    findingsByPath.size === 1
      ? `the model call for ${cheapest.path}`
      : `the cheapest of this preview's ${findingsByPath.size} model calls, for ${cheapest.path},`;
  const need = describeMinimumReservation(subject, cheapest.tokens, cheapest.bound);
  return { tokens: cheapest.tokens, need };
}

const finishedStatuses: PatchRequestStatus[] = ['ready', 'partially_ready', 'failed'];
const terminalStatuses: PatchRequestStatus[] = [...finishedStatuses, 'cancelled'];

export interface PreviewOutcome {
  status: PatchRequestStatus | 'skipped';
  files: number;
  tokens: number;
}

type FileFinding = FixFinding;

/**
 * Raised by runPreview when GitHub rate-limited a read of the preview for longer than Octokit
 * waits. The attempt started no model call after that response, and the files it did not
 * finish are pending again. `cause` is the rate-limited request's error.
 */
export class PreviewRateLimitedError extends Error {
  override name = 'PreviewRateLimitedError';

  constructor(
    readonly rateLimit: GitHubRateLimit,
    options: { cause: unknown },
  ) {
    super(`GitHub rate-limited the preview until ${new Date(rateLimit.liftsAt).toISOString()}.`, options);
  }
}

/**
 * Builds the preview of one patch request: per file, reads it at the run's head commit, requests
 * the corrected file from the model and stores the proposed text with a unified diff. Files
 * finished by an earlier attempt are kept, so a retried job continues where it stopped. Before
 * the first model call, each attempt reads the pull request from GitHub once, and cancels the
 * request when its head commit is no longer the run's or it is closed (see checkPreviewHead).
 *
 * A file read that GitHub rate-limits for longer than Octokit waits ends the attempt. No file
 * starts or calls the model after it. The files whose calls are under way are stored, and the
 * files not finished are set back to pending. Then PreviewRateLimitedError is raised, with the
 * latest lift time that the attempt's reads got. `onRateLimited` is called for each such read at
 * once, so the wait can be shown while the calls under way end.
 */
export async function runPreview(
  context: AppContext,
  patchRequestId: string,
  attempt: number,
  logger: Logger,
  options: {
    /**
     * The pg-boss job of this attempt. Once pg-boss has expired or failed the attempt, no new
     * file is started, because the retry does the rest.
     */
    jobId?: string;
    /**
     * Added to `attempt` (the job's retry count) in the model calls' idempotency keys: the
     * job's `firstAttempt` when it continues a preview after a rate limit. Default 0.
     */
    firstAttempt?: number;
    /**
     * Aborts when the process stops. Model calls in flight are aborted, which releases their
     * reservations, and no new file is started or stored, so the retry redoes them.
     */
    signal?: AbortSignal;
    /** Thread that runs the files' diffs. Default `sharedFixDiffWorker`, which the process shares. */
    diffWorker?: DiffWorker;
    /**
     * Time in milliseconds since the epoch until which the settle of a model call is retried
     * while the database is unreachable (see `meterClient`): the end of the attempt's time limit.
     */
    settleRetryUntil?: number;
    /**
     * Called after a file read got a GitHub rate limit and the file was set back to pending,
     * while model calls that started before it may still run. It must not throw.
     */
    onRateLimited?: (rateLimit: GitHubRateLimit) => Promise<void>;
  } = {},
): Promise<PreviewOutcome> {
  const { db, config } = context;
  const request = await db.query.patchRequests.findFirst({
    where: eq(patchRequests.id, patchRequestId),
    with: { run: true, user: true, selected: { with: { finding: true } } },
  });
  if (!request || terminalStatuses.includes(request.status)) {
    return { status: 'skipped', files: 0, tokens: 0 };
  }
  // A regeneration gives the request a new job. A late attempt of an older job would otherwise
  // call the model for the new job's file. Its idempotency key can equal the key of the new
  // job's call with the same attempt number, so one of the two calls would go unbilled.
  if (options.jobId !== undefined && request.previewJobId !== options.jobId) {
    logger.warn(
      { event: 'preview.stale_job', jobId: options.jobId, currentJobId: request.previewJobId, attempt },
      'this job is no longer the preview job of the request, so it left the files to the current job',
    );
    return { status: 'skipped', files: 0, tokens: 0 };
  }
  const { run, user } = request;
  if (run.status === 'superseded') {
    await cancelBeforeAnyCall(db, patchRequestId, 'The pull request has a newer commit; request the fix on the newest run.');
    return { status: 'cancelled', files: 0, tokens: 0 };
  }

  await requireActiveInstallation(db, run.installationId);

  const findingsByPath = groupFindingsByFile(request.selected.map((entry) => entry.finding));
  await db
    .insert(patchFiles)
    .values([...findingsByPath.keys()].map((path) => ({ patchRequestId, path })))
    .onConflictDoNothing();
  // Conditional, because a cancellation that committed after the read above must stay.
  const [started] = await db
    .update(patchRequests)
    .set({ status: 'running', filesTotal: findingsByPath.size })
    .where(
      and(
        eq(patchRequests.id, patchRequestId),
        inArray(patchRequests.status, ['queued', 'running']),
      ),
    )
    .returning({ id: patchRequests.id });
  if (!started) return { status: 'skipped', files: 0, tokens: 0 };

  const selection = await resolveModelClients({ ...context, logger }, user);
  let clients = selection.clients;
  if (clients.length === 0) {
    const reason =
      selection.unusableKeyReasons.length > 0
        ? `${selection.unusableKeyReasons.join(' ')} No other model provider is available to you.`
        : 'No model provider is configured: set GROQ_API_KEY or GEMINI_API_KEY on the server, or add your own key.';
    const status = await failBeforeAnyCall(db, patchRequestId, reason, findingsByPath.size);
    logger.info({ event: 'preview.no_model_client', userId: user.id }, 'no usable model client');
    return { status, files: 0, tokens: 0 };
  }
  if (clients.some((entry) => entry.keySource === 'platform')) {
    const fileBytes = new Map(request.selected.map(({ finding }) => [finding.path, finding.fileBytes]));
    const cheapest = findCheapestCall(findingsByPath, fileBytes);
    const allowance = await checkAllowance(db, user.id, cheapest.tokens, cheapest.need);
    if (!allowance.allowed) {
      if (clients.every((entry) => entry.keySource === 'platform')) {
        const status = await failBeforeAnyCall(db, patchRequestId, allowance.reason, findingsByPath.size);
        logger.info({ event: 'preview.allowance_exhausted', userId: user.id }, 'allowance exhausted');
        return { status, files: 0, tokens: 0 };
      }
      // The user's own keys need no allowance, so only the platform clients are dropped.
      clients = clients.filter((entry) => entry.keySource === 'user');
      logger.info(
        { event: 'preview.platform_skipped', userId: user.id },
        'allowance exhausted; using own keys only',
      );
    }
  }
  const github = requireGitHubApp(context);

  const pending = await db
    .select({ id: patchFiles.id, path: patchFiles.path, generation: patchFiles.generation })
    .from(patchFiles)
    .where(
      and(
        eq(patchFiles.patchRequestId, patchRequestId),
        inArray(patchFiles.status, ['pending', 'running']),
      ),
    );
  // In the order of findingsByPath, so the most severe files are done first.
  const fileOrder = new Map([...findingsByPath.keys()].map((path, index) => [path, index]));
  const rank = (path: string) => fileOrder.get(path) ?? fileOrder.size;
  pending.sort((left, right) => rank(left.path) - rank(right.path));

  // Once per attempt, because a push whose `synchronize` event never arrived would otherwise get
  // a paid preview that Apply rejects. An attempt with no file left calls no model.
  if (pending.length > 0) {
    const head = await checkPreviewHead(github, run, logger);
    if (head.outcome === 'cancel') {
      await cancelBeforeAnyCall(db, patchRequestId, head.reason);
      if (head.state) await recordMovedHead(context, run, logger, { state: head.state, source: 'preview' });
      return { status: 'cancelled', files: 0, tokens: 0 };
    }
  }
  const [owner, repo] = splitRepository(run.repository);
  const octokit = await github.installationOctokit(run.installationId);

  // When the platform allowance may not cover every file at the full output cap, files in
  // parallel would hold reservations for each other and fail on tokens a finished file hands
  // back, so they run one at a time and each reads what is left.
  const allowance = await getAllowance(db, user.id);
  const tight =
    clients.every((entry) => entry.keySource === 'platform') &&
    allowance.limit >= 0 &&
    allowance.remaining < pending.length * config.LLM_MAX_OUTPUT_TOKENS;
  const concurrency = tight ? 1 : config.PREVIEW_FILE_CONCURRENCY;
  let attemptEnded = false;
  // The latest rate limit that a file read of this attempt got.
  const limit: { error: PreviewRateLimitedError | null } = { error: null };
  // Read through a function, because another file's task sets it during an await.
  const rateLimitError = (): PreviewRateLimitedError | null => limit.error;
  await mapWithConcurrency(pending, concurrency, async (file) => {
    const fileLogger = logger.child({ path: file.path });
    // A newer commit, a closed pull request or a suspended or deleted installation cancels
    // the request, and then the files left are skipped. After a rate limit, the job that
    // continues the preview does them.
    if (attemptEnded || rateLimitError() || (await isCancelled(db, patchRequestId))) return;
    if (
      options.signal?.aborted ||
      (options.jobId && !(await isAttemptActive(db, options.jobId, attempt)))
    ) {
      attemptEnded = true;
      return;
    }
    // Another attempt of the job may have finished the file since the list was read, or a
    // regeneration may have reset it for a new job. Such a file is not called again.
    const [claimed] = await db
      .update(patchFiles)
      .set({ status: 'running' })
      .where(
        and(
          unfinishedFile(file),
          inArray(patchFiles.status, ['pending', 'running']),
          options.jobId === undefined ? undefined : isCurrentPreviewJob(patchRequestId, options.jobId),
        ),
      )
      .returning({ id: patchFiles.id });
    if (!claimed) return;
    const findings = findingsByPath.get(file.path) ?? [];
    const outcome = await previewFile(context, {
      octokit,
      owner,
      repo,
      ref: run.headSha,
      path: file.path,
      generation: file.generation,
      findings,
      clients,
      userId: user.id,
      patchRequestId,
      attempt: attempt + (options.firstAttempt ?? 0),
      signal: options.signal,
      logger: fileLogger,
      diffWorker: options.diffWorker,
      isRateLimited: () => rateLimitError() !== null,
      settleRetryUntil: options.settleRetryUntil,
    });
    if (outcome.status === 'deferred') {
      const latest = rateLimitError()?.rateLimit.liftsAt ?? 0;
      if (outcome.rateLimit && outcome.rateLimit.liftsAt > latest) {
        limit.error = new PreviewRateLimitedError(outcome.rateLimit, { cause: outcome.error });
      }
      await releaseFile(db, file);
      if (outcome.rateLimit) await options.onRateLimited?.(outcome.rateLimit);
      const liftsAt = rateLimitError()?.rateLimit.liftsAt ?? Date.now();
      fileLogger.info(
        { event: 'preview.file_deferred', rateLimitedUntil: new Date(liftsAt).toISOString() },
        'file left pending: GitHub rate-limited the preview, so the job that continues it does the file',
      );
      return;
    }
    // A file that failed while the process stops may have failed only because its call was
    // aborted, so it is left for the retry. A ready file is stored, because its call was paid.
    if (options.signal?.aborted) {
      attemptEnded = true;
      if (outcome.status !== 'ready') {
        // The calls' tokens were charged, so the request's total counts them, as discarded.
        await addRequestTokens(db, patchRequestId, outcome.totalTokens);
        return;
      }
    }
    const stored = await storeFileOutcome(db, patchRequestId, file, outcome);
    fileLogger.info(
      {
        event: 'preview.file',
        status: outcome.status,
        tokens: outcome.totalTokens,
        error: outcome.error,
        stored: stored !== 'skipped',
        restoredEarlierResult: stored === 'restored',
      },
      storedMessages[stored],
    );
  });

  if (attemptEnded) {
    // The files not started stay pending. The retry, or the clean-up of a last attempt that
    // timed out, sets the final status.
    logger.warn(
      { event: 'preview.attempt_ended', attempt, jobId: options.jobId, stopping: options.signal?.aborted ?? false },
      'this attempt ended while it ran (job expiry or service stop); left the remaining files to the retry',
    );
    return { status: 'skipped', files: 0, tokens: 0 };
  }
  const rateLimited = rateLimitError();
  if (rateLimited) throw rateLimited;
  return summarize(db, patchRequestId);
}

/** Sets a file that this attempt claimed back to pending, unless another attempt changed it. */
async function releaseFile(db: Database, file: { id: string; generation: number }): Promise<void> {
  await db
    .update(patchFiles)
    .set({ status: 'pending' })
    .where(and(unfinishedFile(file), eq(patchFiles.status, 'running')));
}

/**
 * Builds the condition that a file is still at the generation that an attempt read, and not
 * ready. Two attempts of one job overlap when pg-boss retries a job that ran past its time
 * limit while its handler still waits for the model. A ready file keeps the result it has,
 * and a regenerated file is left to its new job.
 */
function unfinishedFile(file: { id: string; generation: number }): SQL | undefined {
  return and(
    eq(patchFiles.id, file.id),
    eq(patchFiles.generation, file.generation),
    ne(patchFiles.status, 'ready'),
  );
}

/** Builds the condition that `jobId` is still the preview job of the request. */
function isCurrentPreviewJob(patchRequestId: string, jobId: string): SQL {
  return sql`EXISTS (SELECT 1 FROM ${patchRequests}
    WHERE ${patchRequests.id} = ${patchRequestId} AND ${patchRequests.previewJobId} = ${jobId})`;
}

/**
 * Result of storing a file's outcome: `stored`, `restored` when a failed regeneration put the
 * file's earlier result back instead, or `skipped` when another attempt, a regeneration or an
 * apply kept the file as it was.
 */
type StoredOutcome = 'stored' | 'restored' | 'skipped';

const storedMessages: Record<StoredOutcome, string> = {
  stored: 'file preview finished',
  restored: 'file regeneration failed; the file got its earlier result back',
  skipped: 'file preview finished, but another attempt or a regeneration replaced it',
};

/**
 * Stores a file's outcome and adds its tokens to the request. The tokens are added either way,
 * because the calls were paid. A failed outcome of a regeneration puts the file's kept result
 * back instead, so its tokens count as discarded. An outcome that arrives after another attempt
 * finished the request sets the request's status from its files again. It is not stored while
 * the request is applied, being applied, has an apply job waiting or an apply whose write
 * GitHub did not confirm, because an apply must write the files the user saw.
 */
async function storeFileOutcome(
  db: Database,
  patchRequestId: string,
  file: { id: string; generation: number },
  outcome: FileOutcome,
): Promise<StoredOutcome> {
  return db.transaction(async (tx) => {
    // Locking the request first makes files finishing at once take turns, so the count
    // below, read in a later statement, includes the other file's committed status.
    const [request] = await tx
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId))
      .for('update');
    const applied =
      request !== undefined &&
      (request.appliedAt !== null ||
        request.applyStartedAt !== null ||
        request.applyUnconfirmedAt !== null ||
        currentApplyWait(request) !== null);
    const stored = applied ? 'skipped' : await updateFile(tx, file, outcome);
    await tx
      .update(patchRequests)
      .set({
        // Counted, not incremented, so a retried job that redoes a file counts it once.
        filesDone: sql`(SELECT count(*) FROM ${patchFiles} WHERE ${patchFiles.patchRequestId} = ${patchRequestId} AND ${patchFiles.status} IN ('ready', 'failed'))`,
        totalTokens: sql`${patchRequests.totalTokens} + ${outcome.totalTokens}`,
      })
      .where(eq(patchRequests.id, patchRequestId));
    const finished = request !== undefined && finishedStatuses.includes(request.status);
    if (stored !== 'skipped' && finished) {
      const result = await statusOfFiles(tx, patchRequestId);
      await tx
        .update(patchRequests)
        .set({ status: result.status, error: result.error })
        .where(eq(patchRequests.id, patchRequestId));
    }
    return stored;
  });
}

/**
 * Writes an outcome to a file still unfinished at the attempt's generation. A failed outcome of
 * a file that keeps an earlier result puts that result back, with the outcome's error as the
 * regeneration's error. A ready outcome replaces the kept result.
 */
async function updateFile(
  tx: Transaction,
  file: { id: string; generation: number },
  outcome: FileOutcome,
): Promise<StoredOutcome> {
  if (outcome.status === 'failed') {
    const restored = await tx
      .update(patchFiles)
      .set(restoredResultColumns(outcome.error ?? 'The model call failed.'))
      .where(and(unfinishedFile(file), isNotNull(patchFiles.keptResult)))
      .returning({ id: patchFiles.id });
    if (restored.length > 0) return 'restored';
  }
  const updated = await tx
    .update(patchFiles)
    .set({ ...outcome, keptResult: null })
    .where(unfinishedFile(file))
    .returning({ id: patchFiles.id });
  return updated.length > 0 ? 'stored' : 'skipped';
}

async function addRequestTokens(db: Database, patchRequestId: string, tokens: number): Promise<void> {
  if (tokens <= 0) return;
  await db
    .update(patchRequests)
    .set({ totalTokens: sql`${patchRequests.totalTokens} + ${tokens}` })
    .where(eq(patchRequests.id, patchRequestId));
}

type FileOutcome = Pick<
  typeof patchFiles.$inferInsert,
  'status' | 'error' | 'originalText' | 'proposedText' | 'diff' | 'baseBlobSha' | 'provider' | 'model' | 'keyNotice'
> & { totalTokens: number };

/**
 * A file that the attempt left before its model call: its read got `rateLimit`, with `error`
 * as the response, or another file's read did (`rateLimit` null).
 */
interface DeferredFile {
  status: 'deferred';
  rateLimit: GitHubRateLimit | null;
  error: unknown;
}

async function previewFile(
  context: AppContext,
  input: {
    octokit: Awaited<ReturnType<NonNullable<AppContext['github']>['installationOctokit']>>;
    owner: string;
    repo: string;
    ref: string;
    path: string;
    generation: number;
    findings: FileFinding[];
    clients: KeyedClient[];
    userId: string;
    patchRequestId: string;
    attempt: number;
    signal?: AbortSignal;
    logger: Logger;
    diffWorker: DiffWorker | undefined;
    /** Returns whether a read of the attempt was rate-limited, after which no call starts. */
    isRateLimited: () => boolean;
    settleRetryUntil: number | undefined;
  },
): Promise<FileOutcome | DeferredFile> {
  const { config, db } = context;
  let totalTokens = 0;
  const failed = (error: string, extra: Partial<FileOutcome> = {}): FileOutcome => ({
    status: 'failed',
    error,
    totalTokens,
    ...extra,
  });

  let file;
  try {
    file = await readFileAtRef(input.octokit, {
      owner: input.owner,
      repo: input.repo,
      path: input.path,
      ref: input.ref,
      maxBytes: config.PREVIEW_MAX_FILE_BYTES,
    });
  } catch (error) {
    if (error instanceof FileReadError) return failed(error.message);
    const rateLimit = asGitHubRateLimit(error);
    if (rateLimit) return { status: 'deferred', rateLimit, error };
    // The response would be as large on a retry, so the file fails now and the others go on.
    if (error instanceof GitHubResponseTooLargeError && !accessTokenPath.test(error.path)) {
      input.logger.warn(
        { event: 'preview.file_response_too_large', err: toSafeError(error) },
        'file not read: a GitHub response is larger than the limit',
      );
      return failed(describeOversizedFileRead(input.path, error));
    }
    throw error;
  }
  if (!file) return failed(`${input.path} does not exist at ${input.ref}; it was deleted or renamed.`);
  if (file.size > config.PREVIEW_MAX_FILE_BYTES) {
    return failed(
      `${input.path} is ${file.size} bytes, over PREVIEW_MAX_FILE_BYTES (${config.PREVIEW_MAX_FILE_BYTES}); raise the limit to preview it.`,
    );
  }

  const prompt = buildFixPrompt({ path: input.path, content: file.text, findings: input.findings });
  const budget = await outputBudget(context, {
    userId: input.userId,
    path: input.path,
    prompt,
    fileText: file.text,
    platformOnly: input.clients.every((entry) => entry.keySource === 'platform'),
  });
  if (!budget.ok) return failed(budget.reason, { originalText: file.text, baseBlobSha: file.blobSha });
  const maxOutputTokens = budget.maxOutputTokens;
  const clients = input.clients.map((entry) => {
    const metered = meterClient(entry.client, {
      db,
      userId: input.userId,
      keySource: entry.keySource,
      patchRequestId: input.patchRequestId,
      path: input.path,
      attempt: input.attempt,
      generation: input.generation,
      reservationTtlSeconds: config.RESERVATION_TTL_SECONDS,
      settleRetryUntil: input.settleRetryUntil,
      minimumOutputTokens: budget.minimumOutputTokens,
      logger: input.logger,
      onUsage: (tokens) => {
        totalTokens += tokens;
      },
    });
    // Outside the meter, so a call skipped for a rejected platform key reserves nothing.
    const client =
      entry.keySource === 'platform' ? guardPlatformKey(metered, { db, config, logger: input.logger }) : metered;
    return { keySource: entry.keySource, client };
  });

  const base = { originalText: file.text, baseBlobSha: file.blobSha };
  if (input.isRateLimited()) return { status: 'deferred', rateLimit: null, error: null };
  let generated;
  try {
    generated = await generateOwnKeysLast(clients, { ...prompt, maxOutputTokens }, { signal: input.signal });
  } catch (error) {
    if (error instanceof ProviderError || error instanceof AllowanceExceededError) {
      return failed(error.message, base);
    }
    throw error;
  }
  const { result, keyNotice } = generated;
  if (keyNotice) {
    input.logger.info(
      { event: 'preview.rejected_key_passed_on', provider: result.provider },
      'a key was rejected, deleted or unusable; the next own key produced the result',
    );
  }

  const provenance = { provider: result.provider, model: result.model, keyNotice };
  const parsed = parseModelOutput(result.text, file.text, input.path);
  if (!parsed.ok) return failed(parsed.reason, { ...base, ...provenance });
  if (parsed.content === file.text) {
    return failed('The model returned the file unchanged, so there is nothing to apply.', {
      ...base,
      ...provenance,
    });
  }

  const diff = await buildPreviewDiff(
    { path: input.path, originalText: file.text, proposedText: parsed.content, logger: input.logger },
    input.diffWorker,
  );
  if (!diff.ok) return failed(diff.reason, { ...base, ...provenance });
  return {
    status: 'ready',
    error: null,
    ...base,
    ...provenance,
    proposedText: parsed.content,
    diff: diff.diff,
    totalTokens,
  };
}

/**
 * Sizes the output cap of a file's call. The output is the whole file again, so the cap is its
 * estimated tokens with a quarter on top, within LLM_MAX_OUTPUT_TOKENS. `minimumOutputTokens` is
 * the least cap that can hold the file. A call on a platform key trims its cap down to that when
 * its reservation finds less left (see `meterClient`). When only platform keys pay and the
 * allowance left cannot cover the prompt and that least cap, the file fails without a call.
 */
async function outputBudget(
  context: AppContext,
  input: { userId: string; path: string; prompt: FixPrompt; fileText: string; platformOnly: boolean },
): Promise<{ ok: true; maxOutputTokens: number; minimumOutputTokens: number } | { ok: false; reason: string }> {
  const fileTokens = estimateTextTokens(input.fileText);
  const fullCap = Math.min(context.config.LLM_MAX_OUTPUT_TOKENS, Math.ceil(fileTokens * 1.25) + 256);
  const least = leastOutputTokens(Buffer.byteLength(input.fileText, 'utf8'));
  if (!input.platformOnly) return { ok: true, maxOutputTokens: fullCap, minimumOutputTokens: least };

  const allowance = await getAllowance(context.db, input.userId);
  if (allowance.limit < 0) return { ok: true, maxOutputTokens: fullCap, minimumOutputTokens: least };
  const promptTokens = estimatePromptTokens(input.prompt);
  const available = allowance.remaining - promptTokens;
  if (available < least) {
    const need = describeMinimumReservation(`the model call for ${input.path}`, promptTokens + least, 'about');
    return { ok: false, reason: describeExhausted(allowance, need) };
  }
  return { ok: true, maxOutputTokens: fullCap, minimumOutputTokens: least };
}

/**
 * Returns whether pg-boss still runs the job on `attempt`. After an expiry it has failed the job
 * or queued it for another attempt while this handler still runs.
 */
async function isAttemptActive(db: Database, jobId: string, attempt: number): Promise<boolean> {
  const [row] = await db.execute<{ active: boolean }>(sql`
    SELECT state = 'active' AND retry_count = ${attempt} AS active
    FROM pgboss.job WHERE id = ${jobId}
  `);
  return row?.active ?? false;
}

async function isCancelled(db: Database, patchRequestId: string): Promise<boolean> {
  const [row] = await db
    .select({ status: patchRequests.status })
    .from(patchRequests)
    .where(eq(patchRequests.id, patchRequestId));
  return row?.status === 'cancelled';
}

/**
 * Sets the final status from the files: all ready, some ready, or none. A file still pending or
 * running belongs to another attempt of the job or to a regeneration's new job, which sets the
 * status when it ends, so the request stays running then.
 */
async function summarize(db: Database, patchRequestId: string): Promise<PreviewOutcome> {
  // Under the request's lock, as storeFileOutcome, so a file that another attempt stores at the
  // same time is either counted here or sets the status again after this.
  return db.transaction(async (tx) => {
    const [request] = await tx
      .select({ status: patchRequests.status, totalTokens: patchRequests.totalTokens })
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId))
      .for('update');
    const tokens = request?.totalTokens ?? 0;
    const { files, ...result } = await statusOfFiles(tx, patchRequestId);
    if (request?.status === 'cancelled') {
      return { status: 'cancelled', files, tokens };
    }
    if (result.unfinished > 0) return { status: 'running', files, tokens };
    await finish(tx, patchRequestId, result.status, result.error);
    return { status: result.status, files, tokens };
  });
}

/** Reads a request's files and derives its status from them (see `statusFromFiles`). */
async function statusOfFiles(db: Database | Transaction, patchRequestId: string) {
  const files = await db
    .select({ status: patchFiles.status, error: patchFiles.error })
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId));
  const errors = [...new Set(files.map((file) => file.error).filter(Boolean))];
  const noFileReason = errors.length === 1 ? errors[0]! : 'No file could be fixed; see each file\'s error.';
  const unfinished = files.filter((file) => file.status === 'pending' || file.status === 'running').length;
  return { ...statusFromFiles(files, noFileReason), files: files.length, unfinished };
}

/**
 * Derives the status and error of a finished patch request from its files: `ready` when every
 * file is ready, `partially_ready` when some are, and `failed` with `noFileReason` when none
 * is. A request without files has nothing to apply, so it is failed too.
 */
function statusFromFiles(
  files: readonly { status: PatchFileStatus }[],
  noFileReason: string,
): { status: 'ready' | 'partially_ready' | 'failed'; error: string | null } {
  const ready = files.filter((file) => file.status === 'ready').length;
  if (ready === 0) return { status: 'failed', error: noFileReason };
  if (ready === files.length) return { status: 'ready', error: null };
  return {
    status: 'partially_ready',
    error: `${files.length - ready} of ${files.length} files could not be fixed; see each file's error.`,
  };
}

async function finish(
  db: Database | Transaction,
  patchRequestId: string,
  status: PatchRequestStatus,
  error: string | null,
): Promise<void> {
  // Only an unfinished request changes, so a cancellation that raced the preview stays.
  await db
    .update(patchRequests)
    .set({ status, error, completedAt: new Date() })
    .where(
      and(
        eq(patchRequests.id, patchRequestId),
        inArray(patchRequests.status, ['queued', 'running']),
      ),
    );
}

/**
 * Cancels the request with `reason` before this attempt calls the model. A regenerated file not
 * yet done gets its kept result back, as when a newer commit cancels the request.
 */
async function cancelBeforeAnyCall(db: Database, patchRequestId: string, reason: string): Promise<void> {
  await db.transaction(async (tx) => {
    await finish(tx, patchRequestId, 'cancelled', reason);
    await restoreKeptResults(tx, [patchRequestId], cancelledRegenerationError);
  });
}

/**
 * Ends the files not yet done with `reason`, before any model call: a regenerated file gets its
 * kept result back, and the others fail. The request's status is derived from all its files, so
 * a regeneration that cannot start leaves the preview ready to apply. Returns the request's
 * status afterwards.
 */
async function failBeforeAnyCall(
  db: Database,
  patchRequestId: string,
  reason: string,
  filesTotal: number,
): Promise<PatchRequestStatus> {
  return db.transaction(async (tx) => {
    // Under the request's lock, as storeFileOutcome, so a late attempt's file is counted.
    const [request] = await tx
      .select({ status: patchRequests.status })
      .from(patchRequests)
      .where(eq(patchRequests.id, patchRequestId))
      .for('update');
    await restoreKeptResults(tx, [patchRequestId], reason);
    await failUnfinishedFiles(tx, patchRequestId, reason);
    await tx.update(patchRequests).set({ filesDone: filesTotal }).where(eq(patchRequests.id, patchRequestId));
    const result = await statusOfFiles(tx, patchRequestId);
    // finish leaves a request that a cancel ended meanwhile as it is.
    if (request && request.status !== 'queued' && request.status !== 'running') return request.status;
    await finish(tx, patchRequestId, result.status, result.error);
    return result.status;
  });
}

/** Fails the request's files that are still pending or running with `error`. */
async function failUnfinishedFiles(tx: Transaction, patchRequestId: string, error: string): Promise<void> {
  await tx
    .update(patchFiles)
    .set({ status: 'failed', error })
    .where(
      and(
        eq(patchFiles.patchRequestId, patchRequestId),
        inArray(patchFiles.status, ['pending', 'running']),
      ),
    );
}

/**
 * Describes why a preview failed, as the files not yet done store it. An invalid GitHub
 * response names the request and each invalid field.
 */
function describePreviewError(error: unknown): string {
  if (error instanceof UnexpectedGitHubAnswerError) {
    return (
      `Preview failed: ${describeInvalidResponse(error)} ${failingProxyHint} Once it responds ` +
      'normally, regenerate the failed files or request a new preview.'
    );
  }
  return `Preview failed: ${safeErrorMessage(error)}`;
}

/**
 * Describes a file whose read got a GitHub response over the size limit, as the file stores it.
 * The blob of a file within PREVIEW_MAX_FILE_BYTES (at most 10,000,000 bytes) is 13.8 MB as
 * base64, far below maxGitHubResponseBytes (64 MiB), so a larger response does not come from
 * the file itself.
 */
function describeOversizedFileRead(path: string, error: GitHubResponseTooLargeError): string {
  return (
    `Preview of ${path} failed: ${describeInvalidResponse(error)} A file within ` +
    `PREVIEW_MAX_FILE_BYTES needs no response this large, so ${failingProxyHint} Once it ` +
    'responds normally, regenerate this file.'
  );
}

/**
 * Result of failPatchRequest: `ended` the request, or left it because it had `finished`
 * already or because another preview job (`currentJobId`, null when none is stored) owns it.
 */
export type FailPatchRequestResult =
  | { outcome: 'ended' }
  | { outcome: 'finished' }
  | { outcome: 'not_current_job'; currentJobId: string | null };

/**
 * Ends a patch request after its job's last retry failed with `error`. A regenerated file not
 * yet done gets its kept result back, the other files not yet done fail with the error, and
 * the request's status is derived from all its files, as when the preview ends normally. So a
 * failed regeneration of one file leaves the preview applicable as the user saw it, and the
 * request is `failed` only when no file is ready. The stored message is the safe form of the
 * error, because a failed query's own message quotes the file text.
 *
 * With `jobId`, the request ends only while that job is its current preview job. A late
 * attempt of an older job, such as the job of a preview that was regenerated since, then
 * leaves the newer job's work alone.
 */
export async function failPatchRequest(
  db: Database,
  patchRequestId: string,
  error: unknown,
  options: { jobId?: string } = {},
): Promise<FailPatchRequestResult> {
  const message = describePreviewError(error);
  return db.transaction(async (tx) => {
    // Only an unfinished request changes, so a cancellation that raced the job stays. The row
    // lock orders this with a regeneration, which sets the new job's id under the same lock.
    const [unfinished] = await tx
      .select({ previewJobId: patchRequests.previewJobId })
      .from(patchRequests)
      .where(
        and(
          eq(patchRequests.id, patchRequestId),
          inArray(patchRequests.status, ['queued', 'running']),
        ),
      )
      .for('update');
    if (!unfinished) return { outcome: 'finished' };
    if (options.jobId !== undefined && unfinished.previewJobId !== options.jobId) {
      return { outcome: 'not_current_job', currentJobId: unfinished.previewJobId };
    }
    // No attempt follows, so files left pending or running would show as unfinished for good.
    await restoreKeptResults(tx, [patchRequestId], message);
    await failUnfinishedFiles(tx, patchRequestId, message);
    const files = await tx
      .select({ status: patchFiles.status })
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, patchRequestId));
    const result = statusFromFiles(files, message);
    await tx
      .update(patchRequests)
      .set({
        status: result.status,
        error: result.error,
        completedAt: new Date(),
        filesDone: files.length,
      })
      .where(eq(patchRequests.id, patchRequestId));
    return { outcome: 'ended' };
  });
}
