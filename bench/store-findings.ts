/**
 * Measures how long storing a run's findings blocks the event loop: the delete and the chunked
 * INSERT statements that `analyzeRun` runs in one transaction, for several rows per statement.
 * Each finding has a 200-character excerpt and a sha256 fingerprint, as the analysis makes them.
 *
 * Run: npx tsx bench/store-findings.ts [--findings 10000] [--rows 1000,250,100] [--rounds 4]
 * (`--help` explains them). It starts an embedded PostgreSQL (see bench/database.ts) and prints,
 * for each row count, the median time and the longest event loop delay of the rounds after the
 * first, from `monitorEventLoopDelay` at a resolution of 10 ms. The first round of each row
 * count warms up the code and is left out.
 */
import { createHash } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { connectDatabase } from '../src/db/client.ts';
import { findings, installations, prRuns } from '../src/db/schema/index.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { median, startBenchDatabase } from './database.ts';
import { timeWithDelay } from './event-loop-delay.ts';

const usage =
  'Usage: npx tsx bench/store-findings.ts [--findings N] [--rows N,N] [--rounds N]\n' +
  '  --findings  findings stored in each round (default 10000)\n' +
  '  --rows      rows per INSERT statement, separated by commas (default 1000,250,100)\n' +
  '  --rounds    timed rounds per row count, after one warm-up round (default 4)';

function readArguments() {
  const values = readBenchOptions(usage, { findings: '10000', rows: '1000,250,100', rounds: '4' });
  return {
    findings: wholeNumber(usage, 'findings', values.findings, 1, 100_000),
    rows: values.rows.split(',').map((rows) => wholeNumber(usage, 'rows', rows, 1, 5_957)),
    rounds: wholeNumber(usage, 'rounds', values.rounds, 1, 100),
  };
}

const options = readArguments();
const database = await startBenchDatabase();
const { db, close } = connectDatabase(database.url);
try {
  await db
    .insert(installations)
    .values({ id: 1, accountLogin: 'bench', accountId: 1, accountType: 'Organization' });
  const [run] = await db
    .insert(prRuns)
    .values({
      installationId: 1,
      repositoryId: 1,
      repository: 'bench/repo',
      prNumber: 1,
      headRef: 'feature',
      headRepository: 'bench/repo',
      headSha: 'a'.repeat(40),
      baseSha: 'b'.repeat(40),
      status: 'analyzing',
    })
    .returning();
  const runId = run!.id;
  const drafts = Array.from({ length: options.findings }, (_, index) => ({
    runId,
    path: `src/dir${index % 50}/file${index % 700}.ts`,
    startLine: index + 1,
    endLine: index + 1,
    ruleId: 'todo-comment',
    severity: 'notice' as const,
    message: 'A new TODO comment marks unfinished work, so finish the work or track it in an issue.',
    excerpt: `// TODO: ${'x'.repeat(180)} ${index}`,
    fingerprint: createHash('sha256').update(String(index)).digest('hex'),
    source: 'builtin' as const,
    fileBytes: null,
  }));

  for (const rows of options.rows) {
    const times: number[] = [];
    let maxDelay = 0;
    for (let round = 0; round <= options.rounds; round += 1) {
      const timed = await timeWithDelay(() =>
        db.transaction(async (tx) => {
          await tx.delete(findings).where(eq(findings.runId, runId));
          for (let start = 0; start < drafts.length; start += rows) {
            await tx
              .insert(findings)
              .values(drafts.slice(start, start + rows))
              .onConflictDoNothing();
          }
        }),
      );
      if (round === 0) continue;
      times.push(timed.milliseconds);
      maxDelay = Math.max(maxDelay, timed.maxDelay);
    }
    console.log(
      `${options.findings} findings, ${rows} rows a statement: ${Math.round(median(times))} ms, ` +
        `longest event loop delay ${Math.round(maxDelay)} ms`,
    );
  }
} finally {
  await close();
  await database.stop();
}
