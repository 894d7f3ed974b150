import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  analyzeChangedFiles,
  analyzeChangedFilesInTurns,
  worstSeverity,
  type ChangedFile,
  type FindingDraft,
} from '../../src/analysis/analyze.ts';
import { searchWindowChars } from '../../src/analysis/line-search.ts';
import { maxStepChars, maxStepItems } from '../../src/analysis/steps.ts';

const AWS_KEY = 'AKIAZ7QW3ERT5YUI8OPA';
const BLOCKING_DIGEST = 'daa143264ec3ac8961e17d6b64d81f3ddc2b358008eceacfde6df3dbe3c75c51';
const DATABASE_PASSWORD = 'pg_s3cr3t_pa55';

const serverPatch = [
  '@@ -1,6 +1,7 @@',
  " import { createServer } from 'node:http';",
  "+import { loadConfig } from './config.ts';",
  ' ',
  ' const port = Number(process.env.PORT ?? 3000);',
  "-console.log('starting');",
  "+console.log('starting on', port);",
  ' ',
  ' // debugger;',
  '@@ -40,6 +41,7 @@ export function start() {',
  '   const server = createServer(handler);',
  `+  const s3 = { accessKeyId: '${AWS_KEY}' };`,
  '+  // TODO: close the server on SIGTERM',
  '   server.listen(port);',
  '   debugger;',
  '-  debugger;',
  '   return server;',
  ' }',
].join('\n');

const reportPatch = [
  '@@ -1,4 +1,7 @@',
  ' import json',
  '+from pprint import pprint',
  ' ',
  ' def report(rows):',
  '-    return json.dumps(rows)',
  '+    """Print rows, as console.log(rows) would in JavaScript."""',
  '+    pprint(rows)',
  '+    print(len(rows))',
].join('\n');

// A CRLF file as GitHub shows it: `\r` ends each content line, `\n` separates patch lines.
const envPatch = [
  '@@ -0,0 +1,3 @@\r',
  '+NODE_ENV=production\r',
  `+DATABASE_PASSWORD=${DATABASE_PASSWORD}\r`,
  '+API_KEY=your_api_key_here',
  '\\ No newline at end of file',
].join('\n');

const pullRequestFiles: ChangedFile[] = [
  { filename: 'src/server.ts', status: 'modified', patch: serverPatch },
  {
    filename: 'scripts/report.py',
    status: 'renamed',
    patch: reportPatch,
  },
  {
    filename: 'legacy/debug.js',
    status: 'removed',
    patch: "@@ -1,2 +0,0 @@\n-console.log('a');\n-debugger;",
  },
  { filename: 'assets/logo.png', status: 'added' },
  { filename: 'data/big.json', status: 'modified', patch: null },
  { filename: 'config/.env.production', status: 'added', patch: envPatch },
];

function summary(findings: FindingDraft[]): string[] {
  return findings.map((finding) => `${finding.path}:${finding.startLine} ${finding.ruleId}`);
}

function patchAdding(firstLine: number, texts: string[]): string {
  const header = `@@ -${firstLine},0 +${firstLine},${texts.length} @@`;
  return [header, ...texts.map((text) => `+${text}`)].join('\n');
}

