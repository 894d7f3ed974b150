import { count, eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { estimateFileCalls } from '../../src/autofix/preview-budget.ts';
import { groupFindingsByFile } from '../../src/autofix/preview-files.ts';
import { estimateLeastCallTokens } from '../../src/autofix/preview.ts';
import {
  findings,
  patchFiles,
  patchRequestFindings,
  patchRequests,
  platformKeyRejections,
  userApiKeys,
  users,
  type Provider,
} from '../../src/db/schema/index.ts';
import { encryptUserKey } from '../../src/keys/encryption.ts';
import { mintApiToken } from '../../src/users/api-tokens.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { recordGroqKeyRejection } from '../helpers/platform-key-rejection.ts';
import {
  createRunWithFindings,
  createSignedInUser,
  formBody,
  formHeaders,
  listPatchRequestFindingIds,
  type SignedInUser,
} from '../helpers/web.ts';

type RunSetup = Awaited<ReturnType<typeof createRunWithFindings>>;

/** The message of the built-in console.log rule, which makes each call here over 500 tokens. */
const message = 'A console.log call was added, so remove this debug output or use the logger.';

// The preview processes files with an error first, then warnings, then notices.
const findingsInThreeFiles = [
  { path: 'src/a.ts', line: 2, severity: 'warning' as const, message },
  { path: 'src/a.ts', line: 9, severity: 'notice' as const, message },
  { path: 'src/b.ts', line: 1, severity: 'error' as const, message },
  { path: 'src/c.ts', line: 3, severity: 'notice' as const, message },
];

let context: TestContext;
let app: ReturnType<typeof createApp>;
let nextLogin = 1;

beforeAll(async () => {
  context = await createTestContext({ GROQ_API_KEY: 'gsk_budget_platform_key' });
  app = createApp(context);
});
afterAll(async () => {
  await context?.close();
});

async function newUserWithRun(options: { tokenLimit?: number; tokensUsed?: number } = {}) {
  const user = await createSignedInUser(context.db, { login: `budget-user-${nextLogin++}`, ...options });
  const setup = await createRunWithFindings(context.db, { userId: user.userId, findings: findingsInThreeFiles });
  return { user, setup };
}

async function addOwnKey(userId: string, provider: Provider) {
  const key = `own-${provider}-key-1234`;
  const encrypted = await encryptUserKey(context.keyring, { userId, provider }, key);
  await context.db.insert(userApiKeys).values({ userId, provider, ...encrypted, lastFour: key.slice(-4) });
}

async function markKeysRejected(userId: string) {
  await context.db
    .update(userApiKeys)
    .set({ unusableCause: 'rejected', unusableReason: 'The provider rejected your saved key.' })
    .where(eq(userApiKeys.userId, userId));
}

/** Returns the worker's estimate of each file's call with all of the file's findings. */
function expectedEstimates(setup: RunSetup): Map<string, number> {
  const estimates = new Map<string, number>();
  for (const [path, fileFindings] of groupFindingsByFile(setup.findings)) {
    const fileBytes = setup.findings.find((finding) => finding.path === path)!.fileBytes ?? 0;
    estimates.set(path, estimateLeastCallTokens({ path, findings: fileFindings, fileBytes }));
  }
  return estimates;
}

async function runPage(user: SignedInUser, setup: RunSetup): Promise<string> {
  const response = await app.request(`/runs/${setup.run.id}`, { headers: { cookie: user.cookie } });
  expect(response.status).toBe(200);
  return response.text();
}

/** Returns whether the checkbox of `findingId` is checked in the page. */
function isChecked(html: string, findingId: string): boolean {
  const input = html.match(new RegExp(`<input[^>]*value="${findingId}"[^>]*>`));
  expect(input, `checkbox of ${findingId}`).not.toBeNull();
  return /\schecked(=""|\s|\/?>)/.test(input![0]);
}

function checkedPaths(html: string, setup: RunSetup): string[] {
  const paths = setup.findings.filter((finding) => isChecked(html, finding.id)).map((finding) => finding.path);
  return [...new Set(paths)].sort();
}

function selectedTokens(html: string): string {
  return html.match(/<strong data-selected-tokens="true">([^<]*)<\/strong>/)?.[1] ?? '';
}

/**
 * Returns the text that a browser shows when it ignores the hidden attribute and scripts, as a
 * text browser does: the page without its tags, attributes and scripts.
 */
function visibleText(html: string): string {
  return html.replace(/<script[\s\S]*?<\/script>/g, '').replace(/<[^>]*>/g, '');
}

function postPreview(user: SignedInUser, setup: RunSetup, findingIds: string[], application = app) {
  return application.request(`/runs/${setup.run.id}/patch-requests`, {
    method: 'POST',
    headers: formHeaders(user),
    body: formBody({ _csrf: user.csrfToken, findingIds }),
  });
}

async function countRequests(setup: RunSetup): Promise<number> {
  const [row] = await context.db
    .select({ value: count() })
    .from(patchRequests)
    .where(eq(patchRequests.runId, setup.run.id));
  return row!.value;
}

describe('preview form on the free plan', () => {
  it('shows the estimate of each file', async () => {
    const { user, setup } = await newUserWithRun();
    const html = await runPage(user, setup);
    const estimates = expectedEstimates(setup);
    expect(estimates.size).toBe(3);
    for (const [path, tokens] of estimates) {
      expect(html).toContain(`data-tokens="${tokens}" data-size-known="false"`);
      expect(html).toContain(`· at least ${tokens.toLocaleString('en-US')} tokens`);
      expect(tokens, path).toBeGreaterThan(500);
    }
    expect(html).toContain(
      'Each file shows the minimum reservation of its model call with all of its findings: the ' +
        'prompt estimate, at 4 bytes a token, plus the least output cap that can hold the file.',
    );
  });

  it('checks only the most severe file that fits', async () => {
    const { user, setup } = await newUserWithRun();
    const html = await runPage(user, setup);
    const estimates = expectedEstimates(setup);
    // Any two calls are over 1,000 tokens, so only the file with the error fits.
    expect(estimates.get('src/b.ts')!).toBeLessThanOrEqual(1000);
    expect(estimates.get('src/b.ts')! + estimates.get('src/c.ts')!).toBeGreaterThan(1000);

    expect(checkedPaths(html, setup)).toEqual(['src/b.ts']);
    expect(selectedTokens(html)).toBe(estimates.get('src/b.ts')!.toLocaleString('en-US'));
    expect(html).toContain('<span data-selected-files="true">1 file</span>');
    expect(html).toContain('<span data-selected-estimate="true">at least</span>');
    expect(html).toContain('leaves out the file&#39;s content');
    expect(html).toContain('Your allowance has 1,000 tokens left (1,000 per period on the free plan).');
    expect(html).toContain(
      '3 of 4 findings in 3 files were left unchecked, because with the checked ones their calls ' +
        'would need more than the 1,000 tokens your allowance has left. To preview them, uncheck ' +
        'other findings, wait for the next period,',
    );
    expect(html).toContain('data-remaining="1000"');
  });

  it('checks a later file that still fits', async () => {
    const { user, setup } = await newUserWithRun({ tokenLimit: 1500 });
    const html = await runPage(user, setup);
    const estimates = expectedEstimates(setup);
    // src/a.ts has two findings, so its call is larger than that of src/c.ts.
    const withA = estimates.get('src/b.ts')! + estimates.get('src/a.ts')!;
    const withC = estimates.get('src/b.ts')! + estimates.get('src/c.ts')!;
    expect(withA).toBeLessThanOrEqual(1500);
    expect(withA + estimates.get('src/c.ts')!).toBeGreaterThan(1500);
    expect(withC).toBeLessThan(withA);

    expect(checkedPaths(html, setup)).toEqual(['src/a.ts', 'src/b.ts']);
    expect(selectedTokens(html)).toBe(withA.toLocaleString('en-US'));
    expect(html).toContain('1 of 4 findings in 3 files was left unchecked');
  });

  it('checks the findings of a file that fit', async () => {
    const user = await createSignedInUser(context.db, { login: `budget-user-${nextLogin++}` });
    const setup = await createRunWithFindings(context.db, {
      userId: user.userId,
      findings: [
        { path: 'src/d.ts', line: 5, severity: 'notice' },
        { path: 'src/d.ts', line: 1, severity: 'error' },
      ],
    });
    const [notice, error] = setup.findings;
    const errorAlone = estimateFileCalls([error!])[0]!.tokens;
    await context.db.update(users).set({ tokenLimit: errorAlone }).where(eq(users.id, user.userId));
    expect(estimateFileCalls(setup.findings)[0]!.tokens).toBeGreaterThan(errorAlone);

    const html = await runPage(user, setup);

    expect(isChecked(html, error!.id)).toBe(true);
    expect(isChecked(html, notice!.id)).toBe(false);
    expect(selectedTokens(html)).toBe(errorAlone.toLocaleString('en-US'));
    expect(html).toContain('1 of 2 findings in 1 file was left unchecked');
    const rejected = await postPreview(user, setup, [error!.id, notice!.id]);
    expect(rejected.status).toBe(409);
    const body = await rejected.text();
    expect(body).toContain('but the model call for src/d.ts needs a minimum reservation of at least');
    expect(body).toContain('Or uncheck some findings, because a call with fewer findings needs fewer tokens.');
    expect(body).not.toContain('Or uncheck files');
    const response = await postPreview(user, setup, [error!.id]);
    expect(response.status).toBe(303);
  });

  it('checks nothing when no call fits', async () => {
    const { user, setup } = await newUserWithRun({ tokensUsed: 500 });
    const html = await runPage(user, setup);
    expect(checkedPaths(html, setup)).toEqual([]);
    expect(selectedTokens(html)).toBe('0');
    expect(html).toContain(
      '4 of 4 findings in 3 files were left unchecked, because the call of each one alone would ' +
        'need more than the 500 tokens your allowance has left. To preview them, wait for the ' +
        'next period, move to a larger plan or add your own Groq or Gemini key on the Keys page.',
    );
    expect(html).toContain('Your allowance has 500 tokens left');
  });

  it('rejects a selection over the allowance', async () => {
    const { user, setup } = await newUserWithRun();
    const estimates = expectedEstimates(setup);
    const needed = estimates.get('src/b.ts')! + estimates.get('src/c.ts')!;
    const ids = setup.findings.filter((finding) => finding.path !== 'src/a.ts').map((finding) => finding.id);

    const response = await postPreview(user, setup, ids);
    expect(response.status).toBe(409);
    const body = await response.text();
    expect(body).toContain(
      `so 1000 remain but the selection of 2 files needs minimum reservations of at least ${needed} ` +
        'tokens in all, each call&#39;s prompt estimate plus the least output cap that can hold its file.',
    );
    expect(body).toContain('Or uncheck files until the selection fits.');
    expect(await countRequests(setup)).toBe(0);
    // The run page comes back with the selection as sent, so the user can uncheck files.
    expect(body).not.toContain('Something went wrong');
    expect(checkedPaths(body, setup)).toEqual(['src/b.ts', 'src/c.ts']);
    expect(selectedTokens(body)).toBe(needed.toLocaleString('en-US'));
  });

  it('uses the recorded file sizes', async () => {
    const { user, setup } = await newUserWithRun();
    const sizes: Record<string, number> = { 'src/a.ts': 40, 'src/b.ts': 2000, 'src/c.ts': 20 };
    for (const finding of setup.findings) {
      finding.fileBytes = sizes[finding.path]!;
      await context.db.update(findings).set({ fileBytes: finding.fileBytes }).where(eq(findings.id, finding.id));
    }
    const html = await runPage(user, setup);
    const estimates = expectedEstimates(setup);
    // src/b.ts, processed first, is too large for 1,000 tokens, and src/a.ts leaves too little
    // for src/c.ts.
    expect(estimates.get('src/b.ts')!).toBeGreaterThan(1000);
    expect(estimates.get('src/a.ts')!).toBeLessThanOrEqual(1000);
    expect(estimates.get('src/a.ts')! + estimates.get('src/c.ts')!).toBeGreaterThan(1000);

    for (const [path, tokens] of estimates) {
      expect(html, path).toContain(`data-tokens="${tokens}" data-size-known="true"`);
      expect(html, path).toContain(`· about ${tokens.toLocaleString('en-US')} tokens`);
    }
    expect(checkedPaths(html, setup)).toEqual(['src/a.ts']);
    expect(html).toContain('<span data-selected-estimate="true">about</span>');
    expect(selectedTokens(html)).toBe(estimates.get('src/a.ts')!.toLocaleString('en-US'));
    expect(html).not.toContain('leaves out the file&#39;s content');

    const response = await postPreview(user, setup, setup.findings.map((finding) => finding.id));
    expect(response.status).toBe(409);
    const total = [...estimates.values()].reduce((sum, tokens) => sum + tokens, 0);
    expect(await response.text()).toContain(
      `the selection of 3 files needs minimum reservations of about ${total} tokens in all,`,
    );
  });

  it('shows only the notice that applies without JavaScript', async () => {
    const { user, setup } = await newUserWithRun();
    const ids = setup.findings.filter((finding) => finding.path !== 'src/a.ts').map((finding) => finding.id);
    const nothingChecked = 'No finding is checked';
    const overAllowance = 'The checked findings need more tokens than your allowance has left';

    const defaultPage = visibleText(await runPage(user, setup));
    const overPage = visibleText(await (await postPreview(user, setup, ids)).text());
    const emptyPage = visibleText(await (await postPreview(user, setup, [])).text());

    expect(defaultPage).not.toContain(nothingChecked);
    expect(defaultPage).not.toContain(overAllowance);
    expect(overPage).not.toContain(nothingChecked);
    expect(overPage.split(overAllowance)).toHaveLength(2);
    expect(emptyPage).not.toContain(overAllowance);
    expect(emptyPage.split(nothingChecked)).toHaveLength(2);
    expect(emptyPage).toContain('No finding is checked, so there is nothing to preview.');
  });

  it('accepts the default selection', async () => {
    const { user, setup } = await newUserWithRun();
    const ids = setup.findings.filter((finding) => finding.path === 'src/b.ts').map((finding) => finding.id);
    const response = await postPreview(user, setup, ids);
    expect(response.status).toBe(303);
    expect(await countRequests(setup)).toBe(1);
  });
});

describe('preview form with other payers', () => {
  it('checks every file with an own key', async () => {
    const { user, setup } = await newUserWithRun();
    await addOwnKey(user.userId, 'groq');
    const html = await runPage(user, setup);
    const estimates = expectedEstimates(setup);
    const total = [...estimates.values()].reduce((sum, tokens) => sum + tokens, 0);

    expect(checkedPaths(html, setup)).toEqual(['src/a.ts', 'src/b.ts', 'src/c.ts']);
    expect(selectedTokens(html)).toBe(total.toLocaleString('en-US'));
    expect(html).toContain('Your own Groq key pays for these calls');
    expect(html).not.toContain('left unchecked');
    expect(html).not.toContain('data-remaining=');

    const response = await postPreview(user, setup, setup.findings.map((finding) => finding.id));
    expect(response.status).toBe(303);
  });

  it('names the own key after the platform key', async () => {
    const { user, setup } = await newUserWithRun();
    await addOwnKey(user.userId, 'gemini');
    const html = await runPage(user, setup);
    expect(checkedPaths(html, setup)).toEqual(['src/a.ts', 'src/b.ts', 'src/c.ts']);
    expect(html).toContain('The platform key is used while your allowance lasts and your own Gemini key after that');
  });

  it('limits by the allowance when the own key is unusable', async () => {
    const { user, setup } = await newUserWithRun();
    await addOwnKey(user.userId, 'gemini');
    await markKeysRejected(user.userId);
    const html = await runPage(user, setup);
    expect(checkedPaths(html, setup)).toEqual(['src/b.ts']);
    expect(html).toContain('Your allowance has 1,000 tokens left');
  });

  it('reports when no provider is left', async () => {
    const { user, setup } = await newUserWithRun();
    // The own Groq key takes the place of the platform Groq key, and Gemini has no platform key.
    await addOwnKey(user.userId, 'groq');
    await markKeysRejected(user.userId);
    const html = await runPage(user, setup);
    expect(html).toContain(
      'No model provider is available for previews: you have saved a Groq key, but it is ' +
        'unusable, and previews use no platform key in place of an unusable key of your own. ' +
        'You can replace it with a working key on the keys page. Deleting it there instead lets ' +
        'previews use the platform key, if the operator of this service sets GROQ_API_KEY. ' +
        'Without a provider, &quot;Preview fix&quot; starts no preview.',
    );
    expect(checkedPaths(html, setup)).toEqual(['src/a.ts', 'src/b.ts', 'src/c.ts']);
  });

  it('suggests no larger plan on Enterprise', async () => {
    const { user, setup } = await newUserWithRun({ tokensUsed: 500 });
    await context.db.update(users).set({ plan: 'enterprise' }).where(eq(users.id, user.userId));
    const html = await runPage(user, setup);
    expect(html).toContain('4 of 4 findings in 3 files were left unchecked');
    expect(html).toContain('wait for the next period');
    expect(html).not.toContain('larger plan');

    const response = await postPreview(user, setup, [setup.findings[0]!.id]);
    expect(response.status).toBe(409);
    const message = await response.text();
    expect(message).toContain('Wait for the next period');
    expect(message).not.toContain('larger plan');
    expect(await countRequests(setup)).toBe(0);
  });

  it('checks every file without a token limit', async () => {
    const { user, setup } = await newUserWithRun();
    await context.db
      .update(users)
      .set({ plan: 'enterprise', tokenLimit: -1 })
      .where(eq(users.id, user.userId));
    const html = await runPage(user, setup);
    expect(checkedPaths(html, setup)).toEqual(['src/a.ts', 'src/b.ts', 'src/c.ts']);
    expect(html).toContain('Your plan has no token limit.');
  });
});

async function postApiPreview(user: SignedInUser, setup: RunSetup, findingIds: string[], application = app) {
  const { token } = await mintApiToken(context.db, user.userId, 'tests');
  return application.request(`/api/runs/${setup.run.id}/patch-requests`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ findingIds }),
  });
}

