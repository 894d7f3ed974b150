/**
 * Removes every NUL character (U+0000). PostgreSQL text columns cannot store NUL, so text from
 * outside (webhook payloads, patches, model output) goes through this before it is stored.
 */
export function stripNul(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '') : text;
}
