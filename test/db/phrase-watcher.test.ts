import { describe, expect, it } from 'vitest';
import { phraseWatcher } from '../../src/db/bundled.ts';

const ready = 'database system is ready to accept connections';

describe('phraseWatcher', () => {
  it('finds phrase in one chunk', () => {
    const watch = phraseWatcher(ready);
    expect(watch('LOG:  starting PostgreSQL\n')).toBe(false);
    expect(watch(`LOG:  ${ready}\n`)).toBe(true);
  });

  it('finds phrase split in two', () => {
    const line = `2026-12-06 LOG:  ${ready}\n`;
    const found: number[] = [];
    for (let split = 1; split < line.length; split += 1) {
      const watch = phraseWatcher(ready);
      const first = watch(line.slice(0, split));
      if (first || watch(line.slice(split))) found.push(split);
    }
    expect(found).toHaveLength(line.length - 1);
  });

  it('finds phrase in single characters', () => {
    const watch = phraseWatcher(ready);
    const results = [...`LOG:  ${ready}`].map((character) => watch(character));
    expect(results.indexOf(true)).toBe(`LOG:  ${ready}`.length - 1);
  });

  it('ignores phrase parts never adjacent', () => {
    const watch = phraseWatcher(ready);
    expect(watch('database system is ')).toBe(false);
    expect(watch('shutting down\n')).toBe(false);
    expect(watch('ready to accept connections')).toBe(false);
  });
});