function idsOfFiles(setup: RunSetup, paths: string[]): string[] {
  return setup.findings.filter((finding) => paths.includes(finding.path)).map((finding) => finding.id);
}

describe('POST /api/runs/:runId/patch-requests within the allowance', () => {
  it('rejects all findings over the allowance', async () => {
    const { user, setup } = await newUserWithRun();
    const estimates = expectedEstimates(setup);
    const needed = [...estimates.values()].reduce((sum, tokens) => sum + tokens, 0);

    const response = await postApiPreview(user, setup, setup.findings.map((finding) => finding.id));

    expect(response.status).toBe(409);
    const { error } = (await response.json()) as { error: Record<string, unknown> };
    expect(error.code).toBe('conflict');
    expect(error.neededTokens).toBe(needed);
    expect(error.remainingTokens).toBe(1000);
    expect(error.estimate).toBe('at least');
    expect(error.files).toEqual(
      ['src/b.ts', 'src/a.ts', 'src/c.ts'].map((path) => ({
        path,
        tokens: estimates.get(path),
        sizeKnown: false,
      })),
    );
    expect(error.message).toContain(
      `so 1000 remain but the selection of 3 files needs minimum reservations of at least ${needed} tokens in all,`,
    );
    expect(error.message).toContain('Upgrade to the Pro plan');
    expect(error.message).toContain('add your own Groq or Gemini key');
    expect(error.message).toContain('remove the findings of some files from findingIds');
    expect(await countRequests(setup)).toBe(0);
  });

  it('rejects a selection over the allowance', async () => {
    const { user, setup } = await newUserWithRun();
    const estimates = expectedEstimates(setup);
    const needed = estimates.get('src/b.ts')! + estimates.get('src/c.ts')!;

    const response = await postApiPreview(user, setup, idsOfFiles(setup, ['src/b.ts', 'src/c.ts']));

    expect(response.status).toBe(409);
    const { error } = (await response.json()) as { error: Record<string, unknown> };
    expect(error.neededTokens).toBe(needed);
    expect((error.files as { path: string }[]).map((file) => file.path)).toEqual(['src/b.ts', 'src/c.ts']);
    expect(await countRequests(setup)).toBe(0);
  });

  it('queues a selection that fits', async () => {
    const { user, setup } = await newUserWithRun();
    const ids = idsOfFiles(setup, ['src/b.ts']);

    const response = await postApiPreview(user, setup, ids);

    expect(response.status).toBe(202);
    const body = (await response.json()) as { id: string; status: string };
    expect(body.status).toBe('queued');
    expect(await countRequests(setup)).toBe(1);
    expect(await listPatchRequestFindingIds(context.db, body.id)).toEqual(ids.sort());
  });

  it('uses the recorded file sizes', async () => {
    const { user, setup } = await newUserWithRun({ tokensUsed: 900 });
    for (const finding of setup.findings) {
      finding.fileBytes = 40;
      await context.db.update(findings).set({ fileBytes: 40 }).where(eq(findings.id, finding.id));
    }
    const estimates = expectedEstimates(setup);

    const response = await postApiPreview(user, setup, idsOfFiles(setup, ['src/c.ts']));

    expect(response.status).toBe(409);
    const { error } = (await response.json()) as { error: Record<string, unknown> };
    expect(error.estimate).toBe('about');
    expect(error.remainingTokens).toBe(100);
    // One file with one finding: no smaller selection fits, so no removal is suggested.
    expect(error.message).toBe(
      'Not enough token allowance left: the Free plan allows 1000 tokens per period, 900 are ' +
        `used and 0 are reserved by calls in progress, so 100 remain but the model call for ` +
        `src/c.ts needs a minimum reservation of about ${estimates.get('src/c.ts')} tokens, its ` +
        'prompt estimate plus the least output cap that can hold the file. Upgrade to the Pro ' +
        'plan, wait for the next period, or add your own Groq or Gemini key.',
    );
  });

  it('suggests fewer findings of one file', async () => {
    const user = await createSignedInUser(context.db, { login: `budget-user-${nextLogin++}` });
    const setup = await createRunWithFindings(context.db, {
      userId: user.userId,
      findings: [
        { path: 'src/d.ts', line: 5, severity: 'notice' },
        { path: 'src/d.ts', line: 1, severity: 'error' },
      ],
    });
    const errorAlone = estimateFileCalls([setup.findings[1]!])[0]!.tokens;
    await context.db.update(users).set({ tokenLimit: errorAlone }).where(eq(users.id, user.userId));
    const needed = estimateFileCalls(setup.findings)[0]!.tokens;
    expect(needed).toBeGreaterThan(errorAlone);

    const response = await postApiPreview(user, setup, setup.findings.map((finding) => finding.id));

    expect(response.status).toBe(409);
    const { error } = (await response.json()) as { error: Record<string, unknown> };
    expect(error.neededTokens).toBe(needed);
    expect(error.message).toContain(
      `so ${errorAlone} remain but the model call for src/d.ts needs a minimum reservation of at ` +
        `least ${needed} tokens,`,
    );
    expect(error.message).toMatch(
      / Or remove some findings from findingIds, because a call with fewer findings needs fewer tokens\.$/,
    );
    expect(error.message).not.toContain('selection');
    expect(await countRequests(setup)).toBe(0);
  });

  it('suggests no smaller selection when none fits', async () => {
    const { user, setup } = await newUserWithRun({ tokensUsed: 500 });
    const estimates = expectedEstimates(setup);
    for (const tokens of estimates.values()) expect(tokens).toBeGreaterThan(500);

    const response = await postApiPreview(user, setup, setup.findings.map((finding) => finding.id));

    expect(response.status).toBe(409);
    const { error } = (await response.json()) as { error: Record<string, unknown> };
    const needed = [...estimates.values()].reduce((sum, tokens) => sum + tokens, 0);
    expect(error.message).toContain(
      `so 500 remain but the selection of 3 files needs minimum reservations of at least ${needed} tokens in all,`,
    );
    expect(error.message).toMatch(/add your own Groq or Gemini key\.$/);
    expect(error.message).not.toContain('findingIds');
  });

  it('queues every file with an own key', async () => {
    const { user, setup } = await newUserWithRun();
    await addOwnKey(user.userId, 'groq');
    const ids = setup.findings.map((finding) => finding.id);

    const response = await postApiPreview(user, setup, ids);

    expect(response.status).toBe(202);
    const body = (await response.json()) as { id: string };
    expect(await listPatchRequestFindingIds(context.db, body.id)).toEqual([...ids].sort());
  });
});

