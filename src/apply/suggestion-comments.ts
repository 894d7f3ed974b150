import {
  FILE_HEADERS_ONLY,
  formatPatch,
  type StructuredPatch,
  type StructuredPatchHunk,
} from 'diff';
import { DiffThreadError, sharedFixDiffWorker, type DiffWorker } from '../analysis/diff-worker.ts';
import { changedLineRanges, type LineRange } from '../analysis/patch.ts';
import { fixDiffTimeoutMs } from '../autofix/preview-diff.ts';

/** A review comment on the new side of a pull request's diff, as `pulls.createReview` takes it. */
export interface SuggestionComment {
  path: string;
  body: string;
  line: number;
  side: 'RIGHT';
  start_line?: number;
  start_side?: 'RIGHT';
}

export interface FileSuggestions {
  comments: SuggestionComment[];
  /** Unified diff of the changes that cannot be suggestions, or null when there are none. */
  outsideDiff: string | null;
}

const noNewlineMarker = '\\ No newline at end of file';

/**
 * Raised when the diff behind a file's suggestions times out or its thread fails. Nothing was
 * posted, and applying again may succeed.
 */
export class SuggestionDiffError extends Error {
  override name = 'SuggestionDiffError';
}

/** GitHub rejects a review comment whose body is longer than this many characters. */
const maxCommentBodyLength = 65536;

