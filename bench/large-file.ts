/**
 * Measures the analysis of one large added TypeScript file: its total time and the longest event
 * loop delay while it runs, as a run in a process that also serves webhooks and the dashboard
 * would cause. The file repeats a block of ordinary code: an interface, and a function with a
 * template literal, a comment and a cached read. Some blocks add a console.log call, a TODO
 * comment, a hard-coded password or an AWS access key ID, and one block adds a private key and a
 * merge conflict. The 5 MB file has about 1.6 findings per 100 lines.
 *
 * `--line` replaces the file with one added line of the same size, as a minified bundle read
 * without GitHub's patch would add. `minified` repeats a block of minified JavaScript with string
 * literals and a regular expression. `secrets` repeats a hard-coded password, an AWS access key
 * ID and a TODO comment, and `todo` repeats `TODO ` with no comment start before it. Two more
 * are runs that one try of a rule's pattern reads whole: `value` is one quoted password of that
 * size, and `spaces` is `console.log`, then spaces, then `(x)`.
 *
 * Run: npx tsx bench/large-file.ts [--mb 5,20] [--rounds 3] [--line SHAPE]
 * (`--help` explains them). For
 * each size it prints the median time and the longest event loop delay of all rounds, read from
 * `monitorEventLoopDelay` at a resolution of 10 ms. It also prints the number of findings and
 * the start of their sha256 digest, which a change of scheduling alone must leave as it is.
 */
import { createHash } from 'node:crypto';
import { analyzeChangedFilesInTurns, type ChangedFile } from '../src/analysis/analyze.ts';
import { readBenchOptions, wholeNumber } from './arguments.ts';
import { median } from './database.ts';
import { timeWithDelay } from './event-loop-delay.ts';

const lineShapes = ['minified', 'secrets', 'todo', 'value', 'spaces'] as const;
type LineShape = (typeof lineShapes)[number];

const usage =
  'Usage: npx tsx bench/large-file.ts [--mb 5,20] [--rounds N] [--line SHAPE]\n' +
  '  --mb      sizes of the added file, in MB, separated by commas (default 5,20)\n' +
  '  --rounds  timed runs per size; the median time is reported (default 3)\n' +
  '  --line    add one line of that size instead of a file of short lines, with SHAPE\n' +
  '            minified, secrets, todo, value or spaces (default: a file of short lines)';

function readArguments() {
  const values = readBenchOptions(usage, { mb: '5,20', rounds: '3', line: '' });
  if (values.line !== '' && !lineShapes.includes(values.line as LineShape)) {
    console.error(`Invalid --line "${values.line}": expected ${lineShapes.join(', ')}.\n${usage}`);
    process.exit(2);
  }
  return {
    sizes: values.mb.split(',').map((size) => wholeNumber(usage, 'mb', size, 1, 200)),
    rounds: wholeNumber(usage, 'rounds', values.rounds, 1, 100),
    line: values.line === '' ? undefined : (values.line as LineShape),
  };
}

/** Returns the lines of block `index` of the generated file, some with a finding. */
function codeBlock(index: number): string[] {
  const lines = [
    `export interface Row${index} {`,
    '  id: string;',
    '  name: string;',
    '  updatedAt: Date;',
    '}',
    '',
    `/** Reads row ${index} from the store, or undefined when it was deleted. */`,
    `export async function readRow${index}(store: Store, id: string): Promise<Row${index} | undefined> {`,
    `  const key = \`row:\${id}:${index}\`;`,
    '  const value = await store.get(key); // cached for 60 s',
    '  if (value === undefined) {',
    '    return undefined;',
    '  }',
  ];
  if (index % 7 === 3) lines.push(`  console.log('read row ${index}', id);`);
  if (index % 11 === 5) lines.push('  // TODO: read the row and its owner in one query');
  if (index % 53 === 17) lines.push(`  const password = "pw-${index}-h4rdc0ded";`);
  if (index % 97 === 41) {
    lines.push(`  const accessKeyId = 'AKIA${String(index).padStart(16, '7')}';`);
  }
  lines.push("  return { id, name: String(value), updatedAt: new Date(value.at ?? 0) };", '}', '');
  return lines;
}

