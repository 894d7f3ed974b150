import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createTwoFilesPatch } from 'diff';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DiffWorker } from '../../src/analysis/diff-worker.ts';
import {
  buildPreviewDiff,
  fixDiffTimeoutMs,
  maxDiffEditLines,
} from '../../src/autofix/preview-diff.ts';
import { createLogger } from '../../src/logger.ts';
import { failingDiffWorker } from '../helpers/failing-diff-worker.ts';

const logger = createLogger('silent');

let workers: DiffWorker[] = [];

function newWorker(worker: DiffWorker = new DiffWorker()): DiffWorker {
  workers.push(worker);
  return worker;
}

afterEach(async () => {
  await Promise.all(workers.map((worker) => worker.close()));
  workers = [];
});

function textOf(count: number, line: (index: number) => string): string {
  return `${Array.from({ length: count }, (_, index) => line(index)).join('\n')}\n`;
}

/** Builds the preview's diff with createTwoFilesPatch on the event loop, as before the thread. */
function expectedDiff(path: string, originalText: string, proposedText: string) {
  return createTwoFilesPatch(
    `a/${path}`,
    `b/${path}`,
    originalText,
    proposedText,
    undefined,
    undefined,
    { context: 3, maxEditLength: maxDiffEditLines },
  );
}

const rows = textOf(40, (index) => `export const row${index} = ${index};`);

describe('buildPreviewDiff', () => {
  it.each([
    ['one changed line', 'src/a.ts', rows, rows.replace('row7 = 7', 'row7 = 70')],
    ['no trailing newline before', 'src/a.ts', rows.slice(0, -1), rows],
    ['no trailing newline after', 'src/a.ts', rows, rows.replace('row39 = 39;\n', 'row39 = 0;')],
    ['no trailing newline on both', 'src/a.ts', 'a\nb', 'a\nc'],
    [
      'CRLF line breaks',
      'src/win.ts',
      rows.replaceAll('\n', '\r\n'),
      rows.replaceAll('\n', '\r\n').replace('row3 = 3;\r\n', 'row3 = 3;\r\nadded();\r\n'),
    ],
    ['CRLF to LF on one line', 'src/a.ts', 'a\r\nb\r\nc\r\n', 'a\r\nb\nc\r\n'],
    ['lines removed at the top', 'src/a.ts', rows, rows.split('\n').slice(5).join('\n')],
    ['empty original', 'src/new.ts', '', 'export {};\n'],
    ['path with a space and non-ASCII', 'src/mé file.ts', 'x\n', 'y\n'],
    ['several hunks', 'src/a.ts', rows, rows.replace('row2 ', 'r2 ').replace('row30 ', 'r30 ')],
  ])('matches createTwoFilesPatch: %s', async (_, path, originalText, proposedText) => {
    const result = await buildPreviewDiff({ path, originalText, proposedText, logger });

    const expected = expectedDiff(path, originalText, proposedText);
    expect(expected).toBeDefined();
    expect(result).toEqual({ ok: true, diff: expected });
  });

  it('fails an output past the edit limit', async () => {
    const proposedText = textOf(maxDiffEditLines, (index) => `const v${index} = ${index};`);

    const result = await buildPreviewDiff({
      path: 'src/b.ts',
      originalText: 'a\nb\n',
      proposedText,
      logger,
    });

    expect(result).toEqual({
      ok: false,
      reason:
        `The model's output adds and removes more than ${maxDiffEditLines} lines of src/b.ts ` +
        'together, which is a rewrite rather than a fix, so it was discarded. ' +
        'Request the fix again.',
    });
  });

  it('keeps the event loop free during a large diff', async () => {
    // Every 100th of 100,000 lines changes: 1,000 changed lines, within the edit limit. On the
    // event loop, jsdiff took 0.6 s for this diff on a busy 2 vCPU machine.
    const originalText = textOf(100_000, (index) => `export const row${index} = ${index};`);
    const proposedText = textOf(100_000, (index) =>
      index % 100 === 0 ? `export const changed${index} = 0;` : `export const row${index} = ${index};`,
    );
    const worker = newWorker();
    // Starts the thread, so the timed diff does not include its start.
    await buildPreviewDiff({ path: 'x', originalText: 'a\n', proposedText: 'b\n', logger }, worker);
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    // The histogram's timer needs a first sample before the diff, or it misses the delay.
    await new Promise((resolve) => setTimeout(resolve, 50));

    const start = performance.now();
    const result = await buildPreviewDiff(
      { path: 'src/large.ts', originalText, proposedText, logger },
      worker,
    );
    const elapsedMs = performance.now() - start;

    await new Promise((resolve) => setTimeout(resolve, 20));
    delay.disable();
    expect(elapsedMs).toBeGreaterThan(200);
    expect(delay.max / 1e6).toBeLessThan(elapsedMs / 2);
    expect(result).toEqual({
      ok: true,
      diff: expectedDiff('src/large.ts', originalText, proposedText),
    });
  });

  it('fails only the diff whose thread crashes', async () => {
    const worker = newWorker(failingDiffWorker('crash'));
    const input = { path: 'src/a.ts', originalText: 'a\nb\n', proposedText: 'a\nc\n', logger };

    const results = await Promise.all([
      buildPreviewDiff(input, worker),
      buildPreviewDiff(input, worker),
    ]);

    expect(results[0]).toEqual({
      ok: false,
      reason:
        "The diff of the model's output for src/a.ts failed because the diff thread stopped " +
        '(the diff thread failed: the test thread crashed on purpose), so the output was ' +
        'discarded. Request the fix again.',
    });
    expect(results[1]).toEqual({
      ok: true,
      diff: expectedDiff('src/a.ts', 'a\nb\n', 'a\nc\n'),
    });
  });

  it('fails a diff that timed out', async () => {
    const worker = newWorker();
    vi.spyOn(worker, 'structuredPatch').mockResolvedValue({ status: 'timed_out' });

    const result = await buildPreviewDiff(
      { path: 'src/a.ts', originalText: 'a\n', proposedText: 'b\n', logger },
      worker,
    );

    expect(result).toEqual({
      ok: false,
      reason:
        `The diff of the model's output for src/a.ts did not finish within ` +
        `${fixDiffTimeoutMs / 1000} s, so the output was discarded. The server may be busy, ` +
        'so request the fix again in a few minutes.',
    });
  });
});
