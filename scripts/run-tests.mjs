#!/usr/bin/env node
// Runs vitest and prints "N passed, N failed" as the very last line, which CI reads, because
// vitest's own summary line is not one it recognises. Exits non-zero on any failure.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

const browser = process.argv.includes('--browser');
const passThrough = process.argv.slice(2).filter((argument) => argument !== '--browser');
const report = browser ? '.vitest-browser.json' : '.vitest.json';
rmSync(report, { force: true });

const args = [
  'vitest',
  'run',
  ...(browser ? ['--config', 'vitest.browser.config.ts'] : []),
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${report}`,
  ...passThrough,
];
const result = spawnSync('npx', args, {
  stdio: 'inherit',
  env: { NO_COLOR: '1', ...process.env },
});

let passed = 0;
let failed = 0;
let skipped = 0;
/** "file > test name" of each skipped or todo test, with the reason a test gave in its meta. */
const skippedNames = [];
if (existsSync(report)) {
  const summary = JSON.parse(readFileSync(report, 'utf8'));
  passed = summary.numPassedTests;
  skipped = (summary.numPendingTests ?? 0) + (summary.numTodoTests ?? 0);
  for (const file of summary.testResults ?? []) {
    for (const test of file.assertionResults ?? []) {
      if (test.status !== 'pending' && test.status !== 'todo' && test.status !== 'skipped') continue;
      const reason = test.meta?.skipReason ? ` (${test.meta.skipReason})` : '';
      skippedNames.push(`${path.relative(process.cwd(), file.name)} > ${test.fullName}${reason}`);
    }
  }
  failed = summary.numFailedTests + (summary.numRuntimeErrorTestSuites ?? 0);
  // A run whose global setup throws (no database, say) reports no failed test, only success: false.
  if (summary.success === false && failed === 0) failed = 1;
} else {
  failed = 1;
}
const status = result.status ?? 1;
if (status !== 0 && failed === 0) failed = 1;
// Skipped tests get a line of their own, so the closing line keeps the form CI reads.
for (const name of skippedNames) console.log(`skipped: ${name}`);
if (skipped > 0) console.log(`${skipped} skipped`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(status !== 0 || failed > 0 ? 1 : 0);