const privateKeyBlock = [
  'const testKey = `',
  '-----BEGIN RSA PRIVATE KEY-----',
  'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun',
  'VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK',
  '-----END RSA PRIVATE KEY-----',
  '`;',
];

const mergeConflict = [
  '<<<<<<< HEAD',
  'export const retries = 3;',
  '=======',
  'export const retries = 5;',
  '>>>>>>> feature/retries',
];

/** Builds the patch that adds a file of about `bytes` bytes of the code above. */
function largeFilePatch(bytes: number): { patch: string; lines: number } {
  const lines: string[] = [];
  let size = 0;
  for (let index = 0; size < bytes; index += 1) {
    const block = codeBlock(index);
    if (index === 2000) block.push(...privateKeyBlock, ...mergeConflict);
    for (const line of block) {
      lines.push(`+${line}`);
      size += line.length + 1;
    }
  }
  return { patch: [`@@ -0,0 +1,${lines.length} @@`, ...lines].join('\n'), lines: lines.length };
}

/** Returns block `index` of the minified line: code with strings, escapes and a regex. */
function minifiedBlock(index: number): string {
  return (
    `function r${index}(e,t){return e.map(n=>n*t).filter(Boolean)}` +
    `var c${index}={name:"row ${index}",url:"https://example.com/rows/${index}",` +
    `pattern:/[a-z]+\\/\\d+/g,label:'it\\'s "${index}"'};` +
    `if(c${index}.name===\`row \${${index}}\`)throw new Error("bad row: "+c${index}.url);`
  );
}

/** Returns block `index` of the line with secrets, which every rule that reads it flags. */
function secretsBlock(index: number): string {
  const key = `AKIA${String(index).padStart(16, '7')}`;
  return `const password = "pw-${index}-h4rdc0ded"; const k = '${key}'; // TODO: rotate `;
}

/** Builds the patch that adds one line of about `bytes` bytes of `shape`. */
function longLinePatch(bytes: number, shape: LineShape): { patch: string; lines: number } {
  if (shape === 'value') {
    return { patch: `@@ -0,0 +1 @@\n+password = "${'x1Y'.repeat(bytes / 3)}"`, lines: 1 };
  }
  if (shape === 'spaces') {
    return { patch: `@@ -0,0 +1 @@\n+console.log${' '.repeat(bytes)}(x)`, lines: 1 };
  }
  const blocks: string[] = [];
  let size = 0;
  for (let index = 0; size < bytes; index += 1) {
    let block = 'TODO ';
    if (shape === 'minified') block = minifiedBlock(index);
    if (shape === 'secrets') block = secretsBlock(index);
    blocks.push(block);
    size += block.length;
  }
  return { patch: `@@ -0,0 +1 @@\n+${blocks.join('')}`, lines: 1 };
}

const options = readArguments();
for (const megabytes of options.sizes) {
  const bytes = megabytes * 1_000_000;
  const { patch, lines } =
    options.line === undefined ? largeFilePatch(bytes) : longLinePatch(bytes, options.line);
  const filename = options.line === 'todo' ? 'notes.txt' : 'src/rows.ts';
  const files: ChangedFile[] = [{ filename, status: 'added', patch }];
  const times: number[] = [];
  let maxDelay = 0;
  let findings: unknown[] = [];
  for (let round = 0; round < options.rounds; round += 1) {
    const timed = await timeWithDelay(() => analyzeChangedFilesInTurns(files));
    times.push(timed.milliseconds);
    maxDelay = Math.max(maxDelay, timed.maxDelay);
    findings = timed.result.findings;
  }
  // The digest lets runs of two versions of the code compare their findings.
  const digest = createHash('sha256').update(JSON.stringify(findings)).digest('hex');
  console.log(
    `${megabytes} MB (${lines} added lines): ${Math.round(median(times))} ms, ` +
      `longest event loop delay ${Math.round(maxDelay)} ms, ${findings.length} findings ` +
      `(sha256 ${digest.slice(0, 12)})`,
  );
}
