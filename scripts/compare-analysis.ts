/**
 * Compares the analysis of this checkout with the analysis at another commit on generated files
 * of long lines, and prints each input whose findings differ. The lines mix code, comments,
 * secrets, markers and runs of spaces or name characters, and place some of them across the
 * boundaries of the windows that a long line is searched in (`searchWindowChars`). It also
 * compares `maskSecrets`, `buildExcerpt` and `codePart` on each line.
 *
 * Run: npx tsx scripts/compare-analysis.ts --commit REV [--cases 2000] [--seed 1]
 * It exits 1 when any result differs, and 0 when all are the same.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as current from '../src/analysis/analyze.ts';
import * as currentCode from '../src/analysis/code-text.ts';
import * as currentExcerpt from '../src/analysis/excerpt.ts';
import { searchWindowChars } from '../src/analysis/line-search.ts';
import * as currentSecrets from '../src/analysis/secrets.ts';
import { seededRandom } from '../test/helpers/seeded-random.ts';

const usage =
  'Usage: npx tsx scripts/compare-analysis.ts --commit REV [--cases N] [--seed N]\n' +
  '  --commit  git revision whose src/analysis is the reference\n' +
  '  --cases   generated files to compare (default 2000)\n' +
  '  --seed    seed of the generated inputs (default 1)';

const { values } = parseArgs({
  options: {
    commit: { type: 'string' },
    cases: { type: 'string', default: '2000' },
    seed: { type: 'string', default: '1' },
  },
});
const cases = Number(values.cases);
const seed = Number(values.seed);
if (values.commit === undefined) {
  console.error(`Missing --commit: pass the git revision to compare with.\n${usage}`);
  process.exit(2);
}
if (!Number.isInteger(cases) || !Number.isInteger(seed)) {
  console.error(`Invalid --cases or --seed: expected whole numbers.\n${usage}`);
  process.exit(2);
}

// The reference code is read from git into a temporary folder, with the layout of `src`.
const referenceRoot = mkdtempSync(join(tmpdir(), 'fixwright-compare-'));
const archive = execFileSync('git', ['archive', values.commit, 'src/analysis', 'src/text']);
execFileSync('tar', ['-x', '-C', referenceRoot], { input: archive });
const referenceAnalysis = join(referenceRoot, 'src/analysis');
const reference = (await import(join(referenceAnalysis, 'analyze.ts'))) as typeof current;
const referenceCode = (await import(join(referenceAnalysis, 'code-text.ts'))) as typeof currentCode;
const referenceExcerpt = (await import(
  join(referenceAnalysis, 'excerpt.ts')
)) as typeof currentExcerpt;
const referenceSecrets = (await import(
  join(referenceAnalysis, 'secrets.ts')
)) as typeof currentSecrets;

const random = seededRandom(seed);
const below = (count: number): number => Math.floor(random() * count);
const pick = <T>(items: readonly T[]): T => items[below(items.length)]!;

const fillerChars = [
  ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
  ...'      ;:=(){}[]<>.,-_$@\'"`\\#*%/!|',
  '\t',
  '\r',
  '\0',
  'é',
  '😀',
  '\ud800',
  '\u2028',
];

function filler(length: number): string {
  let text = '';
  for (let index = 0; index < length; index += 1) text += pick(fillerChars);
  return text;
}

function keyId(): string {
  const suffix = random() < 0.2 ? 'EXAMPLE' : '';
  let body = '';
  while (body.length < 16 - suffix.length) body += pick([...'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567']);
  return `${pick(['AKIA', 'ASIA', 'AROA', 'AIPA'])}${body}${suffix}`;
}

function secretValue(): string {
  return pick([
    's3cr3t-v4lue-9',
    'Bearer abc.def.ghi',
    'password',
    'Db-Password',
    'TOKEN',
    'Secret_Key',
    '\u212Aey',
    'xxx-placeholder',
    'a\\"b\\\\c123x',
  ]);
}

/** Text that some rule or secret pattern reads, or that almost matches one. */
function fragment(): string {
  const fragments: (() => string)[] = [
    keyId,
    () => `password = "${secretValue()}"`,
    () => `"token": '${secretValue()}'`,
    () => `apiKey: string = \`${secretValue()}\``,
    () => `db.secret_key := r"${secretValue()}"`,
    () => `config['clientSecret'] => "${secretValue()}`,
    () => `API_KEY=${secretValue()}`,
    () => '-----BEGIN RSA PRIVATE KEY-----',
    () => '-----BEGIN OPENSSH PRIVATE KEY-----MIIEow',
    () => '-----END RSA PRIVATE KEY-----',
    () => pick(['console.log(', 'console.debug  (', 'xconsole.trace(', 'console.log']),
    () => pick(['debugger;', 'debugger }', '.debugger;', 'debugger', 'debugger   ']),
    () => pick(['print(', '; print (', ': print(x)', 'print']),
    () => pick(['// ', '/*', '#', '<!--', '--', '{#', ' * ', ';', '%']),
    () => pick(['TODO', 'FIXME:', 'TODO(', 'TODO ', 'TODOS', 'xFIXME ']),
    () => pick(['<<<<<<< ', '>>>>>>> ', '=======']),
    () => pick(['"', "'", '`', '\\', '\\\u2028']),
    () => ' '.repeat(1 + below(3000)),
    () => 'name_'.repeat(1 + below(600)),
    () => `token = "${'v'.repeat(1 + below(40_000))}"`,
  ];
  return pick(fragments)();
}

