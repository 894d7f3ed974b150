import type { KeySource } from '../db/schema/index.ts';
import { passedOverKeysNotice, type PassedOverKey } from '../keys/own-keys.ts';
import type { ProviderError } from '../llm/errors.ts';
import { generateWithFallback } from '../llm/fallback.ts';
import type { ModelRequest, ModelResult } from '../llm/types.ts';
import { AllowanceExceededError } from './metered-client.ts';
import type { KeyedClient } from './model-clients.ts';
import { StoredKeyChangedError } from './own-key-client.ts';

/**
 * Runs the fallback chain and returns the result with the file's `keyNotice`. Own-key clients
 * always come after the platform ones (see chooseKeys). A key that the provider rejects,
 * platform or own, passes the request on only when the next client uses the user's own key. So
 * a platform key never gets a request that an own key failed, which would charge the allowance
 * unasked. An own key that the user deleted while the preview ran is passed over the same way. A
 * platform client whose reservation fails raises AllowanceExceededError, which stops the chain,
 * and then the own-key clients, still untried, get the request on their own.
 * A platform client skips a key that the provider rejected before (see guardPlatformKey), and
 * the skip counts as a rejection here.
 */
export async function generateOwnKeysLast(
  clients: KeyedClient[],
  request: ModelRequest,
  options: { signal?: AbortSignal | undefined },
): Promise<{ result: ModelResult; keyNotice: string | null }> {
  const passedOver: PassedOverKey[] = [];
  const generate = (entries: KeyedClient[]) =>
    generateWithFallback(
      entries.map((entry) => entry.client),
      request,
      {
        signal: options.signal,
        onAttempt: (attempt) => {
          const error = attempt.error;
          if (error?.kind !== 'unauthorized') return;
          const index = entries.findIndex((entry) => entry.client.provider === error.provider);
          passedOver.push(describePassedOver(error, entries[index]?.keySource ?? 'user'));
        },
        passRejectedKey: (index) => entries[index + 1]?.keySource === 'user',
      },
    );
  let result: ModelResult;
  try {
    result = await generate(clients);
  } catch (error) {
    const own = clients.filter((entry) => entry.keySource === 'user');
    if (!(error instanceof AllowanceExceededError) || own.length === 0) throw error;
    result = await generate(own);
  }
  const keyNotice = passedOver.length > 0 ? passedOverKeysNotice(passedOver, result.provider) : null;
  return { result, keyNotice };
}

/** Describes the key of a client whose call failed with an `unauthorized` error. */
function describePassedOver(error: ProviderError, keySource: KeySource): PassedOverKey {
  const { provider } = error;
  if (error instanceof StoredKeyChangedError) {
    switch (error.change) {
      case 'deleted':
        return { provider, keySource: 'user', cause: 'deleted' };
      case 'rejected':
        return { provider, keySource: 'user', cause: 'rejected' };
      case 'unusable':
        return { provider, keySource: 'user', cause: 'unusable', reason: error.message };
    }
  }
  return { provider, keySource, cause: 'rejected', status: error.status };
}
