/** One rendered row of a unified diff. Line numbers are 1-based; null where a side has none. */
export interface DiffRow {
  kind: 'header' | 'hunk' | 'context' | 'add' | 'delete' | 'note';
  oldLine: number | null;
  newLine: number | null;
  text: string;
}

const hunkHeader = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$/;

/**
 * Splits a unified diff (as `diff`'s createTwoFilesPatch writes it) into rows with old and new
 * line numbers. Hunk line counts decide where a hunk ends, so a removed line that starts with
 * "--" is not mistaken for a file header.
 */
export function parseUnifiedDiff(diff: string): DiffRow[] {
  const rows: DiffRow[] = [];
  const lines = diff.split('\n');
  if (lines.at(-1) === '') lines.pop();
  let oldLine = 0;
  let newLine = 0;
  let oldRemaining = 0;
  let newRemaining = 0;

  for (const line of lines) {
    const inHunk = oldRemaining > 0 || newRemaining > 0;
    if (line.startsWith('\\')) {
      rows.push({ kind: 'note', oldLine: null, newLine: null, text: line.slice(1).trim() });
      continue;
    }
    if (!inHunk) {
      const match = hunkHeader.exec(line);
      if (match) {
        oldLine = Number(match[1]);
        newLine = Number(match[3]);
        oldRemaining = match[2] === undefined ? 1 : Number(match[2]);
        newRemaining = match[4] === undefined ? 1 : Number(match[4]);
        rows.push({ kind: 'hunk', oldLine: null, newLine: null, text: line });
      } else if (line.startsWith('---') || line.startsWith('+++')) {
        rows.push({ kind: 'header', oldLine: null, newLine: null, text: line });
      }
      // Other lines outside hunks ("Index:", "=====") carry nothing worth showing.
      continue;
    }

    const marker = line[0];
    const text = line.slice(1);
    if (marker === '+') {
      rows.push({ kind: 'add', oldLine: null, newLine, text });
      newLine += 1;
      newRemaining -= 1;
    } else if (marker === '-') {
      rows.push({ kind: 'delete', oldLine, newLine: null, text });
      oldLine += 1;
      oldRemaining -= 1;
    } else {
      // A context line; an empty line counts as context, since some tools strip the space.
      rows.push({ kind: 'context', oldLine, newLine, text });
      oldLine += 1;
      newLine += 1;
      oldRemaining -= 1;
      newRemaining -= 1;
    }
  }
  return rows;
}
