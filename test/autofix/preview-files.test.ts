import { describe, expect, it } from 'vitest';
import { chooseKeys } from '../../src/autofix/model-clients.ts';
import {
  estimateFileCallParts,
  estimateFileCalls,
  pickDefaultFindings,
  pickDefaultSelection,
  type PreviewPayment,
} from '../../src/autofix/preview-budget.ts';
import { groupFindingsByFile, type SelectedFinding } from '../../src/autofix/preview-files.ts';
import {
  estimateLeastCallParts,
  estimateLeastCallTokens,
  minimumCallTokens,
} from '../../src/autofix/preview.ts';
import type { Provider } from '../../src/db/schema/index.ts';
import { buildFixPrompt, estimatePromptTokens } from '../../src/llm/prompt.ts';

let nextId = 1;

function finding(path: string, severity: SelectedFinding['severity'], line = 1) {
  return {
    id: `finding-${nextId++}`,
    path,
    ruleId: 'debug/console-log',
    severity,
    startLine: line,
    endLine: line,
    message: 'Remove the console.log call.',
    fileBytes: null as number | null,
  };
}

describe('groupFindingsByFile', () => {
  it('orders files by worst severity, then path', () => {
    const grouped = groupFindingsByFile([
      finding('z.ts', 'notice'),
      finding('b.ts', 'warning'),
      finding('y.ts', 'notice'),
      finding('y.ts', 'error'),
      finding('a.ts', 'warning'),
      finding('B.ts', 'notice'),
    ]);
    // Paths compare by code point, so "B.ts" comes before "z.ts" in the notice group.
    expect([...grouped.keys()]).toEqual(['y.ts', 'a.ts', 'b.ts', 'B.ts', 'z.ts']);
  });

  it('orders each file by line', () => {
    const grouped = groupFindingsByFile([finding('a.ts', 'error', 9), finding('a.ts', 'notice', 2)]);
    expect(grouped.get('a.ts')!.map((entry) => entry.line)).toEqual([2, 9]);
  });
});

describe('estimateFileCalls', () => {
  it('uses each file\'s recorded size', () => {
    const rows = [finding('a.ts', 'warning'), finding('a.ts', 'notice', 4), finding('b.ts', 'error')];
    rows[0]!.fileBytes = 400;
    rows[1]!.fileBytes = 400;
    const calls = estimateFileCalls(rows);
    const grouped = groupFindingsByFile(rows);

    expect(calls.map((call) => call.path)).toEqual(['b.ts', 'a.ts']);
    expect(calls[0]!.sizeKnown).toBe(false);
    expect(calls[0]!.tokens).toBe(estimateLeastCallTokens({ path: 'b.ts', findings: grouped.get('b.ts')!, fileBytes: 0 }));
    expect(calls[1]!.sizeKnown).toBe(true);
    expect(calls[1]!.tokens).toBe(estimateLeastCallTokens({ path: 'a.ts', findings: grouped.get('a.ts')!, fileBytes: 400 }));
    expect(calls[0]!.tokens).toBeGreaterThan(minimumCallTokens);
  });
});

describe('estimateLeastCallTokens', () => {
  const findings = groupFindingsByFile([finding('src/a.ts', 'warning')]).get('src/a.ts')!;

  it('matches the worker\'s prompt and output', () => {
    const content = "export const a = 1;\nconsole.log('a', é);\n";
    const bytes = Buffer.byteLength(content, 'utf8');
    const prompt = estimatePromptTokens(buildFixPrompt({ path: 'src/a.ts', content, findings }));
    const leastOutput = Math.ceil(Math.ceil(bytes / 4) * 1.1) + 64;
    expect(estimateLeastCallTokens({ path: 'src/a.ts', findings, fileBytes: bytes })).toBe(prompt + leastOutput);
  });

  it('grows with the file size', () => {
    const empty = estimateLeastCallTokens({ path: 'src/a.ts', findings, fileBytes: 0 });
    const full = estimateLeastCallTokens({ path: 'src/a.ts', findings, fileBytes: 4000 });
    // 1,000 tokens in the prompt and 1,100 in the minimum output cap.
    expect(full - empty).toBe(2100);
  });

  it('equals minimumCallTokens when empty', () => {
    expect(estimateLeastCallTokens({ path: '', findings: [], fileBytes: 0 })).toBe(minimumCallTokens);
  });
});

