import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { users, type Provider } from '../../src/db/schema/index.ts';
import type { FakeGemini } from '../../src/demo/fakes/gemini.ts';
import type { FakeGroq } from '../../src/demo/fakes/groq.ts';
import { deleteUserKey, saveUserKey } from '../../src/keys/user-keys.ts';
import type { TestContext } from '../helpers/context.ts';
import {
  findOwnKey,
  geminiGenerations,
  groqCompletions,
  previewForUser,
  readAllowance,
  storeOwnKey,
} from '../helpers/own-key-preview.ts';
import {
  consoleLogFiles,
  consoleLogFixes,
  createPreviewTestContext,
  insertConsoleLogFindings,
  pathInPrompt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';
import { keyForms } from './key-check-server.ts';

const platformGroqKey = 'gsk_platformKeyChangeTest0123456789abcd';
const platformGeminiKey = 'AIzaPlatformKeyChangeTest0123456789abcd';
/** Milliseconds that the first file's reply waits, while the test deletes or replaces a key. */
const firstReplyDelayMs = 400;

let setup: PreviewTestContext;
let context: TestContext;
let groq: FakeGroq;
let gemini: FakeGemini;
let runId: string;
/** Every own key the tests used, scanned for in the logs at the end. */
const ownKeys: string[] = [];

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: consoleLogFiles,
    groqApiKey: platformGroqKey,
    geminiApiKey: platformGeminiKey,
    // One file at a time, so that a key changed during the first file's call is changed before
    // the second file's call starts.
    env: { PREVIEW_FILE_CONCURRENCY: '1' },
  });
  ({ context, groq, gemini, runId } = setup);
  await insertConsoleLogFindings(context, runId, Object.keys(consoleLogFiles));
});

afterAll(async () => {
  await setup?.close();
});

beforeEach(() => {
  groq.reset();
  gemini.reset();
});

function newKey(provider: Provider, name: string): string {
  const key = provider === 'groq' ? `gsk_${name}KeyChange0000abcdefghijklmnop` : `AIza${name}KeyChange0000abcdefghijklmnop`;
  ownKeys.push(key);
  return key;
}

async function newUser(providerOrder: Provider[] = ['groq', 'gemini']) {
  const [user] = await context.db
    .insert(users)
    .values({ login: `key-change-${Math.random().toString(36).slice(2, 9)}`, tokenLimit: 100_000, providerOrder })
    .returning();
  return user!;
}

const storeKey = (userId: string, provider: Provider, key: string) =>
  storeOwnKey(context, { userId, provider }, key);
const storedKey = (userId: string, provider: Provider) => findOwnKey(context, userId, provider);
const preview = (userId: string) => previewForUser(context, { runId, userId });
const allowanceOf = (userId: string) => readAllowance(context, userId);

/**
 * Answers every file prompt with its fix, and runs `change` when the first prompt arrives. The
 * first reply waits `firstReplyDelayMs`, so that call is in flight while `change` commits.
 * Returns a function that returns the milliseconds from the first prompt to the end of
 * `change`, or null before it has ended.
 */
function changeDuringFirstCall(change: () => Promise<unknown>): () => number | null {
  let elapsedMs: number | null = null;
  let started = false;
  const answer = (text: string) => {
    const reply = { text: consoleLogFixes[pathInPrompt(text)]! };
    if (started) return reply;
    started = true;
    const startedAt = performance.now();
    void change().then(() => {
      elapsedMs = performance.now() - startedAt;
    });
    return { ...reply, delayMs: firstReplyDelayMs };
  };
  groq.setHandler((request) => answer(request.messages.at(-1)!.content));
  gemini.setHandler((request) => answer(request.userText));
  return () => elapsedMs;
}

const completions = () => groqCompletions(groq);
const generations = () => geminiGenerations(gemini);

