import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { answerFixPrompt } from '../../src/demo/scenario.ts';
import { emptyFileMarker } from '../../src/llm/empty-file-marker.ts';
import { parseModelOutput } from '../../src/llm/output.ts';
import { buildFixPrompt, type FixFinding } from '../../src/llm/prompt.ts';

const debuggerFinding: FixFinding = {
  id: 'f1',
  ruleId: 'debug/debugger',
  line: 1,
  endLine: 1,
  message: 'Remove the debugger statement.',
};

describe('emptyFileMarker', () => {
  it('is plain for most files', () => {
    expect(emptyFileMarker('debugger;\n')).toBe('<empty-file/>');
    expect(emptyFileMarker('')).toBe('<empty-file/>');
    expect(emptyFileMarker('<EMPTY-FILE/>\n')).toBe('<empty-file/>');
  });

  it('derives a hashed marker from a file that contains the plain one', () => {
    const original = 'const s = "<empty-file/>";\n';
    const digest = createHash('sha256').update(original).digest('hex').slice(0, 16);

    expect(emptyFileMarker(original)).toBe(`<empty-file-${digest}/>`);
    expect(emptyFileMarker(original)).toBe(emptyFileMarker(original));
    expect(emptyFileMarker('<empty-file\n')).not.toBe(emptyFileMarker('<empty-file \n'));
  });
});

describe('empty-file marker in the fix prompt', () => {
  it('documents the plain marker', () => {
    const { system, user } = buildFixPrompt({ path: 'a.ts', content: 'debugger;\n', findings: [debuggerFinding] });

    expect(system).toContain(
      'If nothing but white space would remain, return only <empty-file/>.',
    );
    expect(user).not.toContain('<empty-file');
  });

  it('documents the hashed marker of a file that contains the plain one', () => {
    const content = 'debugger; // <empty-file/>\n';
    const marker = emptyFileMarker(content);

    const { system } = buildFixPrompt({ path: 'a.ts', content, findings: [debuggerFinding] });

    expect(system).toContain(`return only ${marker}.`);
    expect(system).not.toContain('<empty-file/>');
  });
});

describe('answerFixPrompt', () => {
  it.each([
    ['a debugger line', 'debugger;\n'],
    ['a line without a line break', 'debugger;'],
    ['blank lines around the statement', '\n\ndebugger;\n\n'],
  ])('answers the marker for %s', (_case, content) => {
    const line = content.split('\n').indexOf('debugger;') + 1;
    const finding = { ...debuggerFinding, line, endLine: line };
    const { user } = buildFixPrompt({ path: 'a.ts', content, findings: [finding] });

    const answer = answerFixPrompt(user);

    expect(answer).toEqual({ text: '<empty-file/>' });
    expect(parseModelOutput(answer.text, content, 'a.ts')).toEqual({ ok: true, content: '' });
  });

  it('answers the hashed marker of a file that contains the plain one', () => {
    const content = 'console.log("<empty-file/>");\n';
    const finding = { ...debuggerFinding, ruleId: 'debug/console-log' };
    const { user } = buildFixPrompt({ path: 'a.ts', content, findings: [finding] });

    expect(answerFixPrompt(user)).toEqual({ text: emptyFileMarker(content) });
  });
});
