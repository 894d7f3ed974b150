import { providers, type Provider } from '../db/schema/index.ts';
import { joinWithAnd, pickForm } from '../text/plural.ts';
import { quoteValue } from '../text/quote-value.ts';

/** Maximum length, in characters, of a quoted provider or order entry in a message. */
const maxQuotedLength = 40;

/** Returns the value as a Provider, or null when it names none. */
export function parseProvider(value: unknown): Provider | null {
  return providers.find((provider) => provider === value) ?? null;
}

/** Builds the error sentence for a value that is not a provider name. */
export function describeUnknownProvider(value: unknown): string {
  return `Unknown provider ${quoteValue(value, maxQuotedLength)}: use ${providers.join(' or ')}.`;
}

/**
 * Checks that `value` lists every provider exactly once; returns the order or the reason it
 * is invalid.
 */
export function parseProviderOrder(
  value: unknown,
): { ok: true; order: Provider[] } | { ok: false; reason: string } {
  const expected = `a list of ${providers.map((provider) => `"${provider}"`).join(' and ')} in any order, each once`;
  if (!Array.isArray(value)) {
    return { ok: false, reason: `Invalid provider order: expected ${expected}.` };
  }
  const order: Provider[] = [];
  for (const [index, entry] of value.entries()) {
    const provider = parseProvider(entry);
    if (!provider) {
      const quoted = quoteValue(entry, maxQuotedLength);
      return { ok: false, reason: `Invalid order[${index}] ${quoted}: expected ${expected}.` };
    }
    if (order.includes(provider)) {
      return { ok: false, reason: `Invalid provider order: "${provider}" appears twice; expected ${expected}.` };
    }
    order.push(provider);
  }
  const missing = providers.filter((provider) => !order.includes(provider));
  if (missing.length > 0) {
    const names = joinWithAnd(missing.map((provider) => `"${provider}"`));
    const verb = pickForm(missing.length, 'is', 'are');
    return { ok: false, reason: `Invalid provider order: ${names} ${verb} missing; expected ${expected}.` };
  }
  return { ok: true, order };
}

/**
 * Repairs a stored order: unknown names are dropped and providers it lacks (added in a later
 * release) are appended in the default order.
 */
export function normalizeProviderOrder(stored: readonly string[]): Provider[] {
  const order: Provider[] = [];
  for (const entry of stored) {
    const provider = parseProvider(entry);
    if (provider && !order.includes(provider)) order.push(provider);
  }
  for (const provider of providers) {
    if (!order.includes(provider)) order.push(provider);
  }
  return order;
}
