import { sharedDiffWorker, type DiffWorker } from './diff-worker.ts';

/** Bounds on the work of one local diff. */
export interface DiffLimits {
  /** Edit length (lines added plus removed) after which the diff gives up. */
  maxEditLength: number;
  /** Time after which the diff gives up, in milliseconds. */
  timeoutMs: number;
}

export interface AdditionsPatch {
  /** Hunks with only the added lines: GitHub's `patch` format without context or `-` lines. */
  patch: string;
  /** Number of added lines in `patch`. */
  additions: number;
}

/**
 * Diffs two versions of a file by lines and builds a patch of the lines that `newText` adds,
 * numbered as in `newText`. Each hunk header gives its place in `oldText` with a count of 0,
 * because the removed lines are left out: the patch is for reading added lines, not for
 * applying. Returns null when the diff gives up at `limits` or overruns its timeout.
 *
 * The work runs in `worker`'s thread (diff-thread.mjs holds the algorithm), so it does not block
 * the event loop. It rejects with `DiffThreadError` if that thread fails, and with the abort
 * reason once `signal` aborts (see `DiffWorker.diff`).
 */
export async function additionsPatch(
  oldText: string,
  newText: string,
  limits: DiffLimits,
  worker: DiffWorker = sharedDiffWorker,
  signal?: AbortSignal,
): Promise<AdditionsPatch | null> {
  return worker.diff(oldText, newText, limits, signal);
}
