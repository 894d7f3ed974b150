import { describe, expect, it } from 'vitest';
import { chooseKeys } from '../../src/autofix/model-clients.ts';
import { estimateFileCalls, pickFilesWithinAllowance } from '../../src/autofix/preview-budget.ts';
import { groupFindingsByFile, type SelectedFinding } from '../../src/autofix/preview-files.ts';
import { estimateLeastCallTokens, minimumCallTokens } from '../../src/autofix/preview.ts';
import type { Provider } from '../../src/db/schema/index.ts';

let nextId = 1;

function finding(path: string, severity: SelectedFinding['severity'], line = 1): SelectedFinding {
  return {
    id: `finding-${nextId++}`,
    path,
    ruleId: 'debug/console-log',
    severity,
    startLine: line,
    endLine: line,
    message: 'Remove the console.log call.',
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
  it('uses the least call estimate of each file', () => {
    const rows = [finding('a.ts', 'warning'), finding('a.ts', 'notice', 4), finding('b.ts', 'error')];
    const calls = estimateFileCalls(rows);
    const grouped = groupFindingsByFile(rows);
    expect(calls.map((call) => call.path)).toEqual(['b.ts', 'a.ts']);
    for (const call of calls) {
      const expected = estimateLeastCallTokens({ path: call.path, content: '', findings: grouped.get(call.path)! });
      expect(call.tokens).toBe(expected);
      expect(call.tokens).toBeGreaterThan(minimumCallTokens);
    }
  });

  it('grows with the file content', () => {
    const findings = groupFindingsByFile([finding('a.ts', 'warning')]).get('a.ts')!;
    const empty = estimateLeastCallTokens({ path: 'a.ts', content: '', findings });
    const full = estimateLeastCallTokens({ path: 'a.ts', content: 'x'.repeat(4000), findings });
    // 1,000 tokens in the prompt and 1,100 in the least output cap.
    expect(full - empty).toBe(2100);
  });
});

describe('pickFilesWithinAllowance', () => {
  const calls = [
    { path: 'first.ts', tokens: 600 },
    { path: 'second.ts', tokens: 500 },
    { path: 'third.ts', tokens: 300 },
  ];

  it('skips a file over the rest', () => {
    expect([...pickFilesWithinAllowance(calls, 1000)]).toEqual(['first.ts', 'third.ts']);
  });

  it('counts a call that fits exactly', () => {
    expect([...pickFilesWithinAllowance(calls, 1400)]).toEqual(['first.ts', 'second.ts', 'third.ts']);
  });

  it('picks nothing below every call', () => {
    expect([...pickFilesWithinAllowance(calls, 299)]).toEqual([]);
  });

  it('picks everything when unlimited', () => {
    expect(pickFilesWithinAllowance(calls, Number.POSITIVE_INFINITY).size).toBe(3);
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
