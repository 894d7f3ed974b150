import type { ModelUsage } from './types.ts';

/** The largest count the ledger's integer columns hold. */
const maxTokenCount = 2 ** 31 - 1;

/**
 * Reads a token count from a provider's response as a whole number from 0 to 2^31 - 1. A
 * missing, negative or non-numeric count reads as 0, a fraction is rounded up and a larger
 * count is capped, so a malformed usage block can neither fail the settle nor credit tokens.
 */
export function tokenCount(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) return 0;
  return Math.min(Math.ceil(value), maxTokenCount);
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
  const validTotal = typeof total === 'number' && Number.isFinite(total) && total >= 0;
  const totalTokens = validTotal ? Math.max(tokenCount(total), sum) : sum;
  return { promptTokens, completionTokens, totalTokens };
}

/** Returns whether any of `values` is a token count that a provider could have reported. */
export function hasTokenCount(...values: unknown[]): boolean {
  return values.some((value) => typeof value === 'number' && Number.isFinite(value) && value >= 0);
}

/**
 * Builds usage like `modelUsage`, but returns undefined when none of the three counts is a
 * number, so a response whose usage block is missing or unreadable is not charged 0 tokens.
 */
export function readableUsage(prompt: unknown, completion: unknown, total: unknown): ModelUsage | undefined {
  return hasTokenCount(prompt, completion, total) ? modelUsage(prompt, completion, total) : undefined;
}
