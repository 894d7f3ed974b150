// Worker thread script of `DiffWorker` (diff-worker.ts). It builds the patch of a modified file
// and the patches of fix previews off the main event loop, because the line splitting and the
// Myers diff both take time that grows with the file. It is plain JavaScript that imports only
// `diff`, because Node 20 does not pass the tsx loader that bin/fixwright.js registers in the
// main thread on to worker threads.
// diff-worker.ts declares the messages (`DiffJob`) and the reply to `structuredPatch`
// (`StructuredPatchResult`), and local-patch.ts the reply to `additions` (`AdditionsPatch`).
import { parentPort } from 'node:worker_threads';
import { diffArrays, structuredPatch } from 'diff';

/**
 * Splits text into lines that keep their `\n`, so a last line without one differs from the same
 * line with one, as in git. A `\r` stays part of the line.
 * @param {string} text
 * @returns {string[]}
 */
function splitLines(text) {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

/**
 * Replaces each line by a number that is the same for equal lines of either side.
 * @param {string[]} oldLines
 * @param {string[]} newLines
 * @returns {[number[], number[]]}
 */
function internLines(oldLines, newLines) {
  const ids = new Map();
  const idOf = (line) => {
    let id = ids.get(line);
    if (id === undefined) {
      id = ids.size;
      ids.set(line, id);
    }
    return id;
  };
  return [oldLines.map(idOf), newLines.map(idOf)];
}

/**
 * Returns the indexes of the entries of `values` that also occur in `others`.
 * @param {number[]} values
 * @param {number[]} others
 * @returns {number[]}
 */
function indexesOfShared(values, others) {
  const present = new Set(others);
  const indexes = [];
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
 * @param {number[]} oldIds
 * @param {number[]} newIds
 * @param {{ maxEditLength: number, timeoutMs: number }} limits
 * @returns {[number, number][] | null}
 */
function unchangedPairs(oldIds, newIds, limits) {
  // A line that occurs on one side only is removed or added in every diff, so leaving such lines
  // out keeps the longest common subsequence. It also shrinks the edit length, which the time of
  // Myers' algorithm grows with.
  const oldShared = indexesOfShared(oldIds, newIds);
  const newShared = indexesOfShared(newIds, oldIds);
  const changes = diffArrays(
    oldShared.map((index) => oldIds[index]),
    newShared.map((index) => newIds[index]),
    { maxEditLength: limits.maxEditLength, timeout: limits.timeoutMs },
  );
  if (changes === undefined) {
    return null;
  }

  const pairs = [];
  let oldPosition = 0;
  let newPosition = 0;
  for (const change of changes) {
    if (change.added) {
      newPosition += change.count;
    } else if (change.removed) {
      oldPosition += change.count;
    } else {
      for (let offset = 0; offset < change.count; offset += 1) {
        pairs.push([oldShared[oldPosition + offset], newShared[newPosition + offset]]);
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
 * @param {string} oldText
 * @param {string} newText
 * @param {{ maxEditLength: number, timeoutMs: number }} limits
 * @returns {{ patch: string, additions: number } | null}
 */
function additionsPatch(oldText, newText, limits) {
  const newLines = splitLines(newText);
  const [oldIds, newIds] = internLines(splitLines(oldText), newLines);
  const pairs = unchangedPairs(oldIds, newIds, limits);
  if (pairs === null) {
    return null;
  }
  // A last pair past both ends closes the added lines after the last unchanged line.
  pairs.push([oldIds.length, newIds.length]);

  const output = [];
  let additions = 0;
  let previousNew = -1;
  for (const [oldIndex, newIndex] of pairs) {
    const count = newIndex - previousNew - 1;
    if (count > 0) {
      // In a header, a count of 0 goes with the number of the line before, here `oldIndex`.
      output.push(`@@ -${oldIndex},0 +${previousNew + 2},${count} @@`);
      for (let index = previousNew + 1; index < newIndex; index += 1) {
        output.push(`+${newLines[index].replace(/\n$/, '')}`);
      }
      additions += count;
    }
    previousNew = newIndex;
  }
  return { patch: output.join('\n'), additions };
}

/**
 * Runs jsdiff's `structuredPatch` with no headers and returns its patch, or the limit at which
 * it gave up. jsdiff returns undefined for both limits, so a diff that gave up before
 * `timeoutMs` passed stopped at `maxEditLength`. One that gave up later counts as timed out,
 * because jsdiff starts its clock after this one and stops only once it is past.
 * @param {import('./diff-worker.ts').StructuredPatchRequest} request
 * @returns {import('./diff-worker.ts').StructuredPatchResult}
 */
function structuredPatchResult(request) {
  const start = Date.now();
  const patch = structuredPatch(
    request.oldFileName,
    request.newFileName,
    request.oldText,
    request.newText,
    undefined,
    undefined,
    { context: request.context, maxEditLength: request.maxEditLength, timeout: request.timeoutMs },
  );
  if (patch !== undefined) {
    return { status: 'done', patch };
  }
  return Date.now() - start > request.timeoutMs ? { status: 'timed_out' } : { status: 'too_many_edits' };
}

// Each message is one diff, and the reply is its result.
parentPort.on('message', (message) => {
  if (message.kind === 'structuredPatch') {
    parentPort.postMessage(structuredPatchResult(message));
    return;
  }
  parentPort.postMessage(additionsPatch(message.oldText, message.newText, message.limits));
});
