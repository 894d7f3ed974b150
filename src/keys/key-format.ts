import type { Provider } from '../db/schema/index.ts';
import { providerNames } from '../llm/retry.ts';

/** Length bounds of a provider key; Groq keys are 56 characters and Google API keys 39. */
export const minKeyLength = 20;
export const maxKeyLength = 256;

/**
 * Trims a pasted key and checks its shape before any provider call. The reason never quotes
 * the key, because it is shown in API responses.
 */
export function checkKeyFormat(
  provider: Provider,
  raw: string,
): { ok: true; key: string } | { ok: false; reason: string } {
  const name = providerNames[provider];
  const key = raw.trim();
  if (key === '') {
    return { ok: false, reason: `The ${name} key is empty; paste the key from your ${name} account.` };
  }
  if (/\s/.test(key)) {
    return {
      ok: false,
      reason: `The ${name} key contains whitespace; paste it as one piece, without spaces or line breaks.`,
    };
  }
  if (!/^[\x21-\x7e]+$/.test(key)) {
    return {
      ok: false,
      reason: `The ${name} key contains characters other than printable ASCII; copy it again from your ${name} account.`,
    };
  }
  if (key.length < minKeyLength || key.length > maxKeyLength) {
    return {
      ok: false,
      reason:
        `The ${name} key is ${key.length} characters long, but provider keys are ` +
        `${minKeyLength} to ${maxKeyLength}; check it was copied whole.`,
    };
  }
  if (provider === 'groq' && key.startsWith('AIza')) {
    return { ok: false, reason: 'This looks like a Google API key; save it as the Gemini key instead.' };
  }
  if (provider === 'gemini' && key.startsWith('gsk_')) {
    return { ok: false, reason: 'This looks like a Groq key; save it as the Groq key instead.' };
  }
  return { ok: true, key };
}