/** Inserts a ready preview of src/a.ts with the file's findings and returns its regenerate route. */
async function readyPreviewOfA(user: SignedInUser, setup: RunSetup) {
  const [request] = await context.db
    .insert(patchRequests)
    .values({ runId: setup.run.id, userId: user.userId, status: 'ready', filesTotal: 1, filesDone: 1 })
    .returning();
  const [file] = await context.db
    .insert(patchFiles)
    .values({ patchRequestId: request!.id, path: 'src/a.ts', status: 'ready', diff: '@@ -1 +1 @@\n-a\n+b\n' })
    .returning();
  const ofA = setup.findings.filter((finding) => finding.path === 'src/a.ts');
  await context.db
    .insert(patchRequestFindings)
    .values(ofA.map((finding) => ({ patchRequestId: request!.id, findingId: finding.id })));
  return { file: file!, route: `/patch-requests/${request!.id}/files/${file!.id}/regenerate` };
}

describe('"Regenerate this file" and the allowance', () => {
  function postRegenerate(user: SignedInUser, route: string) {
    return app.request(route, {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken }),
    });
  }

  it('rejects a call over the allowance', async () => {
    const { user, setup } = await newUserWithRun({ tokensUsed: 900 });
    const { file, route } = await readyPreviewOfA(user, setup);
    const needed = expectedEstimates(setup).get('src/a.ts')!;

    const response = await postRegenerate(user, route);

    expect(response.status).toBe(409);
    const body = await response.text();
    expect(body).toContain(
      `so 100 remain but the model call for src/a.ts needs a minimum reservation of at least ${needed} tokens,`,
    );
    expect(body).toContain('The file keeps its current result.');
    const [kept] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
    expect(kept!.status).toBe('ready');
    expect(kept!.diff).toBe(file.diff);
  });

  it('regenerates with an own key', async () => {
    const { user, setup } = await newUserWithRun({ tokensUsed: 900 });
    await addOwnKey(user.userId, 'groq');
    const { file, route } = await readyPreviewOfA(user, setup);

    const response = await postRegenerate(user, route);

    expect(response.status).toBe(303);
    const [reset] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
    expect(reset!.status).toBe('pending');
    expect(reset!.diff).toBeNull();
  });
});

