import type { Config } from '../config/env.ts';
import type { Provider } from '../db/schema/index.ts';
import { baseUrlSettingNames, createProviderClient } from '../autofix/provider-client.ts';
import { ProviderConnectionError, ProviderError, redactSecrets } from '../llm/errors.ts';
import { providerNames } from '../llm/retry.ts';

/** Upper bound in ms for the key check, which runs while the user waits for the response. */
const keyCheckTimeoutMs = 15_000;

/**
 * Why a key was not saved: the provider rejected it (`rejected`), or the check could not be
 * made because the provider failed, timed out or rate-limited it, or its model list is not
 * under the configured base URL (`unavailable`).
 */
export interface KeyCheckFailure {
  reason: string;
  cause: 'rejected' | 'unavailable';
}

/**
 * Checks a key with the provider's cheapest authenticated call, listing models, against the
 * configured base URL. Returns null when the provider accepts the key, otherwise the reason
 * to show the user, with the key redacted from anything the provider sent back.
 */
export async function checkKeyWithProvider(
  config: Config,
  provider: Provider,
  key: string,
): Promise<KeyCheckFailure | null> {
  const name = providerNames[provider];
  const client = createProviderClient(config, provider, key, {
    maxRetries: 1,
    timeoutMs: Math.min(config.LLM_TIMEOUT_MS, keyCheckTimeoutMs),
  });
  try {
    await client.listModels();
    return null;
  } catch (error) {
    if (!(error instanceof ProviderError)) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`Checking the ${name} key failed: ${redactSecrets(message, [key])}`);
    }
    // A 404 means the model list is not at the configured base URL, which the key cannot fix.
    const unavailable =
      ['rate_limited', 'unavailable', 'timeout'].includes(error.kind) || error.status === 404;
    return {
      reason: redactSecrets(describeCheckFailure(provider, error), [key]),
      cause: unavailable ? 'unavailable' : 'rejected',
    };
  }
}

function describeCheckFailure(provider: Provider, error: ProviderError): string {
  const name = providerNames[provider];
  const status = error.status !== undefined ? `HTTP ${error.status}` : error.kind;
  if (error instanceof ProviderConnectionError) {
    // The message names the address and what to check, which may be the base URL setting, so
    // "try again later" is not the only advice.
    return `The key was not saved. ${error.message}`;
  }
  if (error.status === 404) {
    const setting = baseUrlSettingNames[provider];
    return (
      `Could not check the key with ${name}: its model list was not found (HTTP 404) under the ` +
      `configured base URL, so the operator must check ${setting}. The key was not saved.`
    );
  }
  switch (error.kind) {
    case 'unauthorized':
      return (
        `${name} rejected the key (${status}); check it was copied whole and is still active ` +
        `in your ${name} account, then save it again.`
      );
    case 'rate_limited':
      return `${name} rate-limited the key check (${status}); the key was not saved, so try again in a minute.`;
    case 'unavailable':
    case 'timeout':
      return `Could not check the key with ${name}: ${error.message} The key was not saved; try again later.`;
    default:
      return `Checking the ${name} key failed: ${error.message} The key was not saved.`;
  }
}