/** Splits text into lines without their line endings; a final line break adds no empty line. */
function splitLines(text: string): string[] {
  const lines = text.split('\n').map((line) => line.replace(/\r$/, ''));
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/**
 * Returns the line break that most of the text's lines end with: CRLF when CRLF outnumbers a
 * bare LF, else LF. A text without line breaks counts as LF.
 */
export function dominantLineBreak(text: string): '\r\n' | '\n' {
  const lineFeeds = text.split('\n').length - 1;
  const crlfs = text.split('\r\n').length - 1;
  return crlfs > lineFeeds - crlfs ? '\r\n' : '\n';
}

/**
 * Builds a ```suggestion block whose fence is longer than any backtick run in the content.
 * Every line of the block, fences included, ends with `lineBreak`.
 */
export function suggestionBlock(lines: readonly string[], lineBreak: '\r\n' | '\n' = '\n'): string {
  let longestRun = 0;
  for (const line of lines) {
    for (const run of line.match(/`+/g) ?? []) longestRun = Math.max(longestRun, run.length);
  }
  const fence = '`'.repeat(Math.max(3, longestRun + 1));
  return [`${fence}suggestion`, ...lines, fence].join(lineBreak);
}

/** Returns whether the hunk adds or removes the final line break on one side only. */
function changesFinalNewline(hunk: StructuredPatchHunk): boolean {
  let oldSide = false;
  let newSide = false;
  hunk.lines.forEach((line, index) => {
    if (line !== noNewlineMarker) return;
    const marked = hunk.lines[index - 1] ?? '';
    if (marked.startsWith('-')) oldSide = true;
    else if (marked.startsWith('+')) newSide = true;
    else {
      oldSide = true;
      newSide = true;
    }
  });
  return oldSide !== newSide;
}

/**
 * Returns the head-file lines that a suggestion for `hunk` must select, or null when the file
 * has no line to select. GitHub cannot select zero lines, so an insertion selects the line above
 * it, or the first line for an insertion at the top, and its suggestion repeats that line.
 */
function linesForHunk(hunk: StructuredPatchHunk, lineCount: number): LineRange | null {
  if (hunk.oldLines > 0) return { start: hunk.oldStart, end: hunk.oldStart + hunk.oldLines - 1 };
  // jsdiff numbers a pure insertion by the old line it precedes, not the line after which it goes.
  const above = hunk.oldStart - 1;
  if (above >= 1) return { start: above, end: above };
  return lineCount > 0 ? { start: 1, end: 1 } : null;
}

/** Hunks whose selected head-file lines overlap, so that one suggestion must carry them all. */
interface HunkGroup {
  hunks: StructuredPatchHunk[];
  /** Union of the hunks' selected lines, or null when the file has no line to select. */
  lines: LineRange | null;
}

/**
 * Groups consecutive hunks whose selected lines overlap, for example an insertion at the top and
 * one below line 1, which both select line 1. GitHub applies one suggestion per line when it
 * commits a batch and marks the others outdated, so overlapping suggestions cannot all be
 * accepted. `hunks` must be in file order, as jsdiff returns them.
 */
function groupOverlappingHunks(
  hunks: readonly StructuredPatchHunk[],
  lineCount: number,
): HunkGroup[] {
  const groups: HunkGroup[] = [];
  for (const hunk of hunks) {
    const lines = linesForHunk(hunk, lineCount);
    const last = groups.at(-1);
    if (lines && last?.lines && lines.start <= last.lines.end) {
      last.hunks.push(hunk);
      last.lines = { start: last.lines.start, end: Math.max(last.lines.end, lines.end) };
    } else {
      groups.push({ hunks: [hunk], lines });
    }
  }
  return groups;
}

/**
 * Returns the lines that replace `lines` of `original` once every hunk of `hunks` is applied:
 * the unchanged lines of the range between and around the hunks, and each hunk's added lines.
 */
function replacementLines(
  hunks: readonly StructuredPatchHunk[],
  lines: LineRange,
  original: readonly string[],
): string[] {
  const replacement: string[] = [];
  // The next head-file line (1-based) that no hunk has removed or copied yet.
  let next = lines.start;
  for (const hunk of hunks) {
    replacement.push(...original.slice(next - 1, hunk.oldStart - 1));
    for (const line of hunk.lines) {
      if (line.startsWith('+')) replacement.push(line.slice(1).replace(/\r$/, ''));
    }
    next = hunk.oldStart + hunk.oldLines;
  }
  replacement.push(...original.slice(next - 1, lines.end));
  return replacement;
}

function insideOneRange(ranges: readonly LineRange[], start: number, end: number): boolean {
  return ranges.some((range) => range.start <= start && end <= range.end);
}

/**
 * Diffs the file with no context lines in `worker`'s thread, with no edit limit because the
 * preview stored only fixes within `maxDiffEditLines`. Raises `SuggestionDiffError` when the
 * diff times out or its thread fails.
 */
async function diffForSuggestions(
  file: { path: string; originalText: string; proposedText: string },
  worker: DiffWorker,
): Promise<StructuredPatch> {
  let result;
  try {
    result = await worker.structuredPatch({
      oldFileName: `a/${file.path}`,
      newFileName: `b/${file.path}`,
      oldText: file.originalText,
      newText: file.proposedText,
      context: 0,
      timeoutMs: fixDiffTimeoutMs,
    });
  } catch (error) {
    if (!(error instanceof DiffThreadError)) throw error;
    throw new SuggestionDiffError(
      `The diff for the suggestions on ${file.path} failed because the diff thread stopped ` +
        `(${error.message}), so nothing was posted. Apply the patch request again.`,
      { cause: error },
    );
  }
  if (result.status !== 'done') {
    throw new SuggestionDiffError(
      `The diff for the suggestions on ${file.path} did not finish within ` +
        `${fixDiffTimeoutMs / 1000} s, so nothing was posted. The server may be busy, so apply ` +
        'the patch request again in a few minutes.',
    );
  }
  return result.patch;
}

/**
 * Turns the change from `originalText` (the file at the pull request's head) to `proposedText`
 * into review comments with ```suggestion blocks. A change becomes a suggestion only when all
 * the lines it replaces lie in one hunk of `pullRequestPatch`, because GitHub accepts review
 * comments only on lines of the diff and a multi-line comment only within one hunk. Every
 * other change goes into `outsideDiff`, and so does one that changes the final line break,
 * touches the last line of a file without one, or whose block is too long for a comment.
 * The diff runs in `worker`'s thread and raises `SuggestionDiffError` if it cannot finish.
 *
 * The blocks end their lines like most lines of `originalText`, because GitHub does not
 * convert an accepted suggestion's line breaks to the file's. Public pull requests remove
 * CRLF that "Apply suggestions" wrote into LF files, for example LexiFi/dead_code_analyzer#71
 * and w3c-fedid/digital-credentials#572, so LF blocks would likewise mix LF into a CRLF file.
 */
export async function buildFileSuggestions(
  file: {
    path: string;
    originalText: string;
    proposedText: string;
    pullRequestPatch: string | null;
  },
  worker: DiffWorker = sharedFixDiffWorker,
): Promise<FileSuggestions> {
  const patch = await diffForSuggestions(file, worker);
  const ranges = file.pullRequestPatch ? changedLineRanges(file.pullRequestPatch) : [];
  const original = splitLines(file.originalText);
  const lineBreak = dominantLineBreak(file.originalText);
  const comments: SuggestionComment[] = [];
  const outside: StructuredPatchHunk[] = [];

  // GitHub does not document whether accepting a suggestion on the last line of a file without
  // a final line break keeps the break missing, and its web editor was reported in 2019 to add
  // one to every file it saves (github.com/isaacs/github/issues/1469). So the body gets such a
  // change, which then gives the preview whatever GitHub does.
  const lastLineWithoutBreak =
    original.length > 0 && !file.originalText.endsWith('\n') ? original.length : null;
  for (const group of groupOverlappingHunks(patch.hunks, original.length)) {
    const { lines } = group;
    // A group becomes one suggestion or goes to the body whole, so no suggestion selects a line
    // that a change in the body also touches.
    const suggestible =
      lines !== null &&
      insideOneRange(ranges, lines.start, lines.end) &&
      lines.end !== lastLineWithoutBreak &&
      !group.hunks.some(changesFinalNewline);
    if (!suggestible) {
      outside.push(...group.hunks);
      continue;
    }
    const body = suggestionBlock(replacementLines(group.hunks, lines, original), lineBreak);
    // The whole review would be rejected, so a change too long for one comment goes to the body.
    if (body.length > maxCommentBodyLength) {
      outside.push(...group.hunks);
      continue;
    }
    const comment: SuggestionComment = {
      path: file.path,
      body,
      line: lines.end,
      side: 'RIGHT',
    };
    if (lines.start < lines.end) {
      comment.start_line = lines.start;
      comment.start_side = 'RIGHT';
    }
    comments.push(comment);
  }

  const outsideDiff =
    outside.length > 0 ? formatPatch({ ...patch, hunks: outside }, FILE_HEADERS_ONLY) : null;
  return { comments, outsideDiff };
}
