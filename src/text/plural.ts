const numberFormat = new Intl.NumberFormat('en-US');

/** Formats a number with commas between thousands, as "2,700". */
export function formatNumber(value: number): string {
  return numberFormat.format(value);
}

/** Formats a count with its noun, as "1 key" or "3 keys". */
export function formatCount(count: number, singular: string, plural = `${singular}s`): string {
  return `${count} ${pickForm(count, singular, plural)}`;
}

/** Returns the singular form for a count of 1 and the plural form otherwise, as "is" or "are". */
export function pickForm(count: number, singular: string, plural: string): string {
  return count === 1 ? singular : plural;
}

/** Joins items as "a", "a and b" or "a, b and c". */
export function joinWithAnd(items: readonly string[]): string {
  return joinWithConjunction(items, 'and');
}

/** Joins items as "a", "a or b" or "a, b or c". */
export function joinWithOr(items: readonly string[]): string {
  return joinWithConjunction(items, 'or');
}

function joinWithConjunction(items: readonly string[], conjunction: string): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} ${conjunction} ${items.at(-1)}`;
}

/** Joins ids for a message, naming the first five and counting the rest. */
export function listShort(ids: string[]): string {
  if (ids.length <= 5) return ids.join(', ');
  return `${ids.slice(0, 5).join(', ')} and ${ids.length - 5} more`;
}