describe('estimateLeastCallParts', () => {
  const rows = [finding('src/é.ts', 'error', 3), finding('src/é.ts', 'warning', 7), finding('src/é.ts', 'notice', 12)];
  rows[0]!.ruleId = 'secret/hardcoded-credential';
  rows[0]!.message = 'Remove <script> & "quotes" from the line.';
  rows[1]!.message = 'Ein längerer Hinweis mit Umlauten: äöü.';
  const findings = groupFindingsByFile(rows).get('src/é.ts')!;

  // Every non-empty subset of the three findings, as bit masks 1 to 7, and file sizes that
  // change the rounding. The second and third finding are of one kind, so its guidance counts once.
  for (const fileBytes of [0, 1, 2, 3, 401]) {
    it(`matches estimateLeastCallTokens for every subset at ${fileBytes} bytes`, () => {
      const parts = estimateLeastCallParts({ path: 'src/é.ts', findings, fileBytes });
      expect(parts.findingBytes).toHaveLength(3);
      expect(parts.findingKinds).toEqual(['secret', 'debug', 'debug']);
      expect([...parts.kindBytes.keys()].sort()).toEqual(['debug', 'secret']);
      for (let mask = 1; mask < 8; mask++) {
        const subset = findings.filter((_, index) => (mask & (1 << index)) !== 0);
        const kinds = new Set(parts.findingKinds.filter((_, index) => (mask & (1 << index)) !== 0));
        const bytes = findings.reduce(
          (sum, _, index) => ((mask & (1 << index)) !== 0 ? sum + parts.findingBytes[index]! : sum),
          parts.baseBytes + [...kinds].reduce((sum, kind) => sum + parts.kindBytes.get(kind)!, 0),
        );
        const expected = estimateLeastCallTokens({ path: 'src/é.ts', findings: subset, fileBytes });
        expect(Math.ceil(bytes / 4) + parts.fixedTokens, `subset mask ${mask}`).toBe(expected);
      }
    });
  }
});

describe('estimateFileCallParts', () => {
  it('keys each finding\'s bytes and kind by id', () => {
    const rows = [finding('a.ts', 'warning'), finding('a.ts', 'notice', 4), finding('b.ts', 'error')];
    rows[0]!.fileBytes = 400;
    rows[1]!.fileBytes = 400;
    const parts = estimateFileCallParts(rows);
    const calls = new Map(estimateFileCalls(rows).map((call) => [call.path, call.tokens]));

    expect([...parts.keys()]).toEqual(['b.ts', 'a.ts']);
    const a = parts.get('a.ts')!;
    expect([...a.findingBytes.keys()]).toEqual([rows[0]!.id, rows[1]!.id]);
    expect([...a.findingKinds.values()]).toEqual(['debug', 'debug']);
    const guidance = a.kindBytes.get('debug')!;
    expect(guidance).toBeGreaterThan(100);
    const allBytes = a.baseBytes + guidance + [...a.findingBytes.values()].reduce((sum, bytes) => sum + bytes, 0);
    expect(Math.ceil(allBytes / 4) + a.fixedTokens).toBe(calls.get('a.ts'));
    const oneBytes = a.baseBytes + guidance + a.findingBytes.get(rows[1]!.id)!;
    const one = estimateFileCalls([rows[1]!])[0]!.tokens;
    expect(Math.ceil(oneBytes / 4) + a.fixedTokens).toBe(one);
    expect(one).toBeLessThan(calls.get('a.ts')!);
  });
});

describe('pickDefaultFindings', () => {
  /** Returns a payment from the allowance with `remaining` tokens left. */
  function allowance(remaining: number): PreviewPayment {
    return {
      kind: 'allowance',
      allowance: { plan: 'free', limit: 1000, used: 1000 - remaining, reserved: 0, remaining },
    };
  }

  /** Returns the estimate of one file's call with exactly the given findings. */
  function tokensOf(rows: ReturnType<typeof finding>[]): number {
    return estimateFileCalls(rows)[0]!.tokens;
  }

  const error = finding('b.ts', 'error', 3);
  const notice = finding('b.ts', 'notice', 1);
  const warning = finding('a.ts', 'warning', 7);
  const rows = [notice, error, warning];

  it('picks every finding when they all fit', () => {
    const all = tokensOf([notice, error]) + tokensOf([warning]);
    expect([...pickDefaultFindings(allowance(all), rows)].sort()).toEqual(
      [notice.id, error.id, warning.id].sort(),
    );
  });

  it('keeps the most severe finding of a file', () => {
    // The error's file with only the error fits, with the notice too it does not.
    const remaining = tokensOf([error]);
    expect(tokensOf([notice, error])).toBeGreaterThan(remaining);
    expect([...pickDefaultFindings(allowance(remaining), rows)]).toEqual([error.id]);
  });

  it('goes on to a later file that fits', () => {
    const remaining = tokensOf([error]) + tokensOf([warning]);
    expect(tokensOf([notice, error]) + tokensOf([warning])).toBeGreaterThan(remaining);
    expect([...pickDefaultFindings(allowance(remaining), rows)].sort()).toEqual(
      [error.id, warning.id].sort(),
    );
  });

  it('picks nothing below every single call', () => {
    const least = Math.min(tokensOf([error]), tokensOf([notice]), tokensOf([warning]));
    expect(pickDefaultFindings(allowance(least - 1), rows).size).toBe(0);
  });

  it('picks everything when an own key pays', () => {
    const payment: PreviewPayment = { kind: 'own_key', provider: 'groq', platformFirst: false };
    expect(pickDefaultFindings(payment, rows).size).toBe(3);
  });
});

