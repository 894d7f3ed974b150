import { quoteValue } from '../text/quote-value.ts';

/**
 * Maximum length of a payload value quoted in a delivery's outcome. The longest action in
 * @octokit/webhooks-types 7.6.1 has 24 characters. The outcome is stored, logged and returned
 * to the sender, so a longer value is shortened with an ellipsis.
 */
export const maxQuotedPayloadLength = 60;

/** Formats a payload value for a delivery's outcome as JSON, shortened to `maxQuotedPayloadLength`. */
export function quotePayloadValue(value: unknown): string {
  return quoteValue(value, maxQuotedPayloadLength);
}

/** Builds the outcome of a delivery whose action the handler of `event` does not act on. */
export function ignoredActionOutcome(event: string, action: string): string {
  return `ignored: ${event} action ${quotePayloadValue(action)}`;
}
