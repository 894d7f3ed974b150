import type { ModelUsage } from './types.ts';

/** The largest count the ledger's integer columns hold. */
const maxTokenCount = 2 ** 31 - 1;

/** Returns whether `value` is a token count: a whole number of 0 or more. */
function isTokenCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

/**
 * Reads a token count from a provider's response as a whole number from 0 to 2^31 - 1. A
 * missing count and anything that is not a count (a string, a fraction, a negative number)
 * read as 0, and a larger count is capped, so a malformed usage block can neither fail the
 * settle nor credit tokens.
 */
export function tokenCount(value: unknown): number {
  return isTokenCount(value) ? Math.min(value, maxTokenCount) : 0;
}

/**
 * Builds usage from the provider's counts. A total that is missing, not a count or below
 * prompt plus completion is replaced by that sum, so a malformed total is still charged for
 * what was counted. A larger total stays, because Gemini's includes thinking tokens.
 */
export function modelUsage(prompt: unknown, completion: unknown, total: unknown): ModelUsage {
  const promptTokens = tokenCount(prompt);
  const completionTokens = tokenCount(completion);
  const sum = Math.min(promptTokens + completionTokens, maxTokenCount);
  const totalTokens = Math.max(tokenCount(total), sum);
  return { promptTokens, completionTokens, totalTokens };
}

/** Returns whether any of `values` is a token count that a provider could have reported. */
export function hasTokenCount(...values: unknown[]): boolean {
  return values.some(isTokenCount);
}

/**
 * Builds usage like `modelUsage`, but returns undefined when none of the three counts is a
 * token count, so a response whose usage block is missing or unreadable is not charged 0.
 */
export function readableUsage(prompt: unknown, completion: unknown, total: unknown): ModelUsage | undefined {
  return hasTokenCount(prompt, completion, total) ? modelUsage(prompt, completion, total) : undefined;
}
