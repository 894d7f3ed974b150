import { createHash } from 'node:crypto';
import type { Database } from '../db/client.ts';
import { isDatabaseUnreachable } from '../db/connection-errors.ts';
import { retryWhileUnreachable } from '../db/retry-unreachable.ts';
import type { KeySource } from '../db/schema/index.ts';
import { toSafeError } from '../errors/safe-error.ts';
import { ProviderError } from '../llm/errors.ts';
import { estimatePromptTokens } from '../llm/prompt.ts';
import { callerAbortError } from '../llm/retry.ts';
import type { BilledRetry, ModelClient, ModelRequest, ModelResult, ModelUsage } from '../llm/types.ts';
import type { Logger } from '../logger.ts';
import {
  describeExhausted,
  describeMinimumReservation,
  describeReservation,
  releaseReservation,
  reserveTokens,
  settleCall,
  type SettleInput,
} from '../usage/allowance.ts';
import { billFailedResponse, billHold, billResponse, type BilledUsage } from './billed-usage.ts';

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
  /**
   * Time in milliseconds since the epoch until which a settle that fails because the database
   * is unreachable is retried, such as the end of the job's time limit. Without it, such a
   * settle fails at once.
   */
  settleRetryUntil?: number;
  /**
   * Minimum output cap that can hold the file. With it, a call on a platform key reserves the
   * prompt estimate plus an output cap between this one and the request's. The request then goes
   * out with the output cap that the granted tokens leave after the prompt estimate. Without it,
   * the call reserves the request's cap or fails.
   */
  minimumOutputTokens?: number;
  /** Receives the settled total of every call, accepted or not. */
  onUsage?: (totalTokens: number) => void;
  /**
   * Logger for the warnings about a response whose token counts are missing, too low or too
   * high, and about settles that wait for the database or fail.
   */
  logger?: Logger;
}

