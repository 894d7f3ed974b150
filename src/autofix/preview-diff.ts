import { formatPatch } from 'diff';
import { DiffThreadError, sharedFixDiffWorker, type DiffWorker } from '../analysis/diff-worker.ts';
import type { Logger } from '../logger.ts';
import { toSafeError } from '../errors/safe-error.ts';

/**
 * Maximum number of lines that a file's fix may add and remove together. The diff's time grows
 * with the square of this count. An output that differs in every line of a 100,000-line file
 * took 4 minutes without the limit and 0.5 s with it (jsdiff 9, measured on a 2-core Linux
 * machine).
 */
export const maxDiffEditLines = 2000;

/**
 * Time limit of the diff between a file and its fix, in milliseconds, for the preview and for
 * the suggestions built when the fix is applied. In bench/preview-diff.ts on a 2 vCPU AMD EPYC
 * at load average 5 to 10, 100,000 lines with 1,000 or all of them changed took 0.4 to 1.1 s.
 * Files of two alternating lines in another order took 1.4 to 5.2 s (see BENCHMARKS.md). The
 * model call before the preview's diff has been paid for, so the limit leaves room for a busy
 * machine. The diff runs in its own thread (`sharedFixDiffWorker`), so waiting holds up only
 * other fixes' diffs. The suggestions' diff has no edit limit, so this alone bounds it.
 */
export const fixDiffTimeoutMs = 30_000;

export type PreviewDiff = { ok: true; diff: string } | { ok: false; reason: string };

/**
 * Builds the unified diff of a file's preview from `originalText` to `proposedText`, with three
 * lines of context: the text that jsdiff's `createTwoFilesPatch` returns. The diff runs in
 * `worker`'s thread. It fails with a reason for the user when the output adds and removes more
 * than `maxDiffEditLines` lines, when the diff times out, or when its thread fails.
 */
export async function buildPreviewDiff(
  input: { path: string; originalText: string; proposedText: string; logger: Logger },
  worker: DiffWorker = sharedFixDiffWorker,
): Promise<PreviewDiff> {
  const { path } = input;
  let result;
  try {
    result = await worker.structuredPatch({
      oldFileName: `a/${path}`,
      newFileName: `b/${path}`,
      oldText: input.originalText,
      newText: input.proposedText,
      context: 3,
      maxEditLength: maxDiffEditLines,
      timeoutMs: fixDiffTimeoutMs,
    });
  } catch (error) {
    if (!(error instanceof DiffThreadError)) throw error;
    input.logger.warn(
      { event: 'preview.diff_failed', err: toSafeError(error) },
      'preview diff thread failed; the file failed',
    );
    return {
      ok: false,
      reason:
        `The diff of the model's output for ${path} failed because the diff thread stopped ` +
        `(${error.message}), so the output was discarded. Request the fix again.`,
    };
  }

  if (result.status === 'too_many_edits') {
    return {
      ok: false,
      reason:
        `The model's output adds and removes more than ${maxDiffEditLines} lines of ` +
        `${path} together, which is a rewrite rather than a fix, so it was discarded. ` +
        'Request the fix again.',
    };
  }
  if (result.status === 'timed_out') {
    input.logger.warn(
      { event: 'preview.diff_timed_out', timeoutMs: fixDiffTimeoutMs },
      'preview diff timed out; the file failed',
    );
    return {
      ok: false,
      reason:
        `The diff of the model's output for ${path} did not finish within ` +
        `${fixDiffTimeoutMs / 1000} s, so the output was discarded. The server may be busy, ` +
        'so request the fix again in a few minutes.',
    };
  }
  // createTwoFilesPatch formats the patch the same way, with its default headers.
  return { ok: true, diff: formatPatch(result.patch) };
}
