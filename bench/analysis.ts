/**
 * Measures the built-in rules on large pull request files, in this process and without a
 * database. The cases are one long added line of many `TODO` words with no comment before
 * them, one added file of many short lines, and many added files, analyzed at once and then
 * file by file in turns. A last case of 1,000 files of 300 lines, with two findings on each
 * line, measures the heap that the kept findings take.
 *
 * Run: node --expose-gc --import tsx bench/analysis.ts [--line-kb 200] [--lines 100000]
 * [--files 3000] [--rounds 3] (`--help` explains them). Without --expose-gc the heap growth of the
 * last case includes garbage. It prints the median time of the rounds and the heap in use after
 * each case, and for the many files the longest event loop delay. Last, it times the local diff
 * that rebuilds the patch of a modified file, with the longest event loop delay while the diff
 * thread runs it. Its four cases are 25,000 lines appended, every third of 30,000 lines
 * changed, every tenth of 100,000 lines changed, and 20,000 lines of five repeated lines in
 * another order. The last case takes Myers' algorithm time about quadratic in its length, so it
 * stops at `defaultDiffLimits`.
 */
import {
  analyzeChangedFiles,
  analyzeChangedFilesInTurns,
  type ChangedFile,
} from '../src/analysis/analyze.ts';
import { additionsPatch } from '../src/analysis/local-patch.ts';
import { defaultDiffLimits } from '../src/runs/missing-patches.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { median } from './database.ts';
import { timeWithDelay } from './event-loop-delay.ts';

const usage =
  'Usage: npx tsx bench/analysis.ts [--line-kb N] [--lines N] [--files N] [--rounds N]\n' +
  '  --line-kb  length of the long added line, in KB (default 200)\n' +
  '  --lines    added lines of the large file (default 100000)\n' +
  '  --files    added files of 200 lines each (default 3000)\n' +
  '  --rounds   timed runs per case; the median is reported (default 3)';

function readArguments() {
  const values = readBenchOptions(usage, {
    'line-kb': '200',
    lines: '100000',
    files: '3000',
    rounds: '3',
  });
  return {
    lineKb: wholeNumber(usage, 'line-kb', values['line-kb'], 1, 100_000),
    lines: wholeNumber(usage, 'lines', values.lines, 1, 10_000_000),
    files: wholeNumber(usage, 'files', values.files, 1, 100_000),
    rounds: wholeNumber(usage, 'rounds', values.rounds, 1, 100),
  };
}

function addedFile(filename: string, lines: readonly string[]): ChangedFile {
  const header = `@@ -0,0 +1,${lines.length} @@`;
  const body = lines.map((line) => `+${line}`);
  return { filename, status: 'added', patch: [header, ...body].join('\n') };
}

function measure(name: string, files: readonly ChangedFile[], rounds: number): void {
  const times: number[] = [];
  let findings = 0;
  for (let round = 0; round < rounds; round += 1) {
    const start = performance.now();
    findings = analyzeChangedFiles(files).length;
    times.push(performance.now() - start);
  }
  const heapMb = Math.round(process.memoryUsage().heapUsed / 1e6);
  const milliseconds = Math.round(median(times));
  console.log(`${name}: ${milliseconds} ms, ${findings} findings, heap ${heapMb} MB`);
}

const options = readArguments();
const todoLine = 'TODO '.repeat(Math.ceil((options.lineKb * 1000) / 5));
const todoFile = addedFile('notes.txt', [todoLine]);
measure(`one line of ${options.lineKb} KB of TODO words`, [todoFile], options.rounds);

const lines = Array.from(
  { length: options.lines },
  (_, index) => `const value${index} = read(${index});`,
);
const largeFile = addedFile('src/large.ts', lines);
measure(`one file of ${options.lines} added lines`, [largeFile], options.rounds);

