import type { Octokit } from '@octokit/rest';
import type { ChangedFile } from '../analysis/analyze.ts';
import { DiffThreadError, type DiffWorker } from '../analysis/diff-worker.ts';
import { additionsPatch, type DiffLimits } from '../analysis/local-patch.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { FileReadError, readFileAtRef, type RepositoryFile } from '../github/file-content.ts';
import { readMergeBase } from '../github/merge-base.ts';
import { UnexpectedGitHubAnswerError } from '../github/github-response.ts';
import type { PullRequestFile } from '../github/pull-files.ts';
import type { UncheckedFileReason } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { runStateCheckIntervalMs } from './analysis-stop.ts';

/** Size limit of one file version read in place of a missing patch, in bytes. */
export const maxReadFileBytes = 5_000_000;

/**
 * Limit on the bytes of all file versions read for one run, so a pull request that changes
 * thousands of large files neither keeps them all in memory nor uses up the installation's rate
 * limit. Files read and then rejected as binary or not UTF-8 count too.
 */
export const maxReadBytesPerRun = 50_000_000;

/**
 * Bounds of the local diff of one modified file. Myers' algorithm takes time about quadratic in
 * the edit length. The diff runs in a worker thread, but the thread serves one diff at a time,
 * so the timeout bounds how long each file holds up the run and the diffs of other runs in the
 * process. bench/analysis.ts times the diff with these bounds.
 */
export const defaultDiffLimits: DiffLimits = { maxEditLength: 5_000, timeoutMs: 1_000 };

/**
 * Statuses whose missing patch is rebuilt by diffing the file at the merge base and head. A
 * renamed or copied file is read at the merge base under `previous_filename`, and `changed`
 * (a change of file type, such as to a symbolic link) under its own name.
 */
const diffedStatuses = new Set(['modified', 'renamed', 'copied', 'changed']);

/** Reason of a file left unchecked because its content has a NUL byte or is not UTF-8. */
export const binaryFileReason = 'binary file, not checked';

/** Builds the reason of a file left unread because the run read `maxTotalBytes` bytes. */
export function readLimitReason(maxTotalBytes: number): string {
  const megabytes = (maxTotalBytes / 1_000_000).toLocaleString('en-US', {
    maximumFractionDigits: 1,
  });
  return `not read: the run's read limit of ${megabytes} MB was reached`;
}

export interface CompletedFiles {
  files: ChangedFile[];
  /**
   * Paths of files with added lines that have neither GitHub's patch nor one built here, and
   * of binary files, which GitHub lists without a patch or added lines. Files without a patch
   * or added lines that the byte limit left unread are listed too, because they may be binary.
   */
  uncheckedPaths: string[];
  /**
   * Reasons of the paths in `uncheckedPaths` that were left unread because the run's byte limit
   * was reached, or that GitHub lists without added lines because they are binary. The other
   * paths have added lines but no patch.
   */
  uncheckedReasons: UncheckedFileReason[];
}

export interface MissingPatchOptions {
  /** Default `maxReadBytesPerRun`. */
  maxTotalBytes?: number;
  /** Default `maxReadFileBytes`. */
  maxFileBytes?: number;
  /** Default `defaultDiffLimits`. */
  diffLimits?: DiffLimits;
  /** Thread that runs the local diffs. Default `sharedDiffWorker`, which the process shares. */
  diffWorker?: DiffWorker;
  /**
   * Runs before each file version read, before and after the merge base request, and every
   * `checkpointIntervalMs` while a diff waits for the diff thread or runs in it. An error it
   * throws stops the reads and rejects `fillMissingPatches` with that error, as
   * `runStopCheckpoint` does for a stopped run. A diff that has not started yet is then taken
   * out of the thread's queue.
   */
  checkpoint?: () => Promise<void>;
  /** Default `runStateCheckIntervalMs`. */
  checkpointIntervalMs?: number;
}

/** Builds the patch that adds every line of `text`, as git would write it for a new file. */
function additionPatch(text: string): string | null {
  const lines = text.split('\n');
  if (lines.at(-1) === '') {
    lines.pop();
  }
  if (lines.length === 0) {
    return null;
  }
  return [`@@ -0,0 +1,${lines.length} @@`, ...lines.map((line) => `+${line}`)].join('\n');
}

