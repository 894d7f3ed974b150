/** Shortens `text` to `maxLength` characters, the last of them an ellipsis, when it is longer. */
export function shortenText(text: string, maxLength: number): string {
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
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
