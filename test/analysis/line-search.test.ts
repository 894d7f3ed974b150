import { describe, expect, it } from 'vitest';
import {
  COMMENT_BEFORE_MARKER,
  CONSOLE_CALL,
  DEBUGGER_STATEMENT,
  PRINT_STATEMENT,
  TODO_MARKER,
} from '../../src/analysis/code-rules.ts';
import {
  findSteps,
  matchAllSteps,
  mayMatch,
  searchWindowChars,
  type SteppedPattern,
} from '../../src/analysis/line-search.ts';
import {
  findQuotedAssignmentSteps,
  QUOTED_ASSIGNMENT_HEAD,
} from '../../src/analysis/assignment-search.ts';
import {
  AWS_ACCESS_KEY_ID_SEARCH,
  BEARER_TOKEN_SEARCH,
  CONNECTION_URL_USERINFO_SEARCH,
  PRIVATE_KEY_BEGIN_SEARCH,
  QUERY_CREDENTIAL_SEARCH,
} from '../../src/analysis/secrets.ts';
import { runSteps, StepMeter } from '../../src/analysis/steps.ts';
import {
  GITHUB_TOKEN_SEARCH,
  JWT_SEARCH,
  SLACK_TOKEN_SEARCH,
  SLACK_WEBHOOK_SEARCH,
  STRIPE_SECRET_KEY_SEARCH,
} from '../../src/analysis/token-secrets.ts';
import { seededRandom } from '../helpers/seeded-random.ts';

const quotedAssignmentPieces = [
  ...['token', 'a.b', '"', "'", '`', ' ', '=', ':', ']', '\\', 'r', 'x | y', '==', 'v'],
  ...[': string', '\u2028', '\\"', '=>', ':=', 'b'],
];

// Each pattern with pieces of text that make up its matches, near misses and their surroundings.
const patterns: { name: string; pattern: SteppedPattern; pieces: string[] }[] = [
  {
    name: 'AWS access key ID',
    pattern: AWS_ACCESS_KEY_ID_SEARCH,
    pieces: ['AKIA', 'ASIA', 'A', 'K', 'Q7', 'EXAMPLE', ' ', '_', '-', 'AKIAQ7Q7Q7Q7Q7Q7Q7Q7'],
  },
  {
    name: 'private key BEGIN marker',
    pattern: PRIVATE_KEY_BEGIN_SEARCH,
    pieces: ['-----BEGIN ', 'RSA ', 'ENCRYPTED ', 'PRIVATE KEY', ' BLOCK', '-----', '-', ' '],
  },
  {
    name: 'GitHub token',
    pattern: GITHUB_TOKEN_SEARCH,
    pieces: [
      ...['ghp_', 'github_pat_', 'Ab3dEf7hIjKl', '9mNo2pQr4sTu', '_', ' ', 'g', 'x'],
      ' ghp_Ab3dEf7hIjKl9mNo2pQr4sTuAb3dEf7hIjKl',
    ],
  },
  {
    name: 'Stripe secret key',
    pattern: STRIPE_SECRET_KEY_SEARCH,
    pieces: [
      ...['sk_live_', 'rk_live_', 'Ab3dEf7hIjKl', '9mNo2pQr', '_', ' ', 's', 'k_live_'],
      ' sk_live_Ab3dEf7hIjKl9mNo2pQr4sTu',
    ],
  },
  {
    name: 'Slack token',
    pattern: SLACK_TOKEN_SEARCH,
    pieces: ['xoxb-', 'xoxp-', '12345', '-', 'Ab3dEf', 'x', ' ', 'xox', '.', 'xoxb-1-Ab3dEf7hIj'],
  },
  {
    name: 'Slack webhook path',
    pattern: SLACK_WEBHOOK_SEARCH,
    pieces: [
      ...['hooks.slack.com/services/', 'hooks.slack.com/triggers/', 'T', 'T03KQ8ZP2', '/'],
      ...['B05FGHJ2K9L', 'q8Wm3Zr7TxLv2NcY', 'x', ' '],
      'hooks.slack.com/services/T03KQ8ZP2/B05FGHJ2K9L/q8Wm3Zr7TxLv2NcY',
    ],
  },
  {
    name: 'JWT',
    pattern: JWT_SEARCH,
    pieces: [
      ...['eyJ', 'hbGciOiJIUz', '.', 'eyJzdWIiOiJ1c2Vy', 'CHqLlPINoVurEFXK', '-', ' ', 'J'],
      ' eyJhbGciOiJIUz.eyJzdWIiOiJ1c2Vy.CHqLlPINoVurEFXK',
    ],
  },
  {
    name: 'connection URL user information',
    pattern: CONNECTION_URL_USERINFO_SEARCH,
    pieces: [
      ...['://', 'postgres', 'app', ':', 'Xk29dLq8', '@', 'db', '/', ' ', '"', '#'],
      ' redis://app:Xk29dLq8@db',
      ...['?', '12', 'pa/ss?w#rd', ' postgres://u:pa/ss?w#rd@db'],
    ],
  },
  {
    name: 'bearer token',
    pattern: BEARER_TOKEN_SEARCH,
    pieces: [
      ...['Bearer', 'bearer', ' ', '\t', '"', "'", 'Authorization', ':', '=', 'a8Fk29dL', '=='],
      ...['$', '{', '\\', ',', 'x', ' "Bearer a8Fk29dLq83mZpQ7"'],
    ],
  },
  {
    name: 'query credential',
    pattern: QUERY_CREDENTIAL_SEARCH,
    pieces: [
      ...['?', '&', ';', 'password', 'Pwd', 'access_token', 'api', 'key', '_', '=', 'hunter2'],
      ...['#', ' ', '"', '\\', 'x', ' https://h/x?user=a&password=hunter2'],
    ],
  },
  {
    name: 'quoted assignment head',
    pattern: QUOTED_ASSIGNMENT_HEAD,
    pieces: quotedAssignmentPieces,
  },
  {
    name: 'console call',
    pattern: CONSOLE_CALL,
    pieces: ['console.', 'log', 'debug', 'trace', '(', ' ', '$', 'x', '.', ' console.log('],
  },
  {
    name: 'debugger statement',
    pattern: DEBUGGER_STATEMENT,
    pieces: ['debugger', ';', '}', ' ', '.', 'x', 'debug'],
  },
  {
    name: 'print statement',
    pattern: PRINT_STATEMENT,
    pieces: ['print', '(', ';', ':', ' ', 'x', '\t'],
  },
  {
    name: 'TODO marker',
    pattern: TODO_MARKER,
    pieces: ['TODO', 'FIXME', ':', '(', ' ', 'x', 'TO', 'DO'],
  },
  {
    name: 'comment start',
    pattern: COMMENT_BEFORE_MARKER,
    pieces: ['/', '*', '#', '<!--', '-', '{', ' ', ';', '%', 'x'],
  },
];

