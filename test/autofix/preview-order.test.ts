import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPreview } from '../../src/autofix/preview.ts';
import { findings, users } from '../../src/db/schema/index.ts';
import {
  answerWithFixedFiles,
  createPatchRequestForRun,
  createPreviewTestContext,
  pathInPrompt,
  type PreviewTestContext,
} from '../helpers/preview-context.ts';

const files = {
  'src/a.ts': "export const a = 1;\nconsole.log('a', a);\n",
  'src/b.ts': "export const b = 2;\nconsole.log('b', b);\n",
  'src/c.ts': "export const c = 3;\nconsole.log('c', c);\n",
};
const fixed = {
  'src/a.ts': 'export const a = 1;\n',
  'src/b.ts': 'export const b = 2;\n',
  'src/c.ts': 'export const c = 3;\n',
};
const severities = { 'src/a.ts': 'warning', 'src/b.ts': 'error', 'src/c.ts': 'notice' } as const;

let setup: PreviewTestContext;

beforeAll(async () => {
  setup = await createPreviewTestContext({ head: files, groqApiKey: 'gsk_platform_order_test' });
  await setup.context.db.insert(findings).values(
    Object.entries(severities).map(([path, severity]) => ({
      runId: setup.runId,
      path,
      startLine: 2,
      endLine: 2,
      ruleId: 'debug/console-log',
      severity,
      message: 'Remove the console.log call.',
      fingerprint: `fp-${path}`,
    })),
  );
});

afterAll(async () => {
  await setup?.close();
});

describe('preview file order', () => {
  it('calls the model for the most severe file first', async () => {
    const { context, groq, gemini } = setup;
    answerWithFixedFiles(fixed, groq, gemini);
    // 10,000 tokens are below 3 files at the full output cap, so the files run one at a time.
    const [owner] = await context.db
      .insert(users)
      .values({ login: 'order-user', tokenLimit: 10_000 })
      .returning();
    const patchRequestId = await createPatchRequestForRun(context, setup.runId, owner!.id);

    const outcome = await runPreview(context, patchRequestId, 0, context.logger);
    expect(outcome.status).toBe('ready');
    const paths = groq.requests.map((request) => {
      const body = request.body as { messages: { content: string }[] };
      return pathInPrompt(body.messages.at(-1)!.content);
    });
    expect(paths).toEqual(['src/b.ts', 'src/a.ts', 'src/c.ts']);
  });
});
