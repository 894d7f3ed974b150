/**
 * Shortens `text` to `maxLength` UTF-16 code units, the last of them an ellipsis, when it is
 * longer. The cut never splits a surrogate pair, so an emoji is kept whole or left out.
 */
export function shortenText(text: string, maxLength: number): string {
  if (text.length <= maxLength) return text;
  let end = maxLength - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

/**
 * Formats `value` as JSON for an error message, shortened with an ellipsis to `maxLength`
 * characters.
 */
export function quoteValue(value: unknown, maxLength: number): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    // JSON.stringify recurses, so a value nested thousands of levels deep, which JSON.parse
    // accepts, overflows the stack. The message then names the type instead of quoting it.
    return Array.isArray(value) ? '(a deeply nested array)' : '(a deeply nested object)';
  }
  return shortenText(text, maxLength);
}