/** Severities of the findings of a large run, in a cycle: one error, then two warnings and two notices. */
const severityCycle = ['error', 'warning', 'warning', 'notice', 'notice'] as const;

/** Creates a run of `count` findings spread over 31 files, as a large pull request has them. */
async function newUserWithLargeRun(count: number, options: { plan: 'pro' | 'enterprise'; tokenLimit: number }) {
  const user = await createSignedInUser(context.db, { login: `budget-user-${nextLogin++}`, ...options });
  const setup = await createRunWithFindings(context.db, {
    userId: user.userId,
    findings: Array.from({ length: count }, (_, index) => ({
      path: `src/file-${String(index % 31).padStart(2, '0')}.ts`,
      line: index + 1,
      severity: severityCycle[index % severityCycle.length],
    })),
  });
  return { user, setup };
}

/** Returns the ids of the checked findings of the page, in page order. */
function checkedIds(html: string): string[] {
  const inputs = html.match(/<input[^>]*name="findingIds"[^>]*>/g) ?? [];
  return inputs
    .filter((input) => /\schecked(=""|\s|\/?>)/.test(input))
    .map((input) => /value="([^"]+)"/.exec(input)![1]!);
}

function countSeverities(setup: RunSetup, ids: readonly string[]): Record<string, number> {
  const picked = new Set(ids);
  const counts: Record<string, number> = { error: 0, warning: 0, notice: 0 };
  for (const finding of setup.findings) if (picked.has(finding.id)) counts[finding.severity]! += 1;
  return counts;
}

