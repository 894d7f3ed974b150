/**
 * Removes every NUL character (U+0000). PostgreSQL text columns cannot store NUL, so text from
 * outside (webhook payloads, patches, model output) goes through this before it is stored.
 */
export function stripNul(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '') : text;
}

/**
 * Returns `value` with NUL removed from every string in it, keys included, as parsed from JSON.
 * A value without NUL is returned as it is, not copied.
 * NOTE: it recurses once per level of nesting, so it suits parsed API responses, not input
 * nested thousands of levels deep.
 */
export function stripNulDeep(value: unknown): unknown {
  if (typeof value === 'string') return stripNul(value);
  if (Array.isArray(value)) {
    let copy: unknown[] | null = null;
    value.forEach((item, index) => {
      const stripped = stripNulDeep(item);
      if (stripped !== item) (copy ??= [...value])[index] = stripped;
    });
    return copy ?? value;
  }
  if (value === null || typeof value !== 'object') return value;
  let changed = false;
  const entries = Object.entries(value).map(([key, item]) => {
    const stripped: [string, unknown] = [stripNul(key), stripNulDeep(item)];
    if (stripped[0] !== key || stripped[1] !== item) changed = true;
    return stripped;
  });
  return changed ? Object.fromEntries(entries) : value;
}
