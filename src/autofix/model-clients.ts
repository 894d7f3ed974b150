import type { Config } from '../config/env.ts';
import type { KeySource } from '../db/schema/index.ts';
import { createGeminiClient } from '../llm/gemini.ts';
import { createGroqClient } from '../llm/groq.ts';
import type { ModelClient } from '../llm/types.ts';

export interface KeyedClient {
  client: ModelClient;
  keySource: KeySource;
}

/**
 * Returns the clients to try for a user, in order: Groq first, then Gemini. Each uses the
 * platform key from the configuration; providers without a key are left out.
 */
export function resolveModelClients(config: Config, _user: { id: string }): KeyedClient[] {
  const common = { maxRetries: config.LLM_MAX_RETRIES, timeoutMs: config.LLM_TIMEOUT_MS };
  const clients: KeyedClient[] = [];
  if (config.GROQ_API_KEY) {
    clients.push({
      keySource: 'platform',
      client: createGroqClient({
        apiKey: config.GROQ_API_KEY,
        baseUrl: config.GROQ_BASE_URL,
        model: config.GROQ_MODEL,
        ...common,
      }),
    });
  }
  if (config.GEMINI_API_KEY) {
    clients.push({
      keySource: 'platform',
      client: createGeminiClient({
        apiKey: config.GEMINI_API_KEY,
        baseUrl: config.GEMINI_BASE_URL,
        model: config.GEMINI_MODEL,
        ...common,
      }),
    });
  }
  return clients;
}