describe('preview form past 1,000 findings', () => {
  it('checks the 1,000 most severe without a token limit', async () => {
    const { user, setup } = await newUserWithLargeRun(2700, { plan: 'enterprise', tokenLimit: -1 });
    const html = await runPage(user, setup);

    const checked = checkedIds(html);
    expect(checked).toHaveLength(1000);
    // 540 errors and 1,080 warnings: all errors, then the warnings of the first files.
    expect(countSeverities(setup, checked)).toEqual({ error: 540, warning: 460, notice: 0 });
    expect(html).toContain(
      'A preview takes at most 1,000 findings, so only the first 1,000, the most severe first, ' +
        'are checked. The other 1,700 are unchecked. To preview them, start another preview ' +
        'with them checked in place of these.',
    );
    expect(html).toContain('data-max-findings="1000"');
    // Hidden, the notice has no text, which public/app.js fills in from data-text.
    expect(html).toMatch(/<p class="error" data-too-many-findings="true" data-text="More than 1,000 [^"]*" hidden=""><\/p>/);
  });

  it('submits the default selection without JavaScript', async () => {
    const { user, setup } = await newUserWithLargeRun(2700, { plan: 'enterprise', tokenLimit: -1 });
    const checked = checkedIds(await runPage(user, setup));

    const response = await postPreview(user, setup, checked);

    expect(response.status).toBe(303);
    const location = response.headers.get('location')!;
    expect(location).toMatch(/^\/patch-requests\/[0-9a-f-]{36}$/);
    const patchRequestId = location.split('/').at(-1)!;
    expect(await listPatchRequestFindingIds(context.db, patchRequestId)).toEqual([...checked].sort());
  });

  it('submits the default selection with htmx', async () => {
    const { user, setup } = await newUserWithLargeRun(1200, { plan: 'enterprise', tokenLimit: -1 });
    const checked = checkedIds(await runPage(user, setup));
    expect(checked).toHaveLength(1000);

    const response = await app.request(`/runs/${setup.run.id}/patch-requests`, {
      method: 'POST',
      headers: formHeaders(user, { 'hx-request': 'true' }),
      body: formBody({ _csrf: user.csrfToken, findingIds: checked }),
    });

    expect(response.status).toBe(200);
    expect(await response.text()).toContain('data-status="queued"');
    expect(await countRequests(setup)).toBe(1);
  });

  it('checks at most 1,000 of those that fit the allowance', async () => {
    const { user, setup } = await newUserWithLargeRun(2700, { plan: 'pro', tokenLimit: 100_000 });
    const estimates = estimateFileCalls(setup.findings);
    const all = estimates.reduce((sum, call) => sum + call.tokens, 0);
    // Every finding but the notices of the last file fits, which is more than 1,000.
    const lastFile = estimates.at(-1)!.path;
    const withoutLastNotices = setup.findings.filter(
      (finding) => finding.path !== lastFile || finding.severity !== 'notice',
    );
    const remaining = estimateFileCalls(withoutLastNotices).reduce((sum, call) => sum + call.tokens, 0);
    expect(remaining).toBeLessThan(all);
    await context.db.update(users).set({ tokenLimit: remaining }).where(eq(users.id, user.userId));
    const html = await runPage(user, setup);

    const checked = checkedIds(html);
    expect(checked).toHaveLength(1000);
    const lastFileNotices = setup.findings.filter(
      (finding) => finding.path === lastFile && finding.severity === 'notice',
    ).length;
    const overLimit = setup.findings.length - lastFileNotices - 1000;
    expect(html).toContain(
      `A preview takes at most 1,000 findings, so only the first 1,000, the most severe first, ` +
        `are checked. ${overLimit.toLocaleString('en-US')} more findings fit your allowance ` +
        'together with them but are unchecked.',
    );
    expect(html).toContain(
      `${lastFileNotices} of 2,700 findings in 31 files were left unchecked, because together ` +
        `with the checked ones and the ${overLimit.toLocaleString('en-US')} more that fit, their ` +
        `calls would need more than the ${remaining.toLocaleString('en-US')} tokens your ` +
        'allowance has left.',
    );

    const response = await postPreview(user, setup, checked);
    expect(response.status).toBe(303);
    expect(await countRequests(setup)).toBe(1);
  });

  it('rejects more than 1,000 findings with the reason', async () => {
    const { user, setup } = await newUserWithLargeRun(1200, { plan: 'enterprise', tokenLimit: -1 });
    const ids = setup.findings.slice(0, 1001).map((finding) => finding.id);

    const response = await postPreview(user, setup, ids);

    expect(response.status).toBe(400);
    const body = await response.text();
    expect(body).toContain(
      '1,001 findings are checked, but a preview takes at most 1,000. Uncheck 1 of them and ' +
        'press &quot;Preview fix&quot; again, and preview the others in another preview.',
    );
    // The page keeps the sent selection and shows why it cannot be sent as it is.
    expect(checkedIds(body)).toHaveLength(1001);
    expect(body).toMatch(
      /<p class="error" data-too-many-findings="true" data-text="[^"]*">More than 1,000 findings are checked, but a preview takes at most 1,000/,
    );
    expect(await countRequests(setup)).toBe(0);
  });

  it('rejects more than 1,000 findings through the API', async () => {
    const { user, setup } = await newUserWithLargeRun(1200, { plan: 'enterprise', tokenLimit: -1 });
    const ids = setup.findings.slice(0, 1001).map((finding) => finding.id);

    const response = await postApiPreview(user, setup, ids);

    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: { message: string; fields: string[] } };
    expect(error.fields).toEqual(['findingIds']);
    expect(error.message).toMatch(/^Invalid findingIds \[.*: expected at most 1000 items\.$/);
    expect(await countRequests(setup)).toBe(0);
  });
});

