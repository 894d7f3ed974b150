import { describe, expect, it } from 'vitest';
import { ProviderConnectionError } from '../../src/llm/errors.ts';
import { createGeminiClient } from '../../src/llm/gemini.ts';
import { createGroqClient } from '../../src/llm/groq.ts';
import type { ModelClient, ModelRequest } from '../../src/llm/types.ts';
import { closedPortUrl, expectProviderError, startResetServer } from '../helpers/model-clients.ts';

const request: ModelRequest = {
  system: 'Return the file.',
  user: '<file path="a.ts">\nconst a = 1;\n</file>',
  maxOutputTokens: 512,
};

const clientOptions = { maxRetries: 0, timeoutMs: 5000 };

function groqClient(baseUrl: string, baseUrlSetting?: string): ModelClient {
  return createGroqClient({
    apiKey: 'gsk_TESTONLY0000000000000000000000000000000000000000000000',
    baseUrl,
    model: 'llama-3.3-70b-versatile',
    ...clientOptions,
    ...(baseUrlSetting ? { baseUrlSetting } : {}),
  });
}

function geminiClient(baseUrl: string, baseUrlSetting?: string): ModelClient {
  return createGeminiClient({
    apiKey: 'AIzaTESTONLY00000000000000000000000000',
    baseUrl,
    model: 'gemini-2.5-flash',
    ...clientOptions,
    ...(baseUrlSetting ? { baseUrlSetting } : {}),
  });
}

const providers = [
  { name: 'Groq', setting: 'GROQ_BASE_URL', client: groqClient },
  { name: 'Gemini', setting: 'GEMINI_BASE_URL', client: geminiClient },
] as const;

describe('provider connection errors', () => {
  it.each(providers)('$name names the base URL setting', async ({ name, setting, client }) => {
    const { url, port } = await closedPortUrl();

    const error = await expectProviderError(client(url, setting).listModels());

    expect(error).toBeInstanceOf(ProviderConnectionError);
    expect(error.kind).toBe('unavailable');
    expect(error.status).toBeUndefined();
    expect(error.message).toBe(
      `Could not connect to ${name} at ${url} (connect ECONNREFUSED 127.0.0.1:${port}). ` +
        `${setting} sets this address, so the operator should check that it is right and ` +
        'that the server it names is running.',
    );
    expect((error as ProviderConnectionError).baseUrlSetting).toBe(setting);
  });

  it.each(providers)('$name without a setting suggests the network', async ({ name, client }) => {
    const { url, port } = await closedPortUrl();

    const error = await expectProviderError(client(url).listModels());

    expect(error.message).toBe(
      `Could not connect to ${name} at ${url} (connect ECONNREFUSED 127.0.0.1:${port}). Check ` +
        'that the Fixwright server can reach this address through the network. If it can, ' +
        `${name} may be down, so try again later.`,
    );
    expect((error as ProviderConnectionError).baseUrlSetting).toBeUndefined();
  });

  it('words generate failures alike', async () => {
    const { url, port } = await closedPortUrl();
    const advice = 'sets this address, so the operator should check that it is right and that the server it names is running.';

    const groq = await expectProviderError(groqClient(url, 'GROQ_BASE_URL').generate(request));
    const gemini = await expectProviderError(geminiClient(url, 'GEMINI_BASE_URL').generate(request));

    expect(groq).toBeInstanceOf(ProviderConnectionError);
    expect(gemini).toBeInstanceOf(ProviderConnectionError);
    expect(groq.message).toBe(
      `Could not connect to Groq at ${url} (connect ECONNREFUSED 127.0.0.1:${port}). GROQ_BASE_URL ${advice}`,
    );
    expect(gemini.message).toBe(
      `Could not connect to Gemini at ${url} (connect ECONNREFUSED 127.0.0.1:${port}). GEMINI_BASE_URL ${advice}`,
    );
  });

  it('words generate resets alike', async () => {
    const server = await startResetServer();
    const advice = 'sets this address, so the operator should check that it is right and that the server it names is running.';

    try {
      const groq = await expectProviderError(groqClient(server.url, 'GROQ_BASE_URL').generate(request));
      const gemini = await expectProviderError(geminiClient(server.url, 'GEMINI_BASE_URL').generate(request));

      expect(groq).toBeInstanceOf(ProviderConnectionError);
      expect(gemini).toBeInstanceOf(ProviderConnectionError);
      expect(groq.message).toBe(`Could not connect to Groq at ${server.url} (read ECONNRESET). GROQ_BASE_URL ${advice}`);
      expect(gemini.message).toBe(
        `Could not connect to Gemini at ${server.url} (read ECONNRESET). GEMINI_BASE_URL ${advice}`,
      );
    } finally {
      await server.close();
    }
  });

  it('keeps concurrent Gemini causes apart', async () => {
    const closedPort = await closedPortUrl();
    const server = await startResetServer();

    try {
      const [first, second] = await Promise.all([
        expectProviderError(geminiClient(closedPort.url).generate(request)),
        expectProviderError(geminiClient(server.url).generate(request)),
      ]);

      expect(first.message).toContain(`(connect ECONNREFUSED 127.0.0.1:${closedPort.port})`);
      expect(second.message).toContain('(read ECONNRESET)');
    } finally {
      await server.close();
    }
  });
});