describe('pickDefaultSelection', () => {
  /** 1,200 findings in 4 files: 300 errors in z.ts, then warnings and notices. */
  const many = Array.from({ length: 1200 }, (_, index) =>
    finding(['z.ts', 'a.ts', 'b.ts', 'c.ts'][index % 4]!, (['error', 'warning', 'notice', 'notice'] as const)[index % 4]!, index + 1),
  );

  it('takes at most 1,000 findings, the most severe first', () => {
    const payment: PreviewPayment = { kind: 'own_key', provider: 'groq', platformFirst: false };
    const { findingIds, overLimit } = pickDefaultSelection(payment, many);
    expect(findingIds.size).toBe(1000);
    expect(overLimit).toBe(200);
    const severities = many.filter((row) => findingIds.has(row.id)).map((row) => row.severity);
    expect(severities.filter((severity) => severity === 'error')).toHaveLength(300);
    expect(severities.filter((severity) => severity === 'warning')).toHaveLength(300);
    expect(severities.filter((severity) => severity === 'notice')).toHaveLength(400);
    // The notices of b.ts, processed before c.ts, come first.
    const notices = many.filter((row) => findingIds.has(row.id) && row.severity === 'notice');
    expect(notices.filter((row) => row.path === 'b.ts')).toHaveLength(300);
  });

  it('counts only the findings that fit the allowance past the limit', () => {
    // z.ts, a.ts and b.ts fit with the first 150 of the 300 notices of c.ts.
    const fitting = many.filter((row) => row.path !== 'c.ts' || row.startLine <= 4 * 150);
    expect(fitting).toHaveLength(1050);
    const remaining = estimateFileCalls(fitting).reduce((sum, call) => sum + call.tokens, 0);
    const payment: PreviewPayment = {
      kind: 'allowance',
      allowance: { plan: 'pro', limit: remaining, used: 0, reserved: 0, remaining },
    };
    const { findingIds, overLimit } = pickDefaultSelection(payment, many);
    expect(findingIds.size).toBe(1000);
    expect(overLimit).toBe(50);
    expect(many.filter((row) => findingIds.has(row.id) && row.path === 'c.ts')).toHaveLength(100);
  });

  it('leaves out nothing below the limit', () => {
    const payment: PreviewPayment = { kind: 'own_key', provider: 'groq', platformFirst: false };
    const { findingIds, overLimit } = pickDefaultSelection(payment, many.slice(0, 1000));
    expect(findingIds.size).toBe(1000);
    expect(overLimit).toBe(0);
  });
});

describe('chooseKeys', () => {
  const order: Provider[] = ['groq', 'gemini'];
  const platform = (provider: Provider) => provider === 'groq';

  it('uses the platform key without own keys', () => {
    expect(chooseKeys(order, new Map(), platform)).toEqual([{ provider: 'groq', keySource: 'platform' }]);
  });

  it('puts an own key after a platform key', () => {
    expect(chooseKeys(order, new Map([['gemini', true]]), platform)).toEqual([
      { provider: 'groq', keySource: 'platform' },
      { provider: 'gemini', keySource: 'user' },
    ]);
  });

  it('drops platform keys after an own key', () => {
    const everyPlatformKey = () => true;
    expect(chooseKeys(order, new Map([['groq', true]]), everyPlatformKey)).toEqual([
      { provider: 'groq', keySource: 'user' },
    ]);
  });

  it('leaves out a provider whose own key is unusable', () => {
    expect(chooseKeys(order, new Map([['groq', false]]), platform)).toEqual([]);
  });
});
