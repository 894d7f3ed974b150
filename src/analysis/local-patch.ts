import { diffArrays } from 'diff';

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
 * Splits text into lines that keep their `\n`, so a last line without one differs from the same
 * line with one, as in git. A `\r` stays part of the line.
 */
function splitLines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

/** Replaces each line by a number that is the same for equal lines of either side. */
function internLines(oldLines: string[], newLines: string[]): [number[], number[]] {
  const ids = new Map<string, number>();
  const idOf = (line: string): number => {
    let id = ids.get(line);
    if (id === undefined) {
      id = ids.size;
      ids.set(line, id);
    }
    return id;
  };
  return [oldLines.map(idOf), newLines.map(idOf)];
}

/** Returns the indexes of the entries of `values` that also occur in `others`. */
function indexesOfShared(values: number[], others: number[]): number[] {
  const present = new Set(others);
  const indexes: number[] = [];
  values.forEach((value, index) => {
    if (present.has(value)) {
      indexes.push(index);
    }
  });
  return indexes;
}

/**
 * Returns the pairs of old and new line indexes that a minimal line diff keeps unchanged, or
 * null when the diff gives up at `limits`.
 */
function unchangedPairs(
  oldIds: number[],
  newIds: number[],
  limits: DiffLimits,
): [number, number][] | null {
  // A line that occurs on one side only is removed or added in every diff, so leaving such lines
  // out keeps the longest common subsequence. It also shrinks the edit length, which the time of
  // Myers' algorithm grows with.
  const oldShared = indexesOfShared(oldIds, newIds);
  const newShared = indexesOfShared(newIds, oldIds);
  const changes = diffArrays(
    oldShared.map((index) => oldIds[index]!),
    newShared.map((index) => newIds[index]!),
    { maxEditLength: limits.maxEditLength, timeout: limits.timeoutMs },
  );
  if (changes === undefined) {
    return null;
  }

  const pairs: [number, number][] = [];
  let oldPosition = 0;
  let newPosition = 0;
  for (const change of changes) {
    if (change.added) {
      newPosition += change.count;
    } else if (change.removed) {
      oldPosition += change.count;
    } else {
      for (let offset = 0; offset < change.count; offset += 1) {
        pairs.push([oldShared[oldPosition + offset]!, newShared[newPosition + offset]!]);
      }
      oldPosition += change.count;
      newPosition += change.count;
    }
  }
  return pairs;
}

/**
 * Diffs two versions of a file by lines and builds a patch of the lines that `newText` adds,
 * numbered as in `newText`. Each hunk header gives its place in `oldText` with a count of 0,
 * because the removed lines are left out: the patch is for reading added lines, not for
 * applying. Returns null when the diff gives up at `limits`.
 */
export function additionsPatch(
  oldText: string,
  newText: string,
  limits: DiffLimits,
): AdditionsPatch | null {
  const newLines = splitLines(newText);
  const [oldIds, newIds] = internLines(splitLines(oldText), newLines);
  const pairs = unchangedPairs(oldIds, newIds, limits);
  if (pairs === null) {
    return null;
  }
  // A last pair past both ends closes the added lines after the last unchanged line.
  pairs.push([oldIds.length, newIds.length]);

  const output: string[] = [];
  let additions = 0;
  let previousNew = -1;
  for (const [oldIndex, newIndex] of pairs) {
    const count = newIndex - previousNew - 1;
    if (count > 0) {
      // In a header, a count of 0 goes with the number of the line before, here `oldIndex`.
      output.push(`@@ -${oldIndex},0 +${previousNew + 2},${count} @@`);
      for (let index = previousNew + 1; index < newIndex; index += 1) {
        output.push(`+${newLines[index]!.replace(/\n$/, '')}`);
      }
      additions += count;
    }
    previousNew = newIndex;
  }
  return { patch: output.join('\n'), additions };
}