/** Returns a line of about `length` characters, with fragments across window boundaries. */
function longLine(length: number): string {
  let line = random() < 0.2 ? pick(['TOKEN=', '<<<<<<< ', '  * ', 'print(', '#']) : '';
  while (line.length < length) {
    line += random() < 0.5 ? fragment() : filler(1 + below(200));
  }
  line = line.slice(0, length);
  for (let boundary = searchWindowChars; boundary < line.length; boundary += searchWindowChars) {
    if (random() < 0.7) {
      // Spaces around the fragment, so that a `\b` or a lookbehind next to it can match.
      const inner = fragment().slice(0, 200);
      const text = ` ${inner} `;
      const offset = pick([1, 2, inner.length - 1, inner.length, below(inner.length + 1)]);
      const start = Math.max(0, boundary - offset - 1);
      line = line.slice(0, start) + text + line.slice(start + text.length);
    }
  }
  // Fragments at the very start and end of the line.
  if (random() < 0.3) line = fragment() + line.slice(0, Math.max(0, length - 40));
  if (random() < 0.3) line = line.slice(0, Math.max(0, length - 40)) + fragment();
  return line;
}

function lineLength(): number {
  const window = searchWindowChars;
  return pick([
    window - 1,
    window,
    window + 1,
    window + 1 + below(64),
    2 * window - below(64),
    2 * window + below(64),
    window + below(3 * window),
    1 + below(300),
  ]);
}

const paths = ['src/a.ts', 'lib/b.js', 'tools/c.py', '.env', 'docs/d.md', 'notes.txt', 'e.go'];

function generatedFile(): current.ChangedFile {
  const lines = Array.from({ length: 1 + below(4) }, () => longLine(lineLength()));
  const body = lines.map((line) => `+${line.replaceAll('\n', ' ')}`);
  const patch = [`@@ -0,0 +1,${lines.length} @@`, ...body].join('\n');
  return { filename: pick(paths), status: 'added', patch };
}

/** Returns the result or the error message, so that both can be compared. */
function outcome(run: () => unknown): string {
  try {
    return JSON.stringify(run());
  } catch (error) {
    return `error: ${(error as Error).message}`;
  }
}

let mismatches = 0;
// Findings per rule over all cases, to show that the inputs reach every rule.
const findingsByRule = new Map<string, number>();
function compare(name: string, caseIndex: number, expected: string, actual: string): void {
  if (expected !== actual) {
    mismatches += 1;
    console.log(`case ${caseIndex}: ${name} differs`);
    console.log(`  expected ${expected.slice(0, 300)}`);
    console.log(`  actual   ${actual.slice(0, 300)}`);
  }
}

try {
  for (let caseIndex = 0; caseIndex < cases; caseIndex += 1) {
    const file = generatedFile();
    const expectedFindings = outcome(() => reference.analyzeChangedFiles([file]));
    compare(
      'analyzeChangedFiles',
      caseIndex,
      expectedFindings,
      outcome(() => current.analyzeChangedFiles([file])),
    );
    if (!expectedFindings.startsWith('error')) {
      for (const finding of JSON.parse(expectedFindings) as current.FindingDraft[]) {
        findingsByRule.set(finding.ruleId, (findingsByRule.get(finding.ruleId) ?? 0) + 1);
      }
    }
    if (caseIndex % 10 === 0) {
      const expected = outcome(() => reference.analyzeChangedFiles([file]));
      const turns = await current.analyzeChangedFilesInTurns([file], { sliceMs: 0 });
      compare('analyzeChangedFilesInTurns', caseIndex, expected, JSON.stringify(turns.findings));
    }
    for (const line of file.patch!.split('\n').slice(1)) {
      const text = line.slice(1);
      const path = file.filename;
      const focus = below(text.length + 1);
      compare(
        'maskSecrets',
        caseIndex,
        outcome(() => referenceSecrets.maskSecrets(text, path)),
        outcome(() => currentSecrets.maskSecrets(text, path)),
      );
      compare(
        'buildExcerpt',
        caseIndex,
        outcome(() => referenceExcerpt.buildExcerpt(text, path, focus)),
        outcome(() => currentExcerpt.buildExcerpt(text, path, focus)),
      );
      for (const syntax of ['c-like', 'hash'] as const) {
        compare(
          `codePart ${syntax}`,
          caseIndex,
          outcome(() => referenceCode.codePart(text, syntax)),
          outcome(() => currentCode.codePart(text, syntax)),
        );
      }
    }
    if ((caseIndex + 1) % 500 === 0) console.log(`${caseIndex + 1} cases, ${mismatches} differ`);
  }
} finally {
  rmSync(referenceRoot, { recursive: true, force: true });
}
console.log([...findingsByRule].map(([rule, count]) => `${rule}: ${count}`).join(', '));
console.log(`${cases} cases compared with ${values.commit}, ${mismatches} differ`);
process.exit(mismatches === 0 ? 0 : 1);