/**
 * Wraps a model client so each call reserves its estimated cost first and settles the
 * provider-reported usage afterwards, or an estimate where the counts are missing or below
 * what the prompt and output can take, and the maximum where they are above what the request
 * allows (see billResponse). With `minimumOutputTokens`, a call on a platform key reserves a
 * range and sends the output cap that the granted tokens leave after the prompt estimate.
 * Calls on the user's own key reserve nothing and are recorded the same way with charged
 * tokens 0. A failed call without usage releases its reservation.
 *
 * A request that the provider billed but the client retries, such as a response that could
 * not be read, is settled before the retry under its own idempotency key (the call's key with
 * `:request-N`). The retry then reserves the prompt estimate and the same output cap again, and
 * when that does not fit, the call ends with AllowanceExceededError.
 *
 * When checking the counts of a response throws, the call is settled with its hold (see
 * `billHold`) and `model.usage_check_failed` is logged, so a check that fails never leaves a
 * call that the provider billed unsettled.
 *
 * A settle that fails because the database is unreachable is retried until `settleRetryUntil`
 * or until the call's signal aborts. The ledger's unique idempotency key makes a repeated
 * settle charge nothing. A settle that fails for good is logged as `usage.settle_failed` with
 * the key and the token counts, so that an operator can reconcile the ledger with the
 * provider's bill, and its error is thrown. Its hold is released at once, unless the database
 * is unreachable, and then the hold expires.
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

  const callIds = (model: string) => ({
    provider: client.provider,
    model,
    userId: options.userId,
    patchRequestId: options.patchRequestId,
    keySource: options.keySource,
  });

  /**
   * Returns `bill()`, or the call's hold when `bill` throws, such as on text that the checks
   * cannot handle. The provider has responded by then, so the call must still be settled.
   */
  const billOrHold = (
    request: ModelRequest,
    reported: ModelUsage,
    model: string,
    bill: () => BilledUsage,
  ): BilledUsage => {
    try {
      return bill();
    } catch (error) {
      const billed = billHold(request, reported);
      options.logger?.error(
        {
          event: 'model.usage_check_failed',
          ...callIds(model),
          reportedPromptTokens: reported.promptTokens,
          reportedCompletionTokens: reported.completionTokens,
          reportedTotalTokens: reported.totalTokens,
          settledTokens: billed.usage.totalTokens,
          err: toSafeError(error),
        },
        'checking the token counts of a model response failed; settled the prompt estimate ' +
          'plus the output cap',
      );
      return billed;
    }
  };

  const settle = async (
    reservationId: string | null,
    billed: BilledUsage,
    model: string,
    signal: AbortSignal | undefined,
    key = idempotencyKey,
  ): Promise<void> => {
    const { usage, correction } = billed;
    if (correction) logUsageCorrection(options.logger, callIds(model), usage, correction);
    await settleWithRetries(
      {
        userId: options.userId,
        reservationId,
        idempotencyKey: key,
        provider: client.provider,
        model: client.model,
        keySource: options.keySource,
        usage,
        reportedUsage: correction?.reported ?? billed.unchecked?.reported ?? null,
        patchRequestId: options.patchRequestId,
        path: options.path,
      },
      signal,
    ).catch(async (error: unknown) => {
      await releaseUnsettled(reservationId, error);
      throw error;
    });
    options.onUsage?.(usage.totalTokens);
  };

  /**
   * Releases the hold of a call whose settle failed, so that the user gets it back now and not
   * at its expiry. A database that the settle could not reach would fail the release as well.
   */
  const releaseUnsettled = async (reservationId: string | null, settleError: unknown): Promise<void> => {
    if (reservationId === null || isDatabaseUnreachable(settleError)) return;
    try {
      await releaseReservation(options.db, reservationId);
    } catch (error) {
      options.logger?.error(
        {
          event: 'usage.release_failed',
          reservationId,
          userId: options.userId,
          patchRequestId: options.patchRequestId,
          err: toSafeError(error),
        },
        'releasing the hold of a model call whose settle failed also failed; the hold is ' +
          'released when it expires',
      );
    }
  };

  const settleWithRetries = async (
    input: SettleInput,
    signal: AbortSignal | undefined,
  ): Promise<void> => {
    const call = {
      idempotencyKey: input.idempotencyKey,
      provider: input.provider,
      model: input.model,
      keySource: input.keySource,
      userId: input.userId,
      patchRequestId: options.patchRequestId,
      promptTokens: input.usage.promptTokens,
      completionTokens: input.usage.completionTokens,
      totalTokens: input.usage.totalTokens,
    };
    const retryUntil = options.settleRetryUntil;
    try {
      await retryWhileUnreachable(() => settleCall(options.db, input), {
        retryUntil,
        signal,
        onRetry: (error, retry) => {
          if (retry > 1) return;
          options.logger?.warn(
            {
              event: 'usage.settle_retrying',
              ...call,
              retryUntil: retryUntil === undefined ? undefined : new Date(retryUntil).toISOString(),
              err: toSafeError(error),
            },
            'settling a model call failed because the database is unreachable; retrying',
          );
        },
      });
    } catch (error) {
      options.logger?.error(
        { event: 'usage.settle_failed', ...call, err: toSafeError(error) },
        'settling a model call failed, so the provider billed a call that the ledger does not ' +
          'show; this line has its idempotency key and token counts for reconciliation',
      );
      throw error;
    }
  };

  return {
    provider: client.provider,
    model: client.model,
    listModels: () => client.listModels(),
    async generate(requested: ModelRequest, callOptions) {
      // Reserving for a call that is aborted already would only hold tokens until the release.
      if (callOptions?.signal?.aborted) throw callerAbortError(client.provider);
      let request = requested;
      const promptTokens = estimatePromptTokens(request);
      // Reserves for the request's output cap, or for a cap down to `leastCap` when that is
      // all that fits, and returns the reservation with the output cap it leaves.
      const reserve = async (leastCap: number) => {
        const maxCap = request.maxOutputTokens;
        const reservation = await reserveTokens(options.db, {
          userId: options.userId,
          tokens: promptTokens + maxCap,
          minimumTokens: promptTokens + leastCap,
          idempotencyKey,
          ttlSeconds: options.reservationTtlSeconds,
        });
        if (reservation.ok) {
          const outputCap = reservation.tokens - promptTokens;
          return { reservationId: reservation.reservationId, outputCap };
        }
        const subject = `the model call for ${options.path}`;
        const need =
          leastCap < maxCap
            ? describeMinimumReservation(subject, promptTokens + leastCap, 'about')
            : describeReservation(subject, promptTokens + maxCap, { promptTokens, outputCap: maxCap });
        throw new AllowanceExceededError(describeExhausted(reservation, need));
      };

      let reservationId: string | null = null;
      if (options.keySource === 'platform') {
        const maxCap = request.maxOutputTokens;
        const reservation = await reserve(Math.min(options.minimumOutputTokens ?? maxCap, maxCap));
        reservationId = reservation.reservationId;
        request = { ...request, maxOutputTokens: reservation.outputCap };
      }

      const onBilledRetry = async (retry: BilledRetry): Promise<void> => {
        const billed = billOrHold(request, retry.usage, client.model, () =>
          billFailedResponse(request, retry.usage, 'unavailable'),
        );
        await settle(
          reservationId,
          billed,
          client.model,
          callOptions?.signal,
          `${idempotencyKey}:request-${retry.request}`,
        );
        reservationId = null;
        if (options.keySource === 'platform') {
          // The retry sends the same request, so it reserves the cap that the request went out with.
          reservationId = (await reserve(request.maxOutputTokens)).reservationId;
        }
        await callOptions?.onBilledRetry?.(retry);
      };

      let result: ModelResult;
      try {
        result = await client.generate(request, { ...callOptions, onBilledRetry });
      } catch (error) {
        if (error instanceof ProviderError && error.usage) {
          const usage = error.usage;
          const billed = billOrHold(request, usage, client.model, () =>
            billFailedResponse(request, usage, error.kind),
          );
          await settle(reservationId, billed, client.model, callOptions?.signal);
        } else if (reservationId) {
          await releaseReservation(options.db, reservationId);
        }
        throw error;
      }
      const billed = billOrHold(request, result.usage, result.model, () =>
        billResponse(request, result.usage, result.text),
      );
      await settle(reservationId, billed, result.model, callOptions?.signal);
      return result;
    },
  };
}

