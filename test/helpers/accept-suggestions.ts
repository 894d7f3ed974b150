/**
 * A change to a text in head-file line numbers: `count` lines from line `first` (1-based) are
 * replaced by `content`, whose lines keep their line breaks. With `count` 0 the content is
 * inserted before line `first`.
 */
export interface LineEdit {
  first: number;
  count: number;
  content: string;
}

/** A review comment as the fake GitHub stores it. */
export interface SuggestionRecord {
  line: number;
  startLine: number | null;
  body: string;
}

/**
 * Returns the edit that GitHub makes when it accepts the suggestion in `comment`. It replaces
 * the selected lines, from `startLine` (or `line` alone) to `line`, with the text between the
 * block's fences, including the line break before the closing fence.
 */
export function suggestionEdit(comment: SuggestionRecord): LineEdit {
  const first = comment.startLine ?? comment.line;
  const content = comment.body.slice(
    comment.body.indexOf('\n') + 1,
    comment.body.lastIndexOf('\n') + 1,
  );
  return { first, count: comment.line - first + 1, content };
}

/**
 * Returns the first line on which two of `edits` overlap, or null when none do. Two insertions
 * before the same line overlap too, because their order would be undefined.
 */
export function firstOverlap(edits: readonly LineEdit[]): number | null {
  const ordered = [...edits].sort(
    (left, right) => left.first - right.first || left.count - right.count,
  );
  // One past the last line that an edit so far replaces.
  let reach = 1;
  let lastInsertion: number | null = null;
  for (const edit of ordered) {
    if (edit.first < reach) return edit.first;
    if (edit.count === 0 && edit.first === lastInsertion) return edit.first;
    if (edit.count === 0) lastInsertion = edit.first;
    reach = Math.max(reach, edit.first + edit.count);
  }
  return null;
}

/**
 * Applies `edits`, which must not overlap, to `text`. They are applied from the bottom up so
 * that the line numbers of the ones above stay valid. Of a replacement and an insertion at one
 * line, the replacement is applied first, so the insertion ends up above it.
 */
export function applyLineEdits(text: string, edits: readonly LineEdit[]): string {
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  const ordered = [...edits].sort(
    (left, right) => right.first - left.first || right.count - left.count,
  );
  for (const edit of ordered) {
    lines.splice(edit.first - 1, edit.count, edit.content);
  }
  return lines.join('');
}

/** Accepts every suggestion of `comments` on `text`, as GitHub's "Commit suggestions" does. */
export function acceptSuggestions(text: string, comments: readonly SuggestionRecord[]): string {
  return applyLineEdits(text, comments.map(suggestionEdit));
}
