import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchFiles, patchRequests, prRuns } from '../../src/db/schema/index.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import {
  createRunWithFindings,
  createSignedInUser,
  formBody,
  formHeaders,
  type SignedInUser,
} from '../helpers/web.ts';

const script = '<script>alert("pwned")</script>';
const escapedScript = '&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;';
const image = '<img src=x onerror=alert(1)>';

let context: TestContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;
let runId: string;
let patchRequestId: string;

beforeAll(async () => {
  context = await createTestContext();
  app = createApp(context);
  user = await createSignedInUser(context.db, { login: 'xss-user' });
  const { run } = await createRunWithFindings(context.db, {
    userId: user.userId,
    title: `Fix ${script}`,
    findings: [{ path: `src/${image}.ts`, line: 3, message: `Do not ${script}`, excerpt: `const x = "${script}";` }],
  });
  runId = run.id;
  const [request] = await context.db
    .insert(patchRequests)
    .values({ runId, userId: user.userId, status: 'partially_ready', error: `Model said ${script}` })
    .returning();
  patchRequestId = request!.id;
  await context.db.insert(patchFiles).values([
    {
      patchRequestId,
      path: 'src/a.ts',
      status: 'ready',
      diff: `--- a/src/a.ts\n+++ b/src/a.ts\n@@ -1,1 +1,1 @@\n-const a = 1;\n+const a = "${script}";\n`,
    },
    { patchRequestId, path: 'src/b.ts', status: 'failed', error: `Provider error ${image}` },
  ]);
});
afterAll(async () => {
  await context?.close();
});

async function page(path: string): Promise<string> {
  const response = await app.request(path, { headers: { cookie: user.cookie } });
  expect(response.status).toBe(200);
  return response.text();
}

describe('escaping of GitHub and model text', () => {
  it('escapes a pull request title on the home page', async () => {
    const html = await page('/');
    expect(html).toContain(`Fix ${escapedScript}`);
    expect(html).not.toContain(script);
  });

  it('escapes title, finding message, path and excerpt on the run page', async () => {
    const html = await page(`/runs/${runId}`);
    expect(html).not.toContain(script);
    expect(html).not.toContain(image);
    expect(html).toContain(`Do not ${escapedScript}`);
    expect(html).toContain('src/&lt;img src=x onerror=alert(1)&gt;.ts');
    expect(html).toContain(`const x = &quot;${escapedScript}&quot;;`);
  });

  it('names unchecked files on the run page, escaped', async () => {
    await context.db
      .update(prRuns)
      .set({ uncheckedFiles: [`data/${image}.sql`], omittedFindings: 4 })
      .where(eq(prRuns.id, runId));
    const html = await page(`/runs/${runId}`);
    expect(html).not.toContain(image);
    expect(html).toContain(
      'GitHub sent no diff for 1 file with added lines and Fixwright could not build one (for ' +
        'example for a version over 5 MB or not UTF-8 text), so its added lines were not checked: ' +
        'data/&lt;img src=x onerror=alert(1)&gt;.sql.',
    );
    expect(html).toContain('so 4 further findings of the same or lower severity are left out.');
  });

  it('names binary files with their reason, escaped', async () => {
    await context.db
      .update(prRuns)
      .set({
        uncheckedFiles: [`assets/${image}.png`],
        uncheckedFileReasons: [{ path: `assets/${image}.png`, reason: 'binary file, not checked' }],
      })
      .where(eq(prRuns.id, runId));
    const html = await page(`/runs/${runId}`);
    expect(html).not.toContain(image);
    expect(html).toContain(
      'The added lines of 1 file were not checked: assets/&lt;img src=x onerror=alert(1)&gt;.png ' +
        '(binary file, not checked).',
    );
    expect(html).not.toContain('GitHub sent no diff');
  });

  it('escapes diffs and errors on the preview page', async () => {
    const html = await page(`/patch-requests/${patchRequestId}`);
    expect(html).not.toContain(script);
    expect(html).not.toContain(image);
    expect(html).toContain(`const a = &quot;${escapedScript}&quot;;`);
    expect(html).toContain(`Model said ${escapedScript}`);
    expect(html).toContain('Provider error &lt;img src=x onerror=alert(1)&gt;');
  });

  it('escapes logins, accounts and token names', async () => {
    const admin = await createSignedInUser(context.db, { login: `admin${image}`, role: 'admin' });
    const target = await createSignedInUser(context.db, { login: `user${script}` });
    await createRunWithFindings(context.db, { userId: admin.userId, repository: `acct${image}/repo`, findings: [] });
    const get = async (path: string) => (await app.request(path, { headers: { cookie: admin.cookie } })).text();
    const post = async (path: string, fields: Record<string, string>, htmx = false) => {
      const headers = { ...formHeaders(admin), ...(htmx ? { 'hx-request': 'true' } : {}) };
      const response = await app.request(path, {
        method: 'POST',
        headers,
        body: formBody({ _csrf: admin.csrfToken, ...fields }),
      });
      return response.text();
    };

    const pages = {
      home: await get('/'),
      plans: await get('/plans'),
      notice: await post(`/admin/users/${target.userId}/plan`, { plan: 'pro' }, true),
      tokens: await post('/tokens', { name: `ci ${script}` }),
    };
    for (const [name, html] of Object.entries(pages)) {
      expect(html, name).not.toContain(script);
      expect(html, name).not.toContain(image);
    }
    expect(pages.home).toContain('admin&lt;img src=x onerror=alert(1)&gt;');
    expect(pages.home).toContain('acct&lt;img src=x onerror=alert(1)&gt;/repo#7');
    expect(pages.plans).toContain(`user${escapedScript}`);
    expect(pages.notice).toContain(`user${escapedScript} is now on Pro.`);
    expect(pages.tokens).toContain(`ci ${escapedScript}`);
  });

  it('sends a Content-Security-Policy without inline scripts', async () => {
    const response = await app.request('/', { headers: { cookie: user.cookie } });
    const policy = response.headers.get('content-security-policy') ?? '';
    expect(policy).toContain("script-src 'self'");
    expect(policy).not.toContain('unsafe-inline');
  });

  it('forbids framing in both headers', async () => {
    const response = await app.request('/', { headers: { cookie: user.cookie } });
    const policy = response.headers.get('content-security-policy') ?? '';
    expect(policy).toContain("frame-ancestors 'none'");
    expect(response.headers.get('x-frame-options')).toBe('DENY');
  });
});
