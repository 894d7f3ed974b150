// Redaction of a long line must take linear time. The scheme part of the connection URL
// pattern of redactCredentials was tried at every word start of a run of `a.a.a.…`, and each try
// read to the end of the run, so the time grew with the square of the line's length.
// maskUrlPassword's URL start pattern did the same at every letter of a run of letters.
import { describe, expect, it } from 'vitest';
import { maskUrlPassword } from '../../src/config/env.ts';
import { redactCredentials } from '../../src/errors/redact-credentials.ts';

function elapsedMs(run: () => unknown): number {
  const start = performance.now();
  run();
  return performance.now() - start;
}

describe('redaction time of a 100 KB line', () => {
  it('redactCredentials takes under 2 s on dotted words', { timeout: 120_000 }, () => {
    const line = 'a.'.repeat(50_000);
    let result = '';
    const ms = elapsedMs(() => {
      result = redactCredentials(line);
    });
    expect(result).toBe(line);
    expect(ms).toBeLessThan(2000);
  });

  it('maskUrlPassword takes under 2 s on a run of letters', { timeout: 120_000 }, () => {
    const line = 'a://u:' + 'x'.repeat(100_000);
    const ms = elapsedMs(() => maskUrlPassword(line));
    expect(ms).toBeLessThan(2000);
  });
});

/** Lines that made a pattern read the rest of the line from many of its positions. */
const adversarialLines: [string, (length: number) => string][] = [
  ['dotted words', (length) => 'a.'.repeat(length / 2)],
  ['hyphenated words', (length) => 'a-b-c-'.repeat(length / 6)],
  ['JWT starts and hyphens', (length) => 'eyJ-'.repeat(length / 4)],
  ['JWT starts and dots', (length) => 'eyJ.'.repeat(length / 4)],
  ['letters and a colon', (length) => 'a'.repeat(length) + ':'],
  ['URL schemes', (length) => 'a://'.repeat(length / 4)],
  ['URLs without "@"', (length) => 'a://u:'.repeat(length / 6)],
  ['one unfinished password', (length) => 'a://u:' + 'x'.repeat(length)],
  ['password of dotted words', (length) => 'a://u:' + 'a.'.repeat(length / 2) + '@'],
  ['at signs', (length) => '@'.repeat(length)],
  ['user and password pairs', (length) => 'x:y@'.repeat(length / 4)],
  ['URL of user and password pairs', (length) => 'a://' + 'x:y@'.repeat(length / 4)],
  ['Google key starts', (length) => 'AIza-'.repeat(length / 5)],
];

const functions: [string, (text: string) => string][] = [
  ['redactCredentials', redactCredentials],
  ['maskUrlPassword', maskUrlPassword],
];

describe('redaction time of a 1 MB line', () => {
  // A quadratic pattern takes 100 times as long for 10 times the length. The bounds leave room
  // for a loaded machine, and 10 ms replaces a 100 KB time too short to measure.
  for (const [functionName, redact] of functions) {
    for (const [shape, makeLine] of adversarialLines) {
      it(`${functionName} on ${shape}`, { timeout: 120_000 }, () => {
        const shortLine = makeLine(100_000);
        const longLine = makeLine(1_000_000);
        redact(shortLine);
        const shortMs = elapsedMs(() => redact(shortLine));
        const longMs = elapsedMs(() => redact(longLine));
        expect(longMs).toBeLessThan(2000);
        expect(longMs).toBeLessThan(20 * Math.max(shortMs, 10));
      });
    }
  }
});

describe('redaction after a long run', () => {
  it('redactCredentials finds a scheme of 100 letters', () => {
    const scheme = 'x'.repeat(100);
    expect(redactCredentials(`${scheme}://u:pw@host/db`)).toBe(
      `${scheme}://u:[redacted]@host/db`,
    );
  });

  it('maskUrlPassword finds a scheme of 100 letters', () => {
    const scheme = 'x'.repeat(100);
    expect(maskUrlPassword(`${scheme}://u:pw@host/db`)).toBe(`${scheme}://u:***@host/db`);
  });

  it('redactCredentials finds a JWT after a run of JWT starts', () => {
    const run = 'eyJ-'.repeat(1000);
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl';
    expect(redactCredentials(`${run} ${jwt}`)).toBe(`${run} [redacted]`);
  });

  it('redactCredentials keeps a run of JWT starts', () => {
    const run = 'eyJ-'.repeat(1000) + '.x';
    expect(redactCredentials(run)).toBe(run);
  });

  it('redactCredentials redacts a JWT that a run starts', () => {
    const text = 'eyJ-'.repeat(1000) + '.payload.signature end';
    expect(redactCredentials(text)).toBe('[redacted] end');
  });
});
