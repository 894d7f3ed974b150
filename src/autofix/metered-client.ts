import { createHash } from 'node:crypto';
import type { Database } from '../db/client.ts';
import type { KeySource } from '../db/schema/index.ts';
import { ProviderError } from '../llm/errors.ts';
import { estimatePromptTokens, estimateTextTokens } from '../llm/prompt.ts';
import { callerAbortError } from '../llm/retry.ts';
import type { BilledRetry, ModelClient, ModelRequest, ModelResult, ModelUsage } from '../llm/types.ts';
import type { Logger } from '../logger.ts';
import { releaseReservation, reserveTokens, settleCall } from '../usage/allowance.ts';

/** Raised when the user's allowance cannot cover a call; the message states what to do. */
export class AllowanceExceededError extends Error {
  override name = 'AllowanceExceededError';
}

export interface MeterOptions {
  db: Database;
  userId: string;
  keySource: KeySource;
  patchRequestId: string;
  path: string;
  /** Job attempt number; part of each call's idempotency key. */
  attempt: number;
  /** The file's regeneration count; part of each call's idempotency key. */
  generation: number;
  reservationTtlSeconds: number;
  /** Receives the provider-reported total of every call, accepted or not. */
  onUsage?: (totalTokens: number) => void;
  /** Logger for the warning about a response without token counts. */
  logger?: Logger;
}

/**
 * Returns an estimate of a response's usage when the provider reported a total of 0, else null.
 * Such a response had no usage block, as an OpenAI-compatible proxy may send it, and settling
 * 0 would make the call free. The estimate is the prompt estimate plus `completionTokens`.
 */
function estimateMissingUsage(
  request: ModelRequest,
  usage: ModelUsage,
  completionTokens: number,
): ModelUsage | null {
  if (usage.totalTokens > 0) return null;
  const promptTokens = estimatePromptTokens(request);
  return { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens };
}

/**
 * Returns the output tokens to estimate for a failed call whose response came without usage:
 * the output cap for a cut-off response, 0 for an empty one, and null for other failures.
 */
function failedCompletionTokens(request: ModelRequest, error: ProviderError): number | null {
  if (error.kind === 'truncated') return request.maxOutputTokens;
  if (error.kind === 'empty') return 0;
  // NOTE: a blocked response without counts settles 0 tokens, because whether the providers
  // bill a blocked prompt is unverified.
  return null;
}

/**
 * Wraps a model client so each call reserves its estimated cost first and settles the
 * provider-reported usage afterwards. Calls on the user's own key reserve nothing and are
 * recorded with charged tokens 0. A failed call without usage releases its reservation.
 *
 * A request that the provider billed but the client retries, such as a response that could
 * not be read, is settled before the retry under its own idempotency key (the call's key with
 * `:request-N`). The retry then reserves again, and when that does not fit, the call ends with
 * AllowanceExceededError.
 */
export function meterClient(client: ModelClient, options: MeterOptions): ModelClient {
  // The key contains the path's SHA-256, because a git path can be longer than the ledger's
  // unique index accepts (about 2,700 bytes). A path such as `a:attempt-0:b` would also match
  // the pattern with which releaseAttemptReservations finds the holds of attempt 0.
  const idempotencyKey = [
    options.patchRequestId,
    createHash('sha256').update(options.path).digest('hex'),
    `generation-${options.generation}`,
    `attempt-${options.attempt}`,
    client.provider,
  ].join(':');

  const settle = async (
    reservationId: string | null,
    usage: ModelResult['usage'],
    key = idempotencyKey,
  ): Promise<void> => {
    await settleCall(options.db, {
      userId: options.userId,
      reservationId,
      idempotencyKey: key,
      provider: client.provider,
      model: client.model,
      keySource: options.keySource,
      usage,
      patchRequestId: options.patchRequestId,
      path: options.path,
    });
    options.onUsage?.(usage.totalTokens);
  };

  const logMissingUsage = (estimate: ModelUsage, model: string): void => {
    options.logger?.warn(
      {
        event: 'model.usage_missing',
        provider: client.provider,
        model,
        patchRequestId: options.patchRequestId,
        estimatedTokens: estimate.totalTokens,
      },
      'model response has no token usage; charged an estimate',
    );
  };

  return {
    provider: client.provider,
    model: client.model,
    listModels: () => client.listModels(),
    async generate(request: ModelRequest, callOptions) {
      // Reserving for a call that is aborted already would only hold tokens until the release.
      if (callOptions?.signal?.aborted) throw callerAbortError(client.provider);
      const reserve = async (): Promise<string | null> => {
        if (options.keySource !== 'platform') return null;
        const estimate = estimatePromptTokens(request) + request.maxOutputTokens;
        const reservation = await reserveTokens(options.db, {
          userId: options.userId,
          tokens: estimate,
          idempotencyKey,
          ttlSeconds: options.reservationTtlSeconds,
        });
        if (!reservation.ok) throw new AllowanceExceededError(reservation.reason);
        return reservation.reservationId;
      };
      let reservationId = await reserve();

      const onBilledRetry = async (retry: BilledRetry): Promise<void> => {
        await settle(reservationId, retry.usage, `${idempotencyKey}:request-${retry.request}`);
        reservationId = null;
        reservationId = await reserve();
        await callOptions?.onBilledRetry?.(retry);
      };

      let result: ModelResult;
      try {
        result = await client.generate(request, { ...callOptions, onBilledRetry });
      } catch (error) {
        if (error instanceof ProviderError && error.usage) {
          const completionTokens = failedCompletionTokens(request, error);
          const estimate =
            completionTokens === null
              ? null
              : estimateMissingUsage(request, error.usage, completionTokens);
          if (estimate) logMissingUsage(estimate, client.model);
          await settle(reservationId, estimate ?? error.usage);
        } else if (reservationId) {
          await releaseReservation(options.db, reservationId);
        }
        throw error;
      }
      const estimate = estimateMissingUsage(request, result.usage, estimateTextTokens(result.text));
      if (estimate) logMissingUsage(estimate, result.model);
      await settle(reservationId, estimate ?? result.usage);
      return result;
    },
  };
}