describe('preview start with a rejected platform key', () => {
  const rejectionMessage =
    'Groq rejected the platform Groq key that this service provides (HTTP 401), so no preview was ' +
    'started. The operator of this service has to replace the platform Groq key. Until then, you ' +
    'can save a key of your own on the keys page.';

  const rejectPlatformKey = (due = false) => recordGroqKeyRejection(context.db, 'gsk_budget_platform_key', due);

  afterEach(async () => {
    await context.db.delete(platformKeyRejections);
  });

  it('returns 503 from the API', async () => {
    // Over the allowance too, so the rejection must come before the allowance's 409.
    const { user, setup } = await newUserWithRun({ tokensUsed: 1000 });
    await rejectPlatformKey();

    const response = await postApiPreview(user, setup, idsOfFiles(setup, ['src/b.ts']));

    expect(response.status).toBe(503);
    const { error } = (await response.json()) as { error: Record<string, unknown> };
    expect(error.code).toBe('service_unavailable');
    expect(error.message).toBe(rejectionMessage);
    expect(error.provider).toBe('groq');
    expect(error.status).toBe(401);
    expect(await countRequests(setup)).toBe(0);
  });

  it('returns 503 from the form', async () => {
    const { user, setup } = await newUserWithRun();
    await rejectPlatformKey();

    const response = await postPreview(user, setup, idsOfFiles(setup, ['src/b.ts']));

    const body = await response.text();
    expect(response.status).toBe(503);
    expect(body).toContain(rejectionMessage.replace("'", '&#39;'));
    expect(await countRequests(setup)).toBe(0);
  });

  it('keeps a file on regenerate', async () => {
    const { user, setup } = await newUserWithRun();
    const { file, route } = await readyPreviewOfA(user, setup);
    await rejectPlatformKey();

    const response = await app.request(route, {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken }),
    });

    expect(response.status).toBe(503);
    expect(await response.text()).toContain(
      rejectionMessage
        .replace('so no preview was started', 'so the file was not regenerated and keeps its current result')
        .replace("'", '&#39;'),
    );
    const [kept] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
    expect(kept!.status).toBe('ready');
    expect(kept!.diff).toBe(file.diff);
  });

  it('queues a preview when a re-check is due', async () => {
    const { user, setup } = await newUserWithRun();
    await rejectPlatformKey(true);

    const response = await postApiPreview(user, setup, idsOfFiles(setup, ['src/b.ts']));

    expect(response.status).toBe(202);
    expect(await countRequests(setup)).toBe(1);
  });

  it('queues a preview with an own key', async () => {
    const { user, setup } = await newUserWithRun();
    await addOwnKey(user.userId, 'gemini');
    await rejectPlatformKey();

    const response = await postApiPreview(user, setup, idsOfFiles(setup, ['src/b.ts']));

    expect(response.status).toBe(202);
    expect(await countRequests(setup)).toBe(1);
  });
});

