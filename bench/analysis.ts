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
 * each case, and for the many files the longest event loop delay.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  analyzeChangedFiles,
  analyzeChangedFilesInTurns,
  type ChangedFile,
} from '../src/analysis/analyze.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { median } from './database.ts';

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
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  // The histogram's timer needs a first sample before the analysis, or it misses the delay.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const start = performance.now();
  await analyze(files);
  const milliseconds = Math.round(performance.now() - start);
  // Let the histogram's timer see the end of the last delay.
  await new Promise((resolve) => setTimeout(resolve, 20));
  histogram.disable();
  const maxDelay = Math.round(histogram.max / 1e6);
  console.log(`${name}: ${milliseconds} ms, longest event loop delay ${maxDelay} ms`);
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