/** Times one analysis of `files` and prints the longest event loop delay during it. */
async function measureDelay(
  name: string,
  files: readonly ChangedFile[],
  analyze: (files: readonly ChangedFile[]) => unknown,
): Promise<void> {
  const { milliseconds, maxDelay } = await timeWithDelay(() => analyze(files));
  console.log(
    `${name}: ${Math.round(milliseconds)} ms, longest event loop delay ${Math.round(maxDelay)} ms`,
  );
}

const manyFiles = Array.from({ length: options.files }, (_, fileIndex) =>
  addedFile(
    `src/module${fileIndex}.ts`,
    Array.from({ length: 200 }, (_, index) => `export const value${index} = read(${index});`),
  ),
);
await measureDelay(`${options.files} files at once`, manyFiles, analyzeChangedFiles);
await measureDelay(`${options.files} files in turns`, manyFiles, analyzeChangedFilesInTurns);

const flaggedFiles = Array.from({ length: 1000 }, (_, fileIndex) =>
  addedFile(
    `src/flagged${fileIndex}.ts`,
    Array.from(
      { length: 300 },
      (_, index) => `console.log(${index}); const token = "t0k3n${index}x";`,
    ),
  ),
);
// With --expose-gc, collecting before and after makes the growth the heap the kept findings use.
const collectGarbage = (globalThis as { gc?: () => void }).gc ?? (() => {});
collectGarbage();
const heapBefore = process.memoryUsage().heapUsed;
const flaggedStart = performance.now();
const flagged = await analyzeChangedFilesInTurns(flaggedFiles);
const flaggedMilliseconds = Math.round(performance.now() - flaggedStart);
collectGarbage();
const heapGrowthMb = Math.round((process.memoryUsage().heapUsed - heapBefore) / 1e6);
console.log(
  `1000 files of 300 flagged lines: ${flaggedMilliseconds} ms, ${flagged.findings.length} ` +
    `findings kept, ${flagged.omittedFindings} left out, heap growth ${heapGrowthMb} MB`,
);

function textOf(count: number, line: (index: number) => string): string {
  return `${Array.from({ length: count }, (_, index) => line(index)).join('\n')}\n`;
}

/**
 * Times `additionsPatch` with the run's default limits, and prints the median time and the
 * longest event loop delay of all rounds. The diff runs in the shared diff thread.
 */
async function measureDiff(
  name: string,
  oldText: string,
  newText: string,
  rounds: number,
): Promise<void> {
  const times: number[] = [];
  let maxDelay = 0;
  let outcome = '';
  for (let round = 0; round < rounds; round += 1) {
    const timed = await timeWithDelay(() => additionsPatch(oldText, newText, defaultDiffLimits));
    times.push(timed.milliseconds);
    maxDelay = Math.max(maxDelay, timed.maxDelay);
    outcome = timed.result === null ? 'gave up' : `${timed.result.additions} added lines`;
  }
  console.log(
    `local diff, ${name}: ${Math.round(median(times))} ms, ${outcome}, ` +
      `longest event loop delay ${Math.round(maxDelay)} ms`,
  );
}

const rows = (count: number) => textOf(count, (index) => `export const row${index} = ${index};`);
await measureDiff(
  '25,000 lines appended',
  'export {};\n',
  `export {};\n${rows(25_000)}`,
  options.rounds,
);
await measureDiff(
  'every third of 30,000 lines changed',
  rows(30_000),
  textOf(30_000, (index) =>
    index % 3 === 0 ? `export const changed${index} = 0;` : `export const row${index} = ${index};`,
  ),
  options.rounds,
);
await measureDiff(
  'every tenth of 100,000 lines changed',
  rows(100_000),
  textOf(100_000, (index) =>
    index % 10 === 0 ? `export const changed${index} = 0;` : `export const row${index} = ${index};`,
  ),
  options.rounds,
);
// Five distinct lines, so every line is shared and the diff cannot leave any out.
const repeated = ['}', '', '  return value;', '{', '  const value = 1;'];
await measureDiff(
  '20,000 repeated lines reordered',
  textOf(20_000, (index) => repeated[(index * 7) % 5]!),
  textOf(20_000, (index) => repeated[(index * 11) % 5]!),
  options.rounds,
);
