import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrayLiteral } from '../../src/db/arrays.ts';
import { transactionDb } from '../../src/jobs/boss.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';

let context: TestContext;

beforeAll(async () => {
  context = await createTestContext();
});
afterAll(async () => {
  await context.close();
});

describe('arrayLiteral', () => {
  it('quotes and escapes each element', () => {
    expect(arrayLiteral(['a', 'b"c', 'd\\e', null, 3])).toBe('{"a","b\\"c","d\\\\e",NULL,"3"}');
  });

  it('writes nested arrays and dates', () => {
    const date = new Date('2026-12-05T01:02:03.000Z');
    expect(arrayLiteral([[1, 2], [date]])).toBe('{{"1","2"},{"2026-12-05T01:02:03.000Z"}}');
  });

  it('writes an empty array', () => {
    expect(arrayLiteral([])).toBe('{}');
  });
});

describe('transactionDb', () => {
  it('sends arrays as PostgreSQL arrays', async () => {
    const values = ['plain', 'with "quotes"', 'back\\slash', 'comma, brace}', null, ''];
    const result = await context.db.transaction(async (tx) => {
      const db = transactionDb(tx);
      return db.executeSql(
        'SELECT item FROM unnest($1::text[]) WITH ORDINALITY AS t(item, n) ORDER BY n',
        [values],
      );
    });
    expect(result.rows).toEqual(values.map((item) => ({ item })));
  });

  it('sends uuid arrays to ANY', async () => {
    const ids = ['0f8fad5b-d9cb-469f-a165-70867728950e', '7c9e6679-7425-40de-944b-e07fc1f90ae7'];
    const result = await context.db.transaction(async (tx) =>
      transactionDb(tx).executeSql(
        "SELECT count(*)::int AS matched FROM (VALUES ('7c9e6679-7425-40de-944b-e07fc1f90ae7'::uuid)) AS t(id) WHERE id = ANY($1)",
        [ids],
      ),
    );
    expect(result.rows).toEqual([{ matched: 1 }]);
  });

  it('sends objects as JSON', async () => {
    const [row] = await context.db.transaction(async (tx) =>
      (await transactionDb(tx).executeSql('SELECT $1::jsonb AS data', [{ a: [1, 'x'] }])).rows,
    );
    expect(row).toEqual({ data: { a: [1, 'x'] } });
  });
});