describe('preview start without a model provider', () => {
  const noProviderMessage =
    'No model provider is available for previews: this service has no platform key (neither ' +
    'GROQ_API_KEY nor GEMINI_API_KEY is set), and you have no Groq or Gemini key of your own. ' +
    'You can save your own Groq or Gemini key on the keys page, or the operator of this service ' +
    'can set GROQ_API_KEY or GEMINI_API_KEY. No preview was started.';

  // The same database, as a process started without GROQ_API_KEY and GEMINI_API_KEY.
  const withoutPlatformKeys = () =>
    createApp({ ...context, config: { ...context.config, GROQ_API_KEY: undefined, GEMINI_API_KEY: undefined } });

  async function usageOf(userId: string) {
    const [user] = await context.db
      .select({ tokensUsed: users.tokensUsed, tokensReserved: users.tokensReserved })
      .from(users)
      .where(eq(users.id, userId));
    return user!;
  }

  it('returns 503 from the API', async () => {
    // Over the allowance too, so the missing provider must come before the allowance's 409.
    const { user, setup } = await newUserWithRun({ tokensUsed: 1000 });

    const response = await postApiPreview(user, setup, idsOfFiles(setup, ['src/b.ts']), withoutPlatformKeys());

    expect(response.status).toBe(503);
    const { error } = (await response.json()) as { error: Record<string, unknown> };
    expect(error.code).toBe('not_configured');
    expect(error.message).toBe(noProviderMessage);
    expect(error.unusableOwnKeys).toEqual([]);
    expect(await countRequests(setup)).toBe(0);
    expect(await usageOf(user.userId)).toEqual({ tokensUsed: 1000, tokensReserved: 0 });
  });

  it('returns 503 from the form', async () => {
    const { user, setup } = await newUserWithRun();
    const application = withoutPlatformKeys();

    const page = await application.request(`/runs/${setup.run.id}`, { headers: { cookie: user.cookie } });
    const response = await postPreview(user, setup, idsOfFiles(setup, ['src/b.ts']), application);

    expect(await page.text()).toContain('No model provider is available for previews');
    const body = await response.text();
    expect(response.status).toBe(503);
    expect(body).toContain(noProviderMessage);
    expect(await countRequests(setup)).toBe(0);
    expect(await usageOf(user.userId)).toEqual({ tokensUsed: 0, tokensReserved: 0 });
  });

  it('returns 503 to htmx', async () => {
    const { user, setup } = await newUserWithRun();
    const application = withoutPlatformKeys();

    const response = await application.request(`/runs/${setup.run.id}/patch-requests`, {
      method: 'POST',
      headers: { ...formHeaders(user), 'hx-request': 'true' },
      body: formBody({ _csrf: user.csrfToken, findingIds: idsOfFiles(setup, ['src/b.ts']) }),
    });

    expect(response.status).toBe(503);
    expect(await response.text()).toContain(noProviderMessage);
    expect(await countRequests(setup)).toBe(0);
  });

  it('keeps a file on regenerate', async () => {
    const { user, setup } = await newUserWithRun();
    const { file, route } = await readyPreviewOfA(user, setup);

    const response = await withoutPlatformKeys().request(route, {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken }),
    });

    expect(response.status).toBe(503);
    expect(await response.text()).toContain(
      noProviderMessage.replace(
        'No preview was started.',
        'The file was not regenerated and keeps its current result.',
      ),
    );
    const [kept] = await context.db.select().from(patchFiles).where(eq(patchFiles.id, file.id));
    expect(kept!.status).toBe('ready');
    expect(kept!.diff).toBe(file.diff);
  });

  it('answers 404 for an unknown preview', async () => {
    const { user } = await newUserWithRun();
    const route =
      '/patch-requests/00000000-0000-4000-8000-000000000000/files/00000000-0000-4000-8000-000000000001/regenerate';

    const response = await withoutPlatformKeys().request(route, {
      method: 'POST',
      headers: formHeaders(user),
      body: formBody({ _csrf: user.csrfToken }),
    });

    expect(response.status).toBe(404);
  });

  it('queues a preview with an own key', async () => {
    const { user, setup } = await newUserWithRun();
    await addOwnKey(user.userId, 'gemini');

    const response = await postApiPreview(user, setup, idsOfFiles(setup, ['src/b.ts']), withoutPlatformKeys());

    expect(response.status).toBe(202);
    expect(await countRequests(setup)).toBe(1);
    expect(await usageOf(user.userId)).toEqual({ tokensUsed: 0, tokensReserved: 0 });
  });
});
