import type { ProviderError } from '../llm/errors.ts';
import {
  estimatePromptTokens,
  estimateTextTokens,
  maximumPromptTokens,
  minimumPromptTokens,
  minimumTextTokens,
} from '../llm/prompt.ts';
import type { ModelRequest, ModelUsage } from '../llm/types.ts';

/**
 * Reason why settled counts differ from the provider's: the counts were missing, a count was
 * below the minimum that the text can take, or a count was above the maximum that the request
 * allows.
 */
export type UsageCorrectionReason = 'missing' | 'below_minimum' | 'above_maximum';

/**
 * The usage to settle for one response. When a provider's count is missing, below the minimum
 * or above the maximum, `usage` contains an estimate or the maximum in its place, and
 * `correction` contains the reasons and the provider's counts.
 */
export type BilledUsage = {
  usage: ModelUsage;
  correction?: {
    /** `missing` alone, or `below_minimum`, `above_maximum` or both. */
    reasons: UsageCorrectionReason[];
    /** The provider's counts, 0 for a missing one or one that is not a count. */
    reported: ModelUsage;
    /** The minimum prompt and completion tokens that the response can plausibly have used. */
    minimum: { promptTokens: number; completionTokens: number };
    /**
     * The maximum tokens that the request can have used. The total is the settled prompt count
     * plus the output cap, because all that a response counts beyond its prompt is output.
     */
    maximum: ModelUsage;
  };
  /**
   * The provider's counts when checking them failed, so that `usage` contains the call's hold
   * in their place (see `billHold`).
   */
  unchecked?: { reported: ModelUsage };
};

/**
 * Returns the usage to settle for a response whose text the call uses. Counts with a total of
 * 0 are missing, as an OpenAI-compatible proxy may send them. A prompt or completion count
 * below the least that the prompt or the text can take is not a real count. Either is replaced
 * by the estimate that the reservation uses, so a response with false counts costs no less
 * than one without counts. A count above the maximum (see `maximumUsage`) is replaced by the
 * maximum.
 */
export function billResponse(request: ModelRequest, reported: ModelUsage, text: string): BilledUsage {
  return correctUsage(request, reported, {
    minimum: minimumTextTokens(text),
    estimate: estimateTextTokens(text),
    estimateWhenMissing: true,
  });
}

/**
 * Returns the usage to settle for a failed response that the provider billed, such as a
 * cut-off, empty, blocked or unreadable one. Its text is not at hand, so only the prompt count
 * is checked against its minimum. Without counts, a cut-off response is charged the output
 * cap and an empty one no output. A blocked or unreadable one is charged nothing, because
 * whether the providers bill a blocked prompt is unverified, and an unreadable one is retried.
 * Counts above the maximum are replaced by the maximum, as for a used response.
 */
export function billFailedResponse(
  request: ModelRequest,
  reported: ModelUsage,
  kind: ProviderError['kind'],
): BilledUsage {
  const estimate = kind === 'truncated' ? request.maxOutputTokens : 0;
  const estimateWhenMissing = kind === 'truncated' || kind === 'empty';
  return correctUsage(request, reported, { minimum: 0, estimate, estimateWhenMissing });
}

/**
 * Returns the usage to settle for a response whose counts could not be checked because
 * `billResponse` or `billFailedResponse` threw: the call's hold, the prompt estimate plus the
 * output cap, as a cut-off response without counts is charged. The settle charges at most what
 * the limit leaves, and the ledger row keeps the provider's counts.
 */
export function billHold(request: ModelRequest, reported: ModelUsage): BilledUsage {
  const promptTokens = estimatePromptTokens(request);
  const completionTokens = request.maxOutputTokens;
  const usage = { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens };
  return { usage, unchecked: { reported } };
}

/**
 * Returns the maximum prompt and completion tokens that one response to `request` can have used.
 * The completion, thinking tokens included, cannot pass the output cap that the request sends,
 * and the prompt cannot pass `maximumPromptTokens`.
 */
export function maximumUsage(request: ModelRequest): { promptTokens: number; completionTokens: number } {
  return { promptTokens: maximumPromptTokens(request), completionTokens: request.maxOutputTokens };
}

function correctUsage(
  request: ModelRequest,
  reported: ModelUsage,
  completion: { minimum: number; estimate: number; estimateWhenMissing: boolean },
): BilledUsage {
  const minimum = { promptTokens: minimumPromptTokens(request), completionTokens: completion.minimum };
  const missing = reported.totalTokens === 0;
  if (missing && !completion.estimateWhenMissing) return { usage: reported };

  const maximumCounts = maximumUsage(request);
  const prompt = correctCount(reported.promptTokens, {
    minimum: minimum.promptTokens,
    maximum: maximumCounts.promptTokens,
    estimate: estimatePromptTokens(request),
    missing,
  });
  const output = correctCount(reported.completionTokens, {
    minimum: minimum.completionTokens,
    maximum: maximumCounts.completionTokens,
    estimate: completion.estimate,
    missing,
  });
  const maximum = { ...maximumCounts, totalTokens: prompt.tokens + maximumCounts.completionTokens };
  const low = prompt.low || output.low;
  const high = prompt.high || output.high || reported.totalTokens > maximum.totalTokens;
  if (!low && !high) return { usage: reported };

  // A total above prompt plus completion stays up to the maximum, as `modelUsage` keeps it.
  const total = Math.min(reported.totalTokens, maximum.totalTokens);
  const usage = {
    promptTokens: prompt.tokens,
    completionTokens: output.tokens,
    totalTokens: Math.max(total, prompt.tokens + output.tokens),
  };
  const reasons: UsageCorrectionReason[] = [];
  if (missing) {
    reasons.push('missing');
  } else {
    if (low) reasons.push('below_minimum');
    if (high) reasons.push('above_maximum');
  }
  return { usage, correction: { reasons, reported, minimum, maximum } };
}

/**
 * Returns the count to settle: the maximum for a count above it, otherwise the estimate for a
 * missing count or one below the minimum, otherwise the count itself. The maximum is checked
 * first, so a count is never both. The estimate is capped at the maximum too, so a response
 * longer than the output cap allows, as a faulty server at the base URL may send, is charged
 * no more than the cap.
 */
function correctCount(
  count: number,
  bounds: { minimum: number; maximum: number; estimate: number; missing: boolean },
): { tokens: number; low: boolean; high: boolean } {
  if (count > bounds.maximum) return { tokens: bounds.maximum, low: false, high: true };
  if (bounds.missing || count < bounds.minimum) {
    return { tokens: Math.min(bounds.estimate, bounds.maximum), low: true, high: false };
  }
  return { tokens: count, low: false, high: false };
}