/** Logs one warning for each reason why the settled usage differs from the provider's counts. */
function logUsageCorrection(
  logger: Logger | undefined,
  ids: Record<string, string>,
  usage: BilledUsage['usage'],
  correction: NonNullable<BilledUsage['correction']>,
): void {
  const { reasons, reported, minimum, maximum } = correction;
  const reportedCounts = {
    reportedPromptTokens: reported.promptTokens,
    reportedCompletionTokens: reported.completionTokens,
    reportedTotalTokens: reported.totalTokens,
  };
  if (reasons.includes('missing')) {
    logger?.warn(
      { event: 'model.usage_missing', ...ids, estimatedTokens: usage.totalTokens },
      'model response has no token usage; settled an estimate',
    );
  }
  if (reasons.includes('below_minimum')) {
    logger?.warn(
      {
        event: 'model.usage_below_minimum',
        ...ids,
        ...reportedCounts,
        minimumPromptTokens: minimum.promptTokens,
        minimumCompletionTokens: minimum.completionTokens,
        estimatedTokens: usage.totalTokens,
      },
      'model response reports fewer tokens than its prompt or output can take; settled an estimate',
    );
  }
  if (reasons.includes('above_maximum')) {
    logger?.warn(
      {
        event: 'model.usage_above_maximum',
        ...ids,
        ...reportedCounts,
        maximumPromptTokens: maximum.promptTokens,
        maximumCompletionTokens: maximum.completionTokens,
        maximumTotalTokens: maximum.totalTokens,
        settledTokens: usage.totalTokens,
      },
      'model response reports more tokens than its prompt and output cap allow; settled the maximum',
    );
  }
}
