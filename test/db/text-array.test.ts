// Fixwright's postgres.js clients fetch no array types, so text[] is parsed and written by
// src/db/arrays.ts. These checks go through a real client and server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTextArray } from '../../src/db/arrays.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const awkward = ['plain', 'back\\slash', 'ends\\', 'say "hi"', 'a,b{c}', 'NULL', ' spaced ', ''];

describe('text[] on postgres.js clients', () => {
  it('reads a text[] column as an array', async () => {
    const [row] = await database.sql`SELECT ARRAY[${'back\\slash'}, NULL, ${'say "hi"'}] AS items`;
    expect(row!.items).toEqual(['back\\slash', null, 'say "hi"']);
  });

  it('sends a JS array to a text[] parameter', async () => {
    const rows = await database.sql`
      SELECT item FROM unnest(${awkward}::text[]) WITH ORDINALITY AS t(item, n) ORDER BY n`;
    expect(rows.map((row) => row.item)).toEqual(awkward);
  });

  it('sends a JS array to ANY on a text column', async () => {
    const [row] = await database.sql`
      SELECT count(*)::int AS matched FROM (VALUES ('ends\\'), ('other')) AS t(login)
      WHERE login = ANY(${awkward})`;
    expect(row!.matched).toBe(1);
  });
});

describe('parseTextArray', () => {
  it('parses an empty array', () => {
    expect(parseTextArray('{}')).toEqual([]);
  });

  it('parses quoted, unquoted and NULL elements', () => {
    const parsed = parseTextArray('{a,"b\\\\c","d\\"e",NULL,"NULL",""}');
    expect(parsed).toEqual(['a', 'b\\c', 'd"e', null, 'NULL', '']);
  });

  it('skips a dimension before the brace', () => {
    expect(parseTextArray('[0:1]={x,y}')).toEqual(['x', 'y']);
  });
});
