import { and, eq } from 'drizzle-orm';
import { runPreview } from '../../src/autofix/preview.ts';
import { patchFiles, patchRequests, tokenEvents, userApiKeys, users, type Provider } from '../../src/db/schema/index.ts';
import { encryptUserKey } from '../../src/keys/encryption.ts';
import type { Keyring } from '../../src/keys/master-keys.ts';
import type { FakeGemini } from '../../src/demo/fakes/gemini.ts';
import type { FakeGroq } from '../../src/demo/fakes/groq.ts';
import type { TestContext } from './context.ts';
import { createPatchRequestForRun } from './preview-context.ts';

/** Stores `key` as the user's own key of `provider`, encrypted under `keyring`. */
export async function storeOwnKey(
  context: TestContext,
  owner: { userId: string; provider: Provider },
  key: string,
  keyring: Keyring = context.keyring,
): Promise<void> {
  const encrypted = await encryptUserKey(keyring, owner, key);
  await context.db.insert(userApiKeys).values({ ...owner, ...encrypted, lastFour: key.slice(-4) });
}

/** Returns the user's stored key row of `provider`, or undefined when none is stored. */
export async function findOwnKey(context: TestContext, userId: string, provider: Provider) {
  const [row] = await context.db
    .select()
    .from(userApiKeys)
    .where(and(eq(userApiKeys.userId, userId), eq(userApiKeys.provider, provider)));
  return row;
}

/**
 * Runs a preview of every finding of run `runId` for the user, and returns its outcome, its files
 * by path, the request and its ledger rows in the order they were written. `appContext` is the
 * context of a process started with other settings.
 */
export async function previewForUser(
  context: TestContext,
  input: { runId: string; userId: string },
  appContext: TestContext = context,
) {
  const patchRequestId = await createPatchRequestForRun(context, input.runId, input.userId);
  const outcome = await runPreview(appContext, patchRequestId, 0, context.logger);
  const files = await context.db
    .select()
    .from(patchFiles)
    .where(eq(patchFiles.patchRequestId, patchRequestId))
    .orderBy(patchFiles.path);
  const [request] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, patchRequestId));
  const ledger = await context.db
    .select()
    .from(tokenEvents)
    .where(eq(tokenEvents.patchRequestId, patchRequestId))
    .orderBy(tokenEvents.createdAt);
  return { outcome, files, request: request!, ledger };
}

/** Returns the user's used and reserved allowance tokens. */
export async function readAllowance(context: TestContext, userId: string) {
  const [user] = await context.db.select().from(users).where(eq(users.id, userId));
  return { used: user!.tokensUsed, reserved: user!.tokensReserved };
}

/** Returns the chat completion requests that the fake Groq received. */
export function groqCompletions(groq: FakeGroq) {
  return groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
}

/** Returns the generateContent requests that the fake Gemini received. */
export function geminiGenerations(gemini: FakeGemini) {
  return gemini.requests.filter((request) => request.path.includes(':generateContent'));
}
