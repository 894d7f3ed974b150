import { maskSecretsSteps } from './secrets.ts';
import { runSteps, type Steps } from './steps.ts';

export const MAX_EXCERPT_LENGTH = 200;

// Characters kept before the offending match when a long line is cut, to show what it belongs to.
const LEAD_IN = 40;

/**
 * Builds the excerpt shown with a finding: the trimmed line with every secret masked. A line
 * longer than MAX_EXCERPT_LENGTH is cut to a window around `focus` (an index into `text`), and
 * `…` marks each cut end.
 */
export function buildExcerpt(text: string, path: string, focus = 0): string {
  return runSteps(buildExcerptSteps(text, path, focus));
}

/** Builds the excerpt as `buildExcerpt` does, in steps. */
export function* buildExcerptSteps(text: string, path: string, focus = 0): Steps<string> {
  const masked = yield* maskSecretsSteps(text, path);
  const trimmed = masked.trim();
  if (trimmed.length <= MAX_EXCERPT_LENGTH) {
    return trimmed;
  }

  const leadingSpace = masked.length - masked.trimStart().length;
  const focusInTrimmed = Math.max(0, focus - leadingSpace);
  const lastStart = trimmed.length - (MAX_EXCERPT_LENGTH - 1);
  const start = Math.max(0, Math.min(focusInTrimmed - LEAD_IN, lastStart));

  if (start === 0) {
    return `${trimmed.slice(0, MAX_EXCERPT_LENGTH - 1)}…`;
  }
  if (start === lastStart) {
    return `…${trimmed.slice(start)}`;
  }
  return `…${trimmed.slice(start, start + MAX_EXCERPT_LENGTH - 2)}…`;
}

/**
 * Masks an excerpt stored under an older `excerptMaskVersion` with the current rules. Masking
 * only writes `*` over characters, so the masks the excerpt already has stay.
 * NOTE: a secret that the excerpt's cut at `…` split is masked only when the part left still
 * matches a rule, because the rest of the line was not stored.
 */
export function* remaskExcerptSteps(excerpt: string, path: string): Steps<string> {
  return yield* maskSecretsSteps(excerpt, path);
}
