/**
 * Measures the diff of a fix preview between a file and the model's output, as it ran on the
 * event loop before (jsdiff's `createTwoFilesPatch` with `maxDiffEditLines`) and as it runs now
 * (`buildPreviewDiff` in the fixes' diff thread, `sharedFixDiffWorker`, with
 * `fixDiffTimeoutMs`). For each case it prints the median time of the rounds, the longest event
 * loop delay of all rounds and the outcome, before and after. The first three cases change 10 of 5,000 lines, 1,000 of 100,000
 * lines and every line of 100,000. The last two reorder two alternating lines, in 100,000 lines
 * (200 KB, the default PREVIEW_MAX_FILE_BYTES) and in 250,000 lines. The last three stop at the
 * edit limit, or at the timeout on a loaded machine.
 *
 * Run: npx tsx bench/preview-diff.ts [--rounds 3]
 */
import { createTwoFilesPatch } from 'diff';
import { sharedFixDiffWorker } from '../src/analysis/diff-worker.ts';
import { buildPreviewDiff, maxDiffEditLines } from '../src/autofix/preview-diff.ts';
import { createLogger } from '../src/logger.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { median } from './database.ts';
import { timeWithDelay } from './event-loop-delay.ts';

const usage =
  'Usage: npx tsx bench/preview-diff.ts [--rounds N]\n' +
  '  --rounds   timed runs per case; the median is reported (default 3)';

const values = readBenchOptions(usage, { rounds: '3' });
const rounds = wholeNumber(usage, 'rounds', values.rounds, 1, 100);
const logger = createLogger('silent');

function textOf(count: number, line: (index: number) => string): string {
  return `${Array.from({ length: count }, (_, index) => line(index)).join('\n')}\n`;
}

interface Timing {
  milliseconds: number;
  maxDelay: number;
  outcome: string;
}

/** Runs `diff` for `rounds` rounds and returns the median time and the longest delay. */
async function measure(diff: () => Promise<string> | string): Promise<Timing> {
  const times: number[] = [];
  let maxDelay = 0;
  let outcome = '';
  for (let round = 0; round < rounds; round += 1) {
    const timed = await timeWithDelay(diff);
    times.push(timed.milliseconds);
    maxDelay = Math.max(maxDelay, timed.maxDelay);
    outcome = timed.result;
  }
  return { milliseconds: median(times), maxDelay, outcome };
}

function describeTiming(label: string, timing: Timing): string {
  return (
    `${label} ${Math.round(timing.milliseconds)} ms, ` +
    `longest event loop delay ${Math.round(timing.maxDelay)} ms, ${timing.outcome}`
  );
}

async function measureCase(name: string, originalText: string, proposedText: string) {
  const before = await measure(() => {
    const diff = createTwoFilesPatch(
      'a/file',
      'b/file',
      originalText,
      proposedText,
      undefined,
      undefined,
      { context: 3, maxEditLength: maxDiffEditLines },
    );
    return diff === undefined ? 'gave up' : `${diff.length} characters`;
  });
  const after = await measure(async () => {
    const result = await buildPreviewDiff({ path: 'file', originalText, proposedText, logger });
    // The reason's first clause names the limit, such as the edit limit or the timeout.
    return result.ok ? `${result.diff.length} characters` : `failed: ${result.reason.split(',')[0]}`;
  });
  console.log(`${name}:\n  ${describeTiming('before', before)}\n  ${describeTiming('after', after)}`);
}

// Starts the diff thread, so the first case does not include its start.
await buildPreviewDiff({ path: 'file', originalText: 'a\n', proposedText: 'b\n', logger });

const rows = (count: number) => textOf(count, (index) => `export const row${index} = ${index};`);
const changedEvery = (count: number, step: number) =>
  textOf(count, (index) =>
    index % step === 0 ? `export const changed${index} = 0;` : `export const row${index} = ${index};`,
  );

await measureCase('10 of 5,000 lines changed', rows(5_000), changedEvery(5_000, 500));
await measureCase('1,000 of 100,000 lines changed', rows(100_000), changedEvery(100_000, 100));
await measureCase(
  'every line of 100,000 changed',
  rows(100_000),
  textOf(100_000, (index) => `export const other${index} = ${index};`),
);
for (const count of [100_000, 250_000]) {
  await measureCase(
    `${count.toLocaleString('en-US')} alternating lines reordered`,
    textOf(count, (index) => (index % 2 === 0 ? 'a' : 'b')),
    textOf(count, (index) => (index % 3 === 0 ? 'b' : 'a')),
  );
}
await sharedFixDiffWorker.close();