describe('own keys changed during a preview', () => {
  it('passes a key deleted between files to the next own key', async () => {
    const user = await newUser();
    const groqKey = newKey('groq', 'deleted');
    const geminiKey = newKey('gemini', 'next');
    await storeKey(user.id, 'groq', groqKey);
    await storeKey(user.id, 'gemini', geminiKey);
    const changeMs = changeDuringFirstCall(() => deleteUserKey(context.db, { userId: user.id, provider: 'groq' }));
    const result = await preview(user.id);

    // The change committed while the first call waited for its reply, so before the second call.
    expect(changeMs()).toBeLessThan(firstReplyDelayMs);
    expect(result.outcome.status).toBe('ready');
    // The call in flight when the key was deleted finished with it.
    const [first, second] = result.files;
    expect([first!.path, first!.status, first!.provider, first!.keyNotice]).toEqual(['src/a.ts', 'ready', 'groq', null]);
    expect([second!.path, second!.status, second!.provider]).toEqual(['src/b.ts', 'ready', 'gemini']);
    expect(second!.keyNotice).toBe(
      'Your saved Groq key was deleted while this preview ran, so this file used your own Gemini ' +
        'key, the next in your provider order, and not the platform key.',
    );
    expect(completions().map((request) => request.headers.authorization)).toEqual([`Bearer ${groqKey}`]);
    expect(generations().map((request) => request.headers['x-goog-api-key'])).toEqual([geminiKey]);
    expect(result.ledger.map((event) => [event.provider, event.keySource, event.chargedTokens])).toEqual([
      ['groq', 'user', 0],
      ['gemini', 'user', 0],
    ]);
    expect(await allowanceOf(user.id)).toEqual({ used: 0, reserved: 0 });
    expect(await storedKey(user.id, 'groq')).toBeUndefined();
  });

  it('fails the next file when its only own key is deleted', async () => {
    const user = await newUser();
    const groqKey = newKey('groq', 'only');
    await storeKey(user.id, 'groq', groqKey);
    const changeMs = changeDuringFirstCall(() => deleteUserKey(context.db, { userId: user.id, provider: 'groq' }));
    const result = await preview(user.id);

    expect(changeMs()).toBeLessThan(firstReplyDelayMs);
    expect(result.outcome.status).toBe('partially_ready');
    const [first, second] = result.files;
    expect([first!.status, first!.provider]).toEqual(['ready', 'groq']);
    expect(second!.status).toBe('failed');
    expect(second!.error).toBe(
      'Your saved Groq key was deleted while this preview ran, so this file was not sent with it, ' +
        'and the platform key was not used instead. Regenerate the file to preview it with the ' +
        'keys you have now.',
    );
    expect(completions().map((request) => request.apiKey)).toEqual([groqKey]);
    // Neither platform key gets the file whose own key was deleted.
    expect(groq.requests.some((request) => request.apiKey === platformGroqKey)).toBe(false);
    expect(gemini.requests).toHaveLength(0);
    expect(result.ledger.map((event) => [event.provider, event.keySource])).toEqual([['groq', 'user']]);
    expect(await allowanceOf(user.id)).toEqual({ used: 0, reserved: 0 });
    const logged = context.logs.filter(
      (line) => line.event === 'user_key.deleted_during_preview' && line.userId === user.id,
    );
    expect(logged.map((line) => line.provider)).toEqual(['groq']);
  });

  it('uses a key replaced between files', async () => {
    const user = await newUser(['gemini', 'groq']);
    const oldKey = newKey('gemini', 'old');
    const newGeminiKey = newKey('gemini', 'new');
    await storeKey(user.id, 'gemini', oldKey);
    const before = await storedKey(user.id, 'gemini');
    let saved: Awaited<ReturnType<typeof saveUserKey>> | undefined;
    const changeMs = changeDuringFirstCall(async () => {
      saved = await saveUserKey(context, { userId: user.id, provider: 'gemini', key: newGeminiKey });
    });
    const result = await preview(user.id);

    expect(changeMs()).toBeLessThan(firstReplyDelayMs);
    expect(saved?.ok).toBe(true);
    expect(result.outcome.status).toBe('ready');
    for (const file of result.files) {
      expect(file.status).toBe('ready');
      expect(file.provider).toBe('gemini');
      expect(file.keyNotice).toBeNull();
    }
    expect(generations().map((request) => request.headers['x-goog-api-key'])).toEqual([oldKey, newGeminiKey]);
    expect(completions()).toHaveLength(0);
    expect(result.ledger.map((event) => [event.provider, event.keySource, event.chargedTokens])).toEqual([
      ['gemini', 'user', 0],
      ['gemini', 'user', 0],
    ]);
    expect(await allowanceOf(user.id)).toEqual({ used: 0, reserved: 0 });
    const after = await storedKey(user.id, 'gemini');
    expect(after!.nonce).not.toBe(before!.nonce);
    expect(after!.lastFour).toBe(newGeminiKey.slice(-4));
    expect(after!.lastUsedAt).toBeInstanceOf(Date);
    const reloaded = context.logs.filter((line) => line.event === 'user_key.reloaded' && line.userId === user.id);
    expect(reloaded.map((line) => line.provider)).toEqual(['gemini']);
  });

  it('keeps own keys out of logs', () => {
    const logText = JSON.stringify(context.logs);
    for (const key of ownKeys) {
      for (const form of keyForms(key)) expect(logText).not.toContain(form);
    }
  });
});
