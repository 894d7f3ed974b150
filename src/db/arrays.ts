/** OID of PostgreSQL's `text[]` type. */
export const textArrayOid = 1009;

/**
 * Parses PostgreSQL's text output of a one-dimensional `text[]`, such as `{a,"b\"c",NULL}`.
 * Quoted elements keep every character after a `\`, and an unquoted NULL is null. drizzle-orm
 * 0.45 parses this text itself when the driver does not, but drops every backslash in it.
 */
export function parseTextArray(text: string): (string | null)[] {
  const values: (string | null)[] = [];
  // A lower bound other than 1 puts a dimension such as `[0:1]=` before the brace.
  let index = text.indexOf('{') + 1;
  if (text[index] === '}') return values;
  while (index < text.length) {
    if (text[index] === '"') {
      let value = '';
      for (index++; index < text.length && text[index] !== '"'; index++) {
        if (text[index] === '\\') index++;
        value += text[index];
      }
      values.push(value);
      index++;
    } else {
      let end = index;
      while (end < text.length && text[end] !== ',' && text[end] !== '}') end++;
      const element = text.slice(index, end);
      values.push(element === 'NULL' ? null : element);
      index = end;
    }
    // index is now at the `,` before the next element or at the closing `}`.
    if (text[index] === '}') break;
    index++;
  }
  return values;
}

export function isPlainObject(value: unknown): value is object {
  return (
    value !== null &&
    typeof value === 'object' &&
    !(value instanceof Date) &&
    !Buffer.isBuffer(value) &&
    !Array.isArray(value)
  );
}

/**
 * Returns a PostgreSQL array literal such as `{"a","b\\"c",NULL}`, which PostgreSQL casts to
 * the array type that the query expects. Every element is quoted, with `"` and `\` escaped.
 */
export function arrayLiteral(values: unknown[]): string {
  const elements = values.map((value) => {
    if (value === null || value === undefined) return 'NULL';
    if (Array.isArray(value)) return arrayLiteral(value);
    return '"' + elementText(value).replace(/[\\"]/g, (character) => '\\' + character) + '"';
  });
  return '{' + elements.join(',') + '}';
}

function elementText(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (isPlainObject(value)) return JSON.stringify(value);
  return String(value);
}

/**
 * Writes a parameter that PostgreSQL takes as `text[]`: an array as an array literal, and a
 * string, such as the literal that drizzle-orm makes of an array column's value, unchanged.
 */
export function serializeTextArray(value: unknown): string {
  return Array.isArray(value) ? arrayLiteral(value) : String(value);
}