export interface PullRequestTarget {
  owner: string;
  repo: string;
  /** Base branch of the pull request, or a commit on it that the head has not merged past. */
  baseRef: string;
  /** Head commit of the pull request, whose files are analyzed. */
  headSha: string;
}

/** Reads the file versions of one run within its byte limits, and logs why a read failed. */
class FileVersionReader {
  private bytesLeft: number;
  readonly maxTotalBytes: number;
  private readonly maxFileBytes: number;
  private readonly checkpoint: (() => Promise<void>) | undefined;
  /**
   * Names of the files with a version left unread because the run's byte limit was used up, or
   * because the version is larger than the bytes left but within `maxFileBytes`.
   */
  readonly limitedPaths = new Set<string>();
  /** Rejection reason of the last read, such as `binary`, or null after a read that succeeded. */
  lastRejection: string | null = null;

  constructor(
    private readonly octokit: Octokit,
    private readonly target: PullRequestTarget,
    private readonly logger: Logger,
    options: MissingPatchOptions,
  ) {
    this.maxTotalBytes = options.maxTotalBytes ?? maxReadBytesPerRun;
    this.bytesLeft = this.maxTotalBytes;
    this.maxFileBytes = options.maxFileBytes ?? maxReadFileBytes;
    this.checkpoint = options.checkpoint;
  }

  /** Reads `path` at `ref` as UTF-8 text, or returns null when it cannot, after logging why. */
  async read(
    file: PullRequestFile,
    version: { side: 'base' | 'head'; path: string; ref: string },
  ): Promise<RepositoryFile | null> {
    await this.checkpoint?.();
    this.lastRejection = null;
    if (this.bytesLeft <= 0) {
      this.limitedPaths.add(file.filename);
      this.lastRejection = 'byte_limit';
      return null;
    }
    const { owner, repo } = this.target;
    const maxBytes = Math.min(this.maxFileBytes, this.bytesLeft);
    try {
      const content = await readFileAtRef(this.octokit, { owner, repo, ...version, maxBytes });
      if (content === null) {
        this.logUnreadable(file, version, 'not_found');
        this.lastRejection = 'not_found';
        return null;
      }
      this.bytesLeft -= content.size;
      return content;
    } catch (error) {
      if (error instanceof FileReadError) {
        if (this.overBytesLeft(error, maxBytes)) {
          this.limitedPaths.add(file.filename);
          this.logUnreadable(file, version, 'byte_limit');
          this.lastRejection = 'byte_limit';
          return null;
        }
        this.logUnreadable(file, version, error.reason);
        this.lastRejection = error.reason;
        // A file rejected as binary or not UTF-8 was downloaded all the same.
        this.bytesLeft -= error.bytesRead;
        return null;
      }
      throw error;
    }
  }

  /** Tells whether `error` rejects a file only because it is larger than the bytes left. */
  private overBytesLeft(error: FileReadError, maxBytes: number): boolean {
    return (
      error.reason === 'too_large' &&
      maxBytes < this.maxFileBytes &&
      error.size !== null &&
      error.size <= this.maxFileBytes
    );
  }

  private logUnreadable(
    file: PullRequestFile,
    version: { side: 'base' | 'head'; path: string; ref: string },
    reason: string,
  ): void {
    this.logger.info(
      {
        event: 'analyze.file_unreadable',
        path: file.filename,
        status: file.status,
        side: version.side,
        readPath: version.path,
        ref: version.ref,
        reason,
      },
      'file without a patch could not be read; its added lines stay unchecked',
    );
  }
}

/**
 * Fills in the patches that GitHub leaves out. GitHub sends no `patch` for a file whose diff is
 * over 20,000 lines or 500 KB, and for binary files, which have no additions. An added file's
 * patch is every line of its content at the head. A file of a status in `diffedStatuses` is
 * read at the merge base of the pull request's base and head, which GitHub's diff starts from,
 * and at the head, and diffed in a worker thread within `diffLimits`. Reads stop at
 * `maxFileBytes` a file version and `maxTotalBytes` in all. Files with additions that end
 * without a patch are returned as unchecked. Those are files of other statuses, files with an
 * unreadable or oversized version, and files whose diff gives up, fails in its thread or adds
 * more lines than GitHub counts. Files of the diffed statuses also stay unchecked when GitHub
 * finds no merge base, or fails to read it with a server error or an invalid response.
 * `options.checkpoint` runs
 * before each read, so an error it throws ends the reads of a run that no longer needs them.
 */
