import { quoteValue, shortenText } from '../text/quote-value.ts';

/**
 * Maximum length of a payload value quoted in a delivery's outcome. The longest action in
 * @octokit/webhooks-types 7.6.1 has 24 characters. The outcome is stored, logged and returned
 * to the sender, so a longer value is shortened with an ellipsis.
 */
export const maxQuotedPayloadLength = 60;

/**
 * Maximum length of the action stored in `webhook_deliveries.action`. The action comes from the
 * payload, so a longer one is shortened with an ellipsis, and the delivery is still recorded.
 */
export const maxStoredActionLength = 60;

/** Shortens a payload's action to `maxStoredActionLength` for `webhook_deliveries.action`. */
export function storedAction(action: string): string {
  return shortenText(action, maxStoredActionLength);
}

/** Formats a payload value for a delivery's outcome as JSON, shortened to `maxQuotedPayloadLength`. */
export function quotePayloadValue(value: unknown): string {
  return quoteValue(value, maxQuotedPayloadLength);
}

/** Builds the outcome of a delivery whose action the handler of `event` does not act on. */
export function ignoredActionOutcome(event: string, action: string): string {
  return `ignored: ${event} action ${quotePayloadValue(action)}`;
}