function randomText(random: () => number, pieces: readonly string[]): string {
  const count = Math.floor(random() * 30);
  let text = '';
  for (let index = 0; index < count; index += 1) {
    text += pieces[Math.floor(random() * pieces.length)];
  }
  return text;
}

function describeMatch(match: RegExpExecArray | null): unknown {
  return match === null ? null : { index: match.index, groups: [...match] };
}

describe('findSteps', () => {
  for (const { name, pattern, pieces } of patterns) {
    it(`finds what exec finds, ${name}`, () => {
      const random = seededRandom(name.length);
      let matches = 0;
      for (let round = 0; round < 1_500; round += 1) {
        const text = randomText(random, pieces);
        const windowChars = 1 + Math.floor(random() * 8);
        const from = Math.floor(random() * (text.length + 1));
        // matchAll starts at the lastIndex of the pattern, which the exec below leaves set.
        pattern.search.lastIndex = 0;
        const expectedAll = [...text.matchAll(pattern.search)].map(describeMatch);
        pattern.search.lastIndex = from;
        const expectedFirst = describeMatch(pattern.search.exec(text));

        const all = runSteps(matchAllSteps(text, pattern, undefined, windowChars));
        const first = runSteps(findSteps(text, pattern, from, undefined, windowChars));

        expect(all.map(describeMatch), text).toEqual(expectedAll);
        expect(describeMatch(first), text).toEqual(expectedFirst);
        matches += expectedAll.length;
      }
      // The pieces must make matches, or the comparison shows nothing.
      expect(matches).toBeGreaterThan(100);
    });
  }

  it('finds a match across a window boundary', () => {
    const key = 'AKIAQ7Q7Q7Q7Q7Q7Q7Q7';
    for (let start = searchWindowChars - key.length; start <= searchWindowChars; start += 1) {
      const before = 'x '.repeat(searchWindowChars).slice(0, start - 1);
      const long = `${before} ${key} ${'x '.repeat(searchWindowChars)}`;

      const match = runSteps(findSteps(long, AWS_ACCESS_KEY_ID_SEARCH));

      expect(match?.index).toBe(start);
      expect(match?.[0]).toBe(key);
    }
  });

  it('yields inside a long line', () => {
    const text = `${' '.repeat(10 * searchWindowChars)}debugger;`;
    const steps = findSteps(text, DEBUGGER_STATEMENT);
    let yields = 0;
    let step = steps.next();
    while (!step.done) {
      yields += 1;
      step = steps.next();
    }

    expect(step.value?.index).toBe(10 * searchWindowChars);
    expect(yields).toBeGreaterThanOrEqual(10);
  });
});

describe('mayMatch', () => {
  it('tests a short line once', () => {
    expect(mayMatch('const a = 1; debugger;', DEBUGGER_STATEMENT)).toBe(true);
    expect(mayMatch('const a = 1;', DEBUGGER_STATEMENT)).toBe(false);
  });

  it('leaves a long line to the search in steps', () => {
    expect(mayMatch('x'.repeat(searchWindowChars + 1), DEBUGGER_STATEMENT)).toBe(true);
  });
});

describe('findQuotedAssignmentSteps', () => {
  it('finds what the whole pattern finds', () => {
    const random = seededRandom(7);
    let matches = 0;
    for (let round = 0; round < 3_000; round += 1) {
      const text = randomText(random, quotedAssignmentPieces);
      const windowChars = 1 + Math.floor(random() * 8);
      // A text up to the default window is matched with the whole pattern in one piece.
      const expected = runSteps(findQuotedAssignmentSteps(text, new StepMeter()));

      const found = runSteps(findQuotedAssignmentSteps(text, new StepMeter(), windowChars));

      expect(found, text).toEqual(expected);
      matches += expected.length;
    }
    expect(matches).toBeGreaterThan(100);
  });

  it('reads a long value in steps', () => {
    const value = 'v\\"'.repeat(5 * searchWindowChars);
    const text = `${'x '.repeat(searchWindowChars)}token = "${value}"`;
    const steps = findQuotedAssignmentSteps(text, new StepMeter());
    let yields = 0;
    let step = steps.next();
    while (!step.done) {
      yields += 1;
      step = steps.next();
    }

    expect(step.value).toEqual([
      { index: 2 * searchWindowChars, end: text.length, name: 'token', value },
    ]);
    // The value is 15 windows long.
    expect(yields).toBeGreaterThanOrEqual(10);
  });
});