export async function fillMissingPatches(
  octokit: Octokit,
  target: PullRequestTarget,
  files: readonly PullRequestFile[],
  logger: Logger,
  options: MissingPatchOptions = {},
): Promise<CompletedFiles> {
  const reader = new FileVersionReader(octokit, target, logger, options);
  const limitReason = readLimitReason(reader.maxTotalBytes);
  const diffLimits = options.diffLimits ?? defaultDiffLimits;
  let mergeBase: Promise<string | null> | undefined;
  const readMergeBaseOnce = async (): Promise<string | null> => {
    mergeBase ??= findMergeBase(octokit, target, logger, options.checkpoint);
    return mergeBase;
  };

  const completed: ChangedFile[] = [];
  const uncheckedPaths: string[] = [];
  const uncheckedReasons: UncheckedFileReason[] = [];
  const noAdditions: PullRequestFile[] = [];
  for (const file of files) {
    if (file.patch || file.status === 'removed') {
      completed.push(file);
      continue;
    }
    if (file.additions === 0) {
      noAdditions.push(file);
      completed.push(file);
      continue;
    }
    let patch: string | null = null;
    if (file.status === 'added') {
      const head = await reader.read(file, {
        side: 'head',
        path: file.filename,
        ref: target.headSha,
      });
      patch = head === null ? null : additionPatch(head.text);
    } else if (diffedStatuses.has(file.status)) {
      const mergeBaseSha = await readMergeBaseOnce();
      if (mergeBaseSha !== null) {
        const diff = {
          limits: diffLimits,
          worker: options.diffWorker,
          checkpoint: options.checkpoint,
          checkpointIntervalMs: options.checkpointIntervalMs ?? runStateCheckIntervalMs,
        };
        patch = await diffedPatch(reader, file, { ...target, mergeBaseSha }, diff, logger);
      }
    }
    if (patch === null) {
      uncheckedPaths.push(file.filename);
      if (reader.limitedPaths.has(file.filename)) {
        uncheckedReasons.push({ path: file.filename, reason: limitReason });
      }
    }
    completed.push({ ...file, patch });
  }
  // GitHub lists a binary file, also text with a NUL byte, without a patch and with 0 added
  // lines. Its head version is read to tell it from an empty file, a pure rename or a mode
  // change, after the files with added lines, so those come first within the byte limit. One
  // left unread by the byte limit may be binary, so it is named as unchecked too.
  for (const file of noAdditions) {
    await reader.read(file, { side: 'head', path: file.filename, ref: target.headSha });
    let reason: string | null = null;
    if (reader.lastRejection === 'binary') reason = binaryFileReason;
    if (reader.lastRejection === 'byte_limit') reason = limitReason;
    if (reason !== null) {
      uncheckedPaths.push(file.filename);
      uncheckedReasons.push({ path: file.filename, reason });
    }
  }

  if (reader.limitedPaths.size > 0) {
    logger.info(
      { event: 'analyze.read_limit_reached', skippedFiles: reader.limitedPaths.size },
      'files without a patch were left unread after the byte limit of the run; they stay unchecked',
    );
  }
  return { files: completed, uncheckedPaths, uncheckedReasons };
}

/**
 * Reads the merge base of the pull request's base branch and head. Returns null, after logging
 * why, when GitHub finds none or fails with a server error or an invalid response. `checkpoint`
 * runs before the request and after it, because GitHub may respond slowly for a large pull
 * request.
 */