describe('analyzeChangedFiles', () => {
  it('reports added lines only, sorted by path and line', () => {
    expect(summary(analyzeChangedFiles(pullRequestFiles))).toEqual([
      'config/.env.production:2 secret/hardcoded-credential',
      'scripts/report.py:7 debug/python-print',
      'src/server.ts:5 debug/console-log',
      'src/server.ts:42 secret/aws-access-key-id',
      'src/server.ts:43 todo-comment',
    ]);
  });

  it('fills every field of a finding', () => {
    const findings = analyzeChangedFiles(pullRequestFiles);
    const envFinding = findings.find((finding) => finding.path === 'config/.env.production');
    expect(envFinding).toEqual({
      path: 'config/.env.production',
      startLine: 2,
      endLine: 2,
      ruleId: 'secret/hardcoded-credential',
      severity: 'error',
      message: expect.stringMatching(/^A credential is hard-coded/),
      excerpt: 'DATABASE_PASSWORD=pg_********a55',
      fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
  });

  it('never shows a secret whole', () => {
    for (const finding of analyzeChangedFiles(pullRequestFiles)) {
      for (const secret of [AWS_KEY, DATABASE_PASSWORD]) {
        expect(finding.message).not.toContain(secret);
        expect(finding.excerpt).not.toContain(secret);
      }
    }
  });

  it('masks secrets in excerpts of other rules', () => {
    const patch = patchAdding(1, [`console.log('${AWS_KEY}');`]);
    const findings = analyzeChangedFiles([{ filename: 'a.js', status: 'added', patch }]);
    expect(findings.map((finding) => [finding.ruleId, finding.excerpt])).toEqual([
      ['debug/console-log', "console.log('AKIA************8OPA');"],
      ['secret/aws-access-key-id', "console.log('AKIA************8OPA');"],
    ]);
  });

  it('skips removed files and files without a patch', () => {
    const files: ChangedFile[] = [
      { filename: 'old.js', status: 'removed', patch: patchAdding(1, ['debugger;']) },
      { filename: 'image.png', status: 'added' },
      { filename: 'huge.js', status: 'modified', patch: null },
      { filename: 'empty.js', status: 'modified', patch: '' },
    ];
    expect(analyzeChangedFiles(files)).toEqual([]);
  });

  it('reports a renamed file under its new name', () => {
    const files: ChangedFile[] = [
      { filename: 'src/new-name.ts', status: 'renamed', patch: patchAdding(3, ['debugger;']) },
    ];
    expect(summary(analyzeChangedFiles(files))).toEqual(['src/new-name.ts:3 debug/debugger']);
  });

  it('sorts paths by code point', () => {
    const files: ChangedFile[] = ['b.ts', 'B.ts', 'a.ts', 'a/z.ts'].map((filename) => ({
      filename,
      status: 'added',
      patch: patchAdding(1, ['debugger;']),
    }));
    expect(analyzeChangedFiles(files).map((finding) => finding.path)).toEqual([
      'B.ts',
      'a.ts',
      'a/z.ts',
      'b.ts',
    ]);
  });

  it('yields to the event loop between files', async () => {
    const files: ChangedFile[] = ['b.ts', 'a.ts'].map((filename) => ({
      filename,
      status: 'added',
      patch: patchAdding(1, ['debugger;']),
    }));
    const events: string[] = [];
    setImmediate(() => events.push('immediate'));

    const result = await analyzeChangedFilesInTurns(files);
    events.push('analyzed');

    expect(events).toEqual(['immediate', 'analyzed']);
    expect(result.findings).toEqual(analyzeChangedFiles(files));
    expect(result.omittedFindings).toBe(0);
  });

  it('keeps the most severe findings past the limit', async () => {
    const files: ChangedFile[] = [
      { filename: 'a.ts', status: 'added', patch: patchAdding(1, ['// TODO: a', '// TODO: b']) },
      { filename: 'b.ts', status: 'added', patch: patchAdding(1, ['debugger;', '// TODO: c']) },
      { filename: 'c.ts', status: 'added', patch: patchAdding(1, [`const key = "${AWS_KEY}";`]) },
    ];

    const result = await analyzeChangedFilesInTurns(files, { maxFindings: 3 });

    expect(summary(result.findings)).toEqual([
      'a.ts:1 todo-comment',
      'b.ts:1 debug/debugger',
      'c.ts:1 secret/aws-access-key-id',
    ]);
    expect(result.omittedFindings).toBe(2);
  });

  it('analyzes long credential lines in linear time', () => {
    // Each line took 30 to 40 s on 2 CPU cores before, blocking the analyzing process.
    const upperValue = 'QZ'.repeat(100_000);
    const files: ChangedFile[] = [
      { filename: 'upper.ts', status: 'added', patch: `@@ -0,0 +1 @@\n+TOKEN = "${upperValue}"` },
      {
        filename: 'many.json',
        status: 'added',
        patch: `@@ -0,0 +1 @@\n+${'{"token": "tok_1111222233", '.repeat(20_000)}`,
      },
    ];

    const startedAt = performance.now();
    const found = analyzeChangedFiles(files);
    const elapsedMs = performance.now() - startedAt;

    expect(found.map((finding) => [finding.path, finding.ruleId, finding.startLine])).toEqual([
      ['many.json', 'secret/hardcoded-credential', 1],
      ['upper.ts', 'secret/hardcoded-credential', 1],
    ]);
    expect(found[1]!.excerpt).not.toContain(upperValue);
    expect(found[0]!.excerpt).not.toContain('tok_1111222233');
    // Linear work takes about a second; the bound leaves room for slow machines.
    expect(elapsedMs).toBeLessThan(10_000);
  });

  it('returns nothing for a clean patch', () => {
    const patch = patchAdding(1, ['export const answer = 42;']);
    expect(analyzeChangedFiles([{ filename: 'a.ts', status: 'added', patch }])).toEqual([]);
  });
});

describe('finding fingerprints', () => {
  function fingerprintsOf(filename: string, patch: string): string[] {
    return analyzeChangedFiles([{ filename, status: 'modified', patch }]).map(
      (finding) => finding.fingerprint,
    );
  }

  it('stay the same when the line moves', () => {
    const before = fingerprintsOf('src/a.ts', patchAdding(5, ['  console.log(user);']));
    const after = fingerprintsOf('src/a.ts', patchAdding(80, ['    console.log(user);']));
    expect(before).toHaveLength(1);
    expect(after).toEqual(before);
  });

  it('stay the same across runs', () => {
    const first = analyzeChangedFiles(pullRequestFiles).map((finding) => finding.fingerprint);
    const second = analyzeChangedFiles(pullRequestFiles).map((finding) => finding.fingerprint);
    expect(second).toEqual(first);
  });

  it('differ for identical lines in one file', () => {
    const patch = patchAdding(1, ['console.log(user);', 'load();', 'console.log(user);']);
    const fingerprints = fingerprintsOf('src/a.ts', patch);
    expect(fingerprints).toHaveLength(2);
    expect(fingerprints[0]).not.toBe(fingerprints[1]);
  });

  it('differ by path', () => {
    const patch = patchAdding(1, ['console.log(user);']);
    expect(fingerprintsOf('src/a.ts', patch)).not.toEqual(fingerprintsOf('src/b.ts', patch));
  });

  it('hash the line with its secrets masked', () => {
    const line = 'headers: {Authorization: Bearer ghx9f8e7d6c5b4a3z2y1x0w}';
    const [fingerprint] = fingerprintsOf('src/a.ts', patchAdding(1, [line]));
    const expected = createHash('sha256')
      .update(
        [
          'secret/hardcoded-credential',
          'src/a.ts',
          'headers: {Authorization: Bearer ghx9***************1x0w}',
          '0',
        ].join('\0'),
      )
      .digest('hex');
    expect(fingerprint).toBe(expected);
  });

  it('match for secrets that differ only where masked', () => {
    const first = 'DATABASE_URL=postgres://app:p@ss/w:rd9999secret@db/app';
    const second = 'DATABASE_URL=postgres://app:p@ssQ7mZ2kR9vLwcret@db/app';
    expect(fingerprintsOf('src/a.ts', patchAdding(1, [first]))).toEqual(
      fingerprintsOf('src/a.ts', patchAdding(1, [second])),
    );
  });

  it('differ by rule on one line', () => {
    const fingerprints = fingerprintsOf('src/a.ts', patchAdding(1, ['console.log(x); debugger;']));
    expect(fingerprints).toHaveLength(2);
    expect(fingerprints[0]).not.toBe(fingerprints[1]);
  });

  it('differ by line text', () => {
    const first = fingerprintsOf('src/a.ts', patchAdding(1, ['console.log(user);']));
    const second = fingerprintsOf('src/a.ts', patchAdding(1, ['console.log(order);']));
    expect(first).not.toEqual(second);
  });
});

describe('worstSeverity', () => {
  it('ranks error over warning over notice', () => {
    expect(worstSeverity([{ severity: 'notice' }, { severity: 'error' }])).toBe('error');
    expect(worstSeverity([{ severity: 'notice' }, { severity: 'warning' }])).toBe('warning');
    expect(worstSeverity([{ severity: 'notice' }])).toBe('notice');
  });

  it('returns undefined without findings', () => {
    expect(worstSeverity([])).toBeUndefined();
  });

  it('reads analyzer output', () => {
    expect(worstSeverity(analyzeChangedFiles(pullRequestFiles))).toBe('error');
  });
});

describe('analysis in time slices', () => {
  const shortFiller = (index: number) => `export const row${index} = read(${index});`;
  const padding = ` // ${'x'.repeat(1_000)}`;
  const longFiller = (index: number) => `${shortFiller(index)}${padding}`;

  /**
   * Builds a file whose findings start at line `first`: a TODO, a private key block with a TODO
   * inside, a merge conflict, a debugger statement and the same console.log line twice. With
   * `long`, every line but the conflict's `=======` ends in a comment of 1,000 characters.
   */
  function fileWithFindingsAt(first: number, long = false): ChangedFile {
    const filler = long ? longFiller : shortFiller;
    const texts = Array.from({ length: first - 1 }, (_, index) => filler(index));
    const findingLines = [
      '// TODO: first',
      '-----BEGIN RSA PRIVATE KEY-----',
      '// TODO: key material, which only the private key rule reads',
      'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun',
      '-----END RSA PRIVATE KEY-----',
      '<<<<<<< HEAD',
      'const retries = 3;',
      '=======',
      'const retries = 5;',
      '>>>>>>> feature/retries',
      'debugger;',
      'console.log(user);',
    ];
    for (const text of findingLines) {
      texts.push(long && text !== '=======' ? `${text}${padding}` : text);
    }
    for (let index = 0; index < 63; index += 1) texts.push(filler(first + index));
    texts.push(long ? `console.log(user);${padding}` : 'console.log(user);');
    for (let index = 0; index < 10; index += 1) texts.push(filler(first + 100 + index));
    return { filename: `src/first-${first}.ts`, status: 'added', patch: patchAdding(1, texts) };
  }

  function expectedAt(first: number): string[] {
    return [
      `${first}-${first} todo-comment`,
      `${first + 1}-${first + 4} secret/private-key`,
      `${first + 5}-${first + 9} merge-conflict-marker`,
      `${first + 10}-${first + 10} debug/debugger`,
      `${first + 11}-${first + 11} debug/console-log`,
      `${first + 75}-${first + 75} debug/console-log`,
    ];
  }

  function linesOf(findings: FindingDraft[], path: string): string[] {
    return findings
      .filter((finding) => finding.path === path)
      .map((finding) => `${finding.startLine}-${finding.endLine} ${finding.ruleId}`);
  }

  // A loop yields after maxStepItems lines, or earlier after maxStepChars characters. The
  // findings move over one step's worth of start lines. So in every loop each of them is the
  // first line of a step in one file and the last in another, and each multi-line finding
  // crosses a step boundary.
  const cases = [
    { name: 'short lines', long: false, starts: maxStepItems + 1 },
    { name: 'long lines', long: true, starts: Math.ceil(maxStepChars / padding.length) + 1 },
  ];

  for (const { name, long, starts } of cases) {
    it(`finds the same across step boundaries, ${name}`, async () => {
      const firsts = Array.from({ length: starts }, (_, index) => 60 + index);
      const files = firsts.map((first) => fileWithFindingsAt(first, long));

      const blocking = analyzeChangedFiles(files);
      const sliced = await analyzeChangedFilesInTurns(files, { sliceMs: 0 });

      for (const first of firsts) {
        expect(linesOf(sliced.findings, `src/first-${first}.ts`)).toEqual(expectedAt(first));
      }
      expect(sliced.findings).toEqual(blocking);
      expect(sliced.omittedFindings).toBe(0);
    });
  }

  it('matches the findings of the blocking analysis', async () => {
    const files = [60, 63, 64, 65, 127, 128].map((first) => fileWithFindingsAt(first));

    const { findings } = await analyzeChangedFilesInTurns(files, { sliceMs: 0 });

    const file = findings.filter((finding) => finding.path === 'src/first-64.ts');
    expect(file.map((finding) => finding.excerpt)).toEqual([
      '// TODO: first',
      '-----BEGIN RSA PRIVATE KEY-----',
      '<<<<<<< HEAD',
      'debugger;',
      'console.log(user);',
      'console.log(user);',
    ]);
    expect(file[4]!.fingerprint).not.toBe(file[5]!.fingerprint);
    // The sha256 of these findings as JSON from the analysis before it ran in steps, which ran
    // each file in one piece.
    const digest = createHash('sha256').update(JSON.stringify(findings)).digest('hex');
    expect(digest).toBe(BLOCKING_DIGEST);
  });

  it('returns to the event loop inside a file', async () => {
    const lines = Array.from({ length: 2_000 }, (_, index) => shortFiller(index));
    const files: ChangedFile[] = [
      { filename: 'src/rows.ts', status: 'added', patch: patchAdding(1, lines) },
    ];
    let turns = 0;
    let analyzing = true;
    const countTurn = (): void => {
      turns += 1;
      if (analyzing) setImmediate(countTurn);
    };
    setImmediate(countTurn);

    await analyzeChangedFilesInTurns(files, { sliceMs: 0 });
    analyzing = false;

    // Each of the file's loops over its 2,000 lines yields after every maxStepItems lines.
    expect(turns).toBeGreaterThanOrEqual(2_000 / maxStepItems);
  });

  it('cuts to the most severe inside a file', async () => {
    const texts = [
      ...Array.from({ length: 30 }, (_, index) => `// TODO: step ${index}`),
      'debugger;',
      ...Array.from({ length: 30 }, (_, index) => `// FIXME: step ${index}`),
      `const key = "${AWS_KEY}";`,
    ];
    const files: ChangedFile[] = [
      { filename: 'a.ts', status: 'added', patch: patchAdding(1, texts) },
      { filename: 'b.ts', status: 'added', patch: patchAdding(1, ['// TODO: b']) },
    ];

    const result = await analyzeChangedFilesInTurns(files, { maxFindings: 4, sliceMs: 0 });

    expect(summary(result.findings)).toEqual([
      'a.ts:1 todo-comment',
      'a.ts:2 todo-comment',
      'a.ts:31 debug/debugger',
      'a.ts:62 secret/aws-access-key-id',
    ]);
    expect(result.omittedFindings).toBe(59);
  });

  it('runs the checkpoint before each file', async () => {
    const files: ChangedFile[] = ['a.ts', 'b.ts', 'c.ts'].map((filename) => ({
      filename,
      status: 'added',
      patch: patchAdding(1, ['debugger;']),
    }));
    let checkpoints = 0;

    const result = await analyzeChangedFilesInTurns(files, {
      sliceMs: 60_000,
      checkpoint: async () => {
        checkpoints += 1;
      },
    });

    // The 60 s slice leaves only the return before each file.
    expect(checkpoints).toBe(files.length);
    expect(summary(result.findings)).toEqual([
      'a.ts:1 debug/debugger',
      'b.ts:1 debug/debugger',
      'c.ts:1 debug/debugger',
    ]);
  });

  it('stops inside a file at a checkpoint', async () => {
    const lines = Array.from({ length: 2_000 }, (_, index) => shortFiller(index));
    const files: ChangedFile[] = [
      { filename: 'src/rows.ts', status: 'added', patch: patchAdding(1, lines) },
      { filename: 'src/later.ts', status: 'added', patch: patchAdding(1, ['debugger;']) },
    ];
    const stop = new Error('run cancelled');
    let checkpoints = 0;

    const analysis = analyzeChangedFilesInTurns(files, {
      sliceMs: 0,
      checkpoint: async () => {
        checkpoints += 1;
        // The first checkpoint comes before the first file, the third inside it.
        if (checkpoints === 3) throw stop;
      },
    });

    await expect(analysis).rejects.toBe(stop);
    expect(checkpoints).toBe(3);
  });
});

describe('analysis of long lines', () => {
  // The sha256 of the findings as JSON from the analysis at commit 9760f4e, which checked each
  // line in one piece.
  const LONG_LINE_DIGEST = '0c8363c80b36b107af235ffed6897836e058a16f6a9bee0102cf1b7a64de627e';

  /** Returns `length` characters of code with no finding, with each text written at its start. */
  function lineWith(length: number, placements: [number, string][]): string {
    let line = 'ab = cd(1); '.repeat(Math.ceil(length / 12)).slice(0, length);
    for (const [start, text] of placements) {
      line = line.slice(0, start) + text + line.slice(start + text.length);
    }
    return line.slice(0, length);
  }

  function longLineFiles(window: number): ChangedFile[] {
    const patchOf = (texts: string[]) =>
      [`@@ -0,0 +1,${texts.length} @@`, ...texts.map((text) => `+${text}`)].join('\n');
    const fragments = [
      ` ${AWS_KEY} `,
      '-----BEGIN RSA PRIVATE KEY-----',
      ' console.log(x) ',
      ' debugger; ',
      ' // TODO: split ',
      ' password = "s3cr3t-value" ',
    ];
    // Each fragment across the first window boundary, at the start and the end of a line, and in
    // lines just under, at and over the window length.
    const edges: string[] = [];
    for (const fragment of fragments) {
      for (const offset of [1, Math.floor(fragment.length / 2), fragment.length - 1]) {
        edges.push(lineWith(2 * window + 10, [[window - offset, fragment]]));
      }
      edges.push(lineWith(window + 5, [[0, fragment.trimStart()]]));
      edges.push(lineWith(window + 5, [[window + 5 - fragment.length, fragment]]));
      for (const length of [window - 1, window, window + 1]) {
        edges.push(lineWith(length, [[length - fragment.length, fragment]]));
      }
    }

    const secrets = `const password = "pw-1-h4rdc0ded"; const k = '${AWS_KEY}'; // TODO: rotate `;
    const many = secrets.repeat(Math.ceil((3 * window) / secrets.length));

    const overlapping = [
      lineWith(window + 100, [[window - 10, ` AKIA${AWS_KEY} ${AWS_KEY} `]]),
      lineWith(window + 100, [[window - 6, ' console.console.log (x) ']]),
      lineWith(window + 100, [[window - 3, '// TODOTODO FIXME: now']]),
      lineWith(window + 100, [[window - 4, ' -----BEGIN -----BEGIN EC PRIVATE KEY-----x']]),
    ];

    const longRuns = [
      `token = "${'v'.repeat(3 * window)}"`,
      `console.log${' '.repeat(2 * window)}(x)`,
      `<<<<<<< ${'x'.repeat(2 * window)}`,
      `${' '.repeat(2 * window)}* TODO: in a block comment`,
      `secret = "${'Ab1-'.repeat(window)}"`,
      `apiKey: '${'Ab1-'.repeat(window)}`,
    ];

    const python = [
      lineWith(2 * window, [[window - 3, '; print(x)']]),
      `print(x)${lineWith(2 * window, [])}`,
      lineWith(2 * window, [[window - 1, ': print  (x) # TODO: drop']]),
    ];

    return [
      { filename: 'src/edges.ts', status: 'added', patch: patchOf(edges) },
      { filename: 'src/many.ts', status: 'added', patch: patchOf([many]) },
      { filename: 'src/overlapping.ts', status: 'added', patch: patchOf(overlapping) },
      { filename: 'src/runs.js', status: 'added', patch: patchOf(longRuns) },
      { filename: 'tools/report.py', status: 'added', patch: patchOf(python) },
      {
        filename: 'config/.env',
        status: 'added',
        patch: patchOf([`TOKEN=${'k3y'.repeat(window)}`, `API_KEY=${lineWith(window + 3, [])}`]),
      },
    ];
  }

  it('finds what whole-line checks found', () => {
    const findings = analyzeChangedFiles(longLineFiles(searchWindowChars));

    const digest = createHash('sha256').update(JSON.stringify(findings)).digest('hex');
    expect(digest).toBe(LONG_LINE_DIGEST);
    expect(findings).toHaveLength(64);
    const rulesByPath = new Map<string, string[]>();
    for (const finding of findings) {
      const rules = rulesByPath.get(finding.path) ?? [];
      rules.push(`${finding.startLine} ${finding.ruleId}`);
      rulesByPath.set(finding.path, rules);
    }
    expect(rulesByPath.get('src/edges.ts')).toHaveLength(48);
    expect(rulesByPath.get('src/many.ts')).toEqual([
      '1 secret/aws-access-key-id',
      '1 secret/hardcoded-credential',
      '1 todo-comment',
    ]);
    expect(rulesByPath.get('src/overlapping.ts')).toEqual([
      '1 secret/aws-access-key-id',
      '2 debug/console-log',
      '3 todo-comment',
      '4 secret/private-key',
    ]);
    expect(rulesByPath.get('src/runs.js')).toEqual([
      '2 debug/console-log',
      '3 merge-conflict-marker',
      '4 todo-comment',
      '5 secret/hardcoded-credential',
    ]);
    expect(rulesByPath.get('tools/report.py')).toEqual([
      '1 debug/python-print',
      '2 debug/python-print',
      '3 debug/python-print',
      '3 todo-comment',
    ]);
    expect(rulesByPath.get('config/.env')).toEqual(['1 secret/hardcoded-credential']);
  });

  it('masks secrets in excerpts', () => {
    const findings = analyzeChangedFiles(longLineFiles(searchWindowChars));
    const many = findings.filter((finding) => finding.path === 'src/many.ts');

    for (const finding of many) {
      expect(finding.excerpt).not.toContain(AWS_KEY);
      expect(finding.excerpt).not.toContain('pw-1-h4rdc0ded');
    }
    expect(many[0]!.excerpt).toContain('AKIA************8OPA');
  });

  it('finds the same in time slices', async () => {
    const files = longLineFiles(searchWindowChars);

    const sliced = await analyzeChangedFilesInTurns(files, { sliceMs: 0 });

    expect(sliced.findings).toEqual(analyzeChangedFiles(files));
  });

  it('returns to the event loop inside a line', async () => {
    const line = `${'x = "a"; '.repeat(10 * searchWindowChars)}// TODO: one`;
    const files: ChangedFile[] = [
      { filename: 'src/bundle.js', status: 'added', patch: patchAdding(1, [line]) },
    ];
    let turns = 0;
    let analyzing = true;
    const countTurn = (): void => {
      turns += 1;
      if (analyzing) setImmediate(countTurn);
    };
    setImmediate(countTurn);

    const { findings } = await analyzeChangedFilesInTurns(files, { sliceMs: 0 });
    analyzing = false;

    expect(summary(findings)).toEqual(['src/bundle.js:1 todo-comment']);
    // The line spans 90 windows, and each rule that reads it yields after each window.
    expect(turns).toBeGreaterThanOrEqual(90);
  });
});
