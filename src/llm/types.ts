/** Model providers that Fixwright can send fix requests to. */
export type Provider = 'groq' | 'gemini';

/** Display name of each provider, for messages. */
export const providerNames: Record<Provider, string> = { groq: 'Groq', gemini: 'Gemini' };

/** One request for a single completion: the instructions, the data and the output limit. */
export type ModelRequest = {
  system: string;
  user: string;
  /** Maximum number of tokens the model may generate, thinking tokens included for Gemini. */
  maxOutputTokens: number;
};

/** Token counts as the provider reported them. */
export type ModelUsage = {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
};

/** A completed response with the provider's finish reason and token usage. */
export type ModelResult = {
  provider: Provider;
  model: string;
  text: string;
  /** The provider's own finish reason, for example `stop` (Groq) or `STOP` (Gemini). */
  finishReason: string;
  usage: ModelUsage;
};

/** A failed request of one `generate` call that the provider billed and the client retries. */
export type BilledRetry = {
  usage: ModelUsage;
  /** Number of the failed request within the call, from 1. */
  request: number;
};

/** Options of one `generate` call. */
export type GenerateOptions = {
  signal?: AbortSignal;
  /**
   * Called before the client retries a request whose response the provider billed but the
   * client could not use, such as one that could not be read. A rejection stops the retries
   * and is raised to the caller. The usage of the request that ends the call is on its result
   * or error instead.
   */
  onBilledRetry?: (retry: BilledRetry) => Promise<void>;
};

/** A provider client bound to one API key and one model. */
export type ModelClient = {
  provider: Provider;
  model: string;
  /**
   * Sends the request and returns the response. Rejects with a ProviderError for every failure
   * that the provider or the network caused, including an abort through `options.signal`.
   */
  generate(request: ModelRequest, options?: GenerateOptions): Promise<ModelResult>;
  /** Returns the ids of the models that the key can use for text generation. */
  listModels(): Promise<string[]>;
};
