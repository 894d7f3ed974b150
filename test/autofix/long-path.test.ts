import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPreview } from '../../src/autofix/preview.ts';
import { findings, patchFiles, tokenEvents, users } from '../../src/db/schema/index.ts';
import type { TestContext } from '../helpers/context.ts';
import {
  createPatchRequestForRun,
  createPreviewTestContext,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

// Twelve directory levels of 240 random characters: about 2,900 bytes, more than a btree
// index entry holds, and random text is not compressed below that. Linux allows 255 bytes a
// name and 4,096 a path, and git has no limit of its own.
const longPath = [
  ...Array.from({ length: 11 }, () => randomBytes(120).toString('hex')),
  `${randomBytes(116).toString('hex')}.ts`,
].join('/');
const original = "export const a = 1;\nconsole.log('a', a);\n";
const fixed = 'export const a = 1;\n';

let setup: PreviewTestContext;
let context: TestContext;

beforeAll(async () => {
  setup = await createPreviewTestContext({
    head: { [longPath]: original },
    groqApiKey: 'gsk_platform_long_path_test',
  });
  context = setup.context;
  setup.groq.setHandler(() => ({ text: fixed }));
  // The analysis stores a hash as the fingerprint, not the path.
  await context.db.insert(findings).values({
    runId: setup.runId,
    path: longPath,
    startLine: 2,
    endLine: 2,
    ruleId: 'debug/console-log',
    severity: 'warning',
    message: 'Remove the console.log call.',
    fingerprint: 'fp-long-path',
  });
});

afterAll(async () => {
  await setup?.close();
});

describe('runPreview', () => {
  it('previews a file with a very long path', async () => {
    const [owner] = await context.db
      .insert(users)
      .values({ login: 'long-path-user', plan: 'pro', tokenLimit: 100_000 })
      .returning();
    const patchRequestId = await createPatchRequestForRun(context, setup.runId, owner!.id);

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);

    expect(outcome.status).toBe('ready');
    const files = await context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, patchRequestId));
    expect(files.map((file) => [file.path, file.status, file.proposedText])).toEqual([
      [longPath, 'ready', fixed],
    ]);
    const ledger = await context.db
      .select()
      .from(tokenEvents)
      .where(eq(tokenEvents.patchRequestId, patchRequestId));
    expect(ledger.map((event) => event.path)).toEqual([longPath]);
  });
});