async function findMergeBase(
  octokit: Octokit,
  target: PullRequestTarget,
  logger: Logger,
  checkpoint: (() => Promise<void>) | undefined,
): Promise<string | null> {
  const { owner, repo, baseRef, headSha } = target;
  await checkpoint?.();
  let sha: string | null;
  try {
    sha = await readMergeBase(octokit, { owner, repo, base: baseRef, head: headSha });
  } catch (error) {
    // GitHub responds 500 "Sorry, this diff is taking too long to generate." to a comparison too
    // large to compute (as a github-changelog-generator error log from 2020 shows). Pull requests
    // whose files lack a patch are often that large, and failing the run would lose the findings
    // of every other file. The same goes for a comparison whose response, which lists up to 300
    // files with their patches, is over the limit on a GitHub response, and for a response
    // without a valid merge base field, such as a proxy's HTML page, which names no merge base.
    const status = (error as { status?: unknown }).status;
    const invalid = error instanceof UnexpectedGitHubAnswerError;
    if (!invalid && (typeof status !== 'number' || status < 500)) throw error;
    const request = invalid ? { request: `${error.method} ${error.path}` } : {};
    logger.warn(
      {
        event: 'analyze.merge_base_failed',
        baseRef,
        headSha,
        status,
        ...request,
        err: toSafeError(error),
      },
      'reading the merge base from GitHub failed; modified files without a patch stay unchecked',
    );
    return null;
  }
  await checkpoint?.();
  if (sha === null) {
    logger.warn(
      { event: 'analyze.merge_base_missing', baseRef, headSha },
      'GitHub found no merge base of the base branch and head; modified files without a ' +
        'patch stay unchecked',
    );
  }
  return sha;
}

/**
 * Builds the patch of a file of a status in `diffedStatuses` by diffing it at the merge base,
 * under its previous name if it was renamed or copied, and at the head. Returns null after
 * logging why it cannot.
 */
async function diffedPatch(
  reader: FileVersionReader,
  file: PullRequestFile,
  target: PullRequestTarget & { mergeBaseSha: string },
  diff: {
    limits: DiffLimits;
    worker: DiffWorker | undefined;
    checkpoint: (() => Promise<void>) | undefined;
    checkpointIntervalMs: number;
  },
  logger: Logger,
): Promise<string | null> {
  const head = await reader.read(file, { side: 'head', path: file.filename, ref: target.headSha });
  if (head === null) {
    return null;
  }
  const base = await reader.read(file, {
    side: 'base',
    path: file.previousFilename ?? file.filename,
    ref: target.mergeBaseSha,
  });
  if (base === null) {
    return null;
  }

  const start = performance.now();
  let result;
  try {
    const run = (signal?: AbortSignal) =>
      additionsPatch(base.text, head.text, diff.limits, diff.worker, signal);
    result = diff.checkpoint
      ? await runWithCheckpoints(run, diff.checkpoint, diff.checkpointIntervalMs)
      : await run();
  } catch (error) {
    if (!(error instanceof DiffThreadError)) throw error;
    logger.warn(
      { event: 'analyze.diff_failed', path: file.filename, err: toSafeError(error) },
      'local diff thread failed; the added lines stay unchecked',
    );
    return null;
  }
  const elapsedMs = Math.round(performance.now() - start);
  // A diff whose thread overran the timeout and was terminated is abandoned too.
  if (result === null) {
    logger.info(
      { event: 'analyze.diff_abandoned', path: file.filename, elapsedMs, ...diff.limits },
      'local diff reached its edit length or time limit; the added lines stay unchecked',
    );
    return null;
  }
  // A minimal diff never adds more lines than git's diff of the same two versions, so more
  // means that GitHub's diff started from another commit than the merge base read here.
  if (result.additions > file.additions) {
    logger.warn(
      {
        event: 'analyze.diff_mismatch',
        path: file.filename,
        additions: result.additions,
        githubAdditions: file.additions,
        mergeBaseSha: target.mergeBaseSha,
      },
      'local diff found more added lines than GitHub counts; the added lines stay unchecked',
    );
    return null;
  }
  return result.patch;
}

/**
 * Runs `work` and calls `checkpoint` every `intervalMs` until `work` settles. The diff thread
 * serves the analyses of the whole process one diff at a time, so a diff can wait behind others
 * for seconds. When `checkpoint` throws, `work` is aborted through its signal and the error is
 * raised.
 */
async function runWithCheckpoints<T>(
  work: (signal: AbortSignal) => Promise<T>,
  checkpoint: () => Promise<void>,
  intervalMs: number,
): Promise<T> {
  const controller = new AbortController();
  const running = work(controller.signal);
  const settled = running.then(
    () => true,
    () => true,
  );
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const tick = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), intervalMs);
    });
    const done = await Promise.race([settled, tick]);
    clearTimeout(timer);
    if (done) return running;
    try {
      await checkpoint();
    } catch (error) {
      controller.abort(error);
      // The aborted work rejects with the same error, which is raised here instead.
      running.catch(() => {});
      throw error;
    }
  }
}
