import type { Config } from '../config/env.ts';
import type { Provider } from '../db/schema/index.ts';
import { createGeminiClient } from '../llm/gemini.ts';
import { createGroqClient } from '../llm/groq.ts';
import type { ModelClient } from '../llm/types.ts';

/** The environment variable that sets each provider's base URL. */
export const baseUrlSettingNames: Record<Provider, string> = {
  groq: 'GROQ_BASE_URL',
  gemini: 'GEMINI_BASE_URL',
};

/** The environment variable that sets each provider's platform key. */
export const platformKeySettingNames: Record<Provider, string> = {
  groq: 'GROQ_API_KEY',
  gemini: 'GEMINI_API_KEY',
};

/** Returns the variable that set `provider`'s base URL, or undefined when the default is used. */
export function baseUrlSetting(config: Config, provider: Provider): string | undefined {
  return config.baseUrlsSet[provider] ? baseUrlSettingNames[provider] : undefined;
}

/** Creates the client of `provider` with `apiKey`, the configured base URL and model. */
export function createProviderClient(
  config: Config,
  provider: Provider,
  apiKey: string,
  limits: { maxRetries?: number; timeoutMs?: number } = {},
): ModelClient {
  const setting = baseUrlSetting(config, provider);
  const common = {
    apiKey,
    maxRetries: limits.maxRetries ?? config.LLM_MAX_RETRIES,
    timeoutMs: limits.timeoutMs ?? config.LLM_TIMEOUT_MS,
    ...(setting ? { baseUrlSetting: setting } : {}),
  };
  if (provider === 'groq') {
    return createGroqClient({ ...common, baseUrl: config.GROQ_BASE_URL, model: config.GROQ_MODEL });
  }
  return createGeminiClient({
    ...common,
    baseUrl: config.GEMINI_BASE_URL,
    model: config.GEMINI_MODEL,
  });
}

/** Returns the platform key of `provider` from the configuration, if one is set. */
export function platformKey(config: Config, provider: Provider): string | undefined {
  return provider === 'groq' ? config.GROQ_API_KEY : config.GEMINI_API_KEY;
}
