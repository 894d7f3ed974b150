import type { ProviderError } from '../llm/errors.ts';
import {
  estimatePromptTokens,
  estimateTextTokens,
  minimumPromptTokens,
  minimumTextTokens,
} from '../llm/prompt.ts';
import type { ModelRequest, ModelUsage } from '../llm/types.ts';

/**
 * The usage to settle for one response. When the provider's counts are missing or below the
 * minimum, `usage` is an estimate and `correction` contains the reason and the provider's counts.
 */
export type BilledUsage = {
  usage: ModelUsage;
  correction?: {
    reason: 'missing' | 'below_minimum';
    /** The provider's counts, 0 for a missing one or one that is not a count. */
    reported: ModelUsage;
    /** The minimum prompt and completion tokens that the response can plausibly have used. */
    minimum: { promptTokens: number; completionTokens: number };
  };
};

/**
 * Returns the usage to settle for a response whose text the call uses. Counts with a total of
 * 0 are missing, as an OpenAI-compatible proxy may send them. A prompt or completion count
 * below the least that the prompt or the text can take is not a real count. Either is replaced
 * by the estimate that the reservation uses, so a response with false counts costs no less
 * than one without counts.
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

function correctUsage(
  request: ModelRequest,
  reported: ModelUsage,
  completion: { minimum: number; estimate: number; estimateWhenMissing: boolean },
): BilledUsage {
  const minimum = { promptTokens: minimumPromptTokens(request), completionTokens: completion.minimum };
  const missing = reported.totalTokens === 0;
  if (missing && !completion.estimateWhenMissing) return { usage: reported };

  const promptLow = missing || reported.promptTokens < minimum.promptTokens;
  const completionLow = missing || reported.completionTokens < minimum.completionTokens;
  if (!promptLow && !completionLow) return { usage: reported };

  const promptTokens = promptLow ? estimatePromptTokens(request) : reported.promptTokens;
  const completionTokens = completionLow ? completion.estimate : reported.completionTokens;
  const usage = {
    promptTokens,
    completionTokens,
    totalTokens: Math.max(reported.totalTokens, promptTokens + completionTokens),
  };
  return { usage, correction: { reason: missing ? 'missing' : 'below_minimum', reported, minimum } };
}
