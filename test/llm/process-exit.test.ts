import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeGemini, type FakeGemini } from '../../src/demo/fakes/gemini.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { runTsxScript } from '../helpers/process.ts';

const repositoryRoot = path.resolve(import.meta.dirname, '../..');
const moduleUrl = (relative: string) => pathToFileURL(path.join(repositoryRoot, relative)).href;

/**
 * Script for a child process: one successful call per provider with a 60 s timeout, then one
 * call per provider that times out after 200 ms. A timer left behind by either call would
 * keep the child alive for up to 60 s after its last line.
 */
const childScript = `
import { createGeminiClient } from '${moduleUrl('src/llm/gemini.ts')}';
import { createGroqClient } from '${moduleUrl('src/llm/groq.ts')}';

const [groqUrl, geminiUrl] = process.argv.slice(2);
const request = { system: 'Return the file.', user: 'x = 1', maxOutputTokens: 64 };
const groqOptions = {
  apiKey: 'gsk_TESTONLY0000000000000000000000000000000000000000000000',
  baseUrl: groqUrl,
  model: 'llama-3.3-70b-versatile',
  maxRetries: 0,
};
const geminiOptions = {
  apiKey: 'AIzaTESTONLY00000000000000000000000000',
  baseUrl: geminiUrl,
  model: 'gemini-2.5-flash',
  maxRetries: 0,
};

const groq = createGroqClient({ ...groqOptions, timeoutMs: 60_000 });
const gemini = createGeminiClient({ ...geminiOptions, timeoutMs: 60_000 });
const groqAnswer = await groq.generate(request);
const geminiAnswer = await gemini.generate(request);

const kindOf = (promise) => promise.then(() => 'succeeded', (error) => error.kind);
const groqShort = createGroqClient({ ...groqOptions, timeoutMs: 200 });
const geminiShort = createGeminiClient({ ...geminiOptions, timeoutMs: 200 });
const groqTimeout = await kindOf(groqShort.generate(request));
const geminiTimeout = await kindOf(geminiShort.generate(request));

const summary = { groq: groqAnswer.text, gemini: geminiAnswer.text, groqTimeout, geminiTimeout };
console.log(JSON.stringify(summary));
`;

describe('process exit after model calls', () => {
  let groq: FakeGroq;
  let gemini: FakeGemini;
  let folder: string;

  beforeAll(async () => {
    groq = await startFakeGroq();
    gemini = await startFakeGemini();
    folder = await mkdtemp(path.join(os.tmpdir(), 'fixwright-llm-exit-'));
  });

  afterAll(async () => {
    await groq.close();
    await gemini.close();
    await rm(folder, { recursive: true, force: true });
  });

  it('exits promptly after calls and timeouts', async () => {
    groq.enqueue({ text: 'groq answer' }, { text: 'late', delayMs: 5000 });
    gemini.enqueue({ text: 'gemini answer' }, { text: 'late', delayMs: 5000 });
    const scriptPath = path.join(folder, 'calls.mts');
    await writeFile(scriptPath, childScript);

    const env = { ...process.env };
    delete env.GROQ_API_KEY;
    delete env.GROQ_BASE_URL;
    const outcome = await runTsxScript(scriptPath, [groq.url, gemini.url], {
      killAfterMs: 25_000,
      env,
    });

    expect(outcome.stderr).toBe('');
    expect(outcome.code).toBe(0);
    expect(JSON.parse(outcome.stdout)).toEqual({
      groq: 'groq answer',
      gemini: 'gemini answer',
      groqTimeout: 'timeout',
      geminiTimeout: 'timeout',
    });
    // Startup with tsx takes about a second; a leaked 60 s timer would take far longer.
    expect(outcome.elapsedMs).toBeLessThan(10_000);
    expect(groq.requests).toHaveLength(2);
    expect(gemini.requests).toHaveLength(2);
  });
});
