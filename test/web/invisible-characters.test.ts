// Bidirectional control characters ("Trojan Source", CVE-2021-42574) and other invisible
// characters in a file path, a finding and the model's output. The dashboard shows each as a
// mark with its code point in place of the character, and Apply writes the model's text as is.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findings, patchFiles, prRuns } from '../../src/db/schema/index.ts';
import { startFakeGroq, type FakeGroq } from '../../src/demo/fakes/groq.ts';
import { createSession } from '../../src/web/session/session-store.ts';
import {
  createApplyTestContext,
  gitIn,
  headText,
  runPreviewOfFindings,
  type ApplyTestContext,
} from '../helpers/apply-context.ts';
import type { GitHubTestContext } from '../helpers/github-context.ts';
import { formBody } from '../helpers/web.ts';

/** A path with a left-to-right isolate (U+2066) and its pop (U+2069). */
const path = 'src/\u2066admin\u2069.ts';
const headSource = 'export const isAdmin = false;\nconsole.log(isAdmin);\n';
/**
 * The model's fix. The right-to-left override (U+202E) displays the rest of the comment
 * reversed, and U+2066 and U+2069 isolate the text between them, so the line would display as
 * code outside the comment. A zero width space (U+200B) sits inside the second name.
 */
const modelText =
  'export const isAdmin = false;\n' +
  '/*\u202E } \u2066if (isAdmin)\u2069 \u2066 begin admins only */\n' +
  'export const is\u200BAdmin = true;\n';

/** The characters that must not reach the HTML: those of the CVE, U+200B, and C0 and C1 controls. */
const rawCharacters = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u061C\u200B\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;

function mark(codePoint: string, name: string): string {
  return `<span class="char-mark" title="${codePoint} ${name}, shown in place of the invisible character">${codePoint}</span>`;
}
const overrideMark = mark('U+202E', 'RIGHT-TO-LEFT OVERRIDE');
const isolateMark = mark('U+2066', 'LEFT-TO-RIGHT ISOLATE');
const popMark = mark('U+2069', 'POP DIRECTIONAL ISOLATE');
const spaceMark = mark('U+200B', 'ZERO WIDTH SPACE');
const markedPath = `src/${isolateMark}admin${popMark}.ts`;

let groq: FakeGroq;
let applyContext: ApplyTestContext;
let setup: GitHubTestContext;
let session: { cookie: string; csrfToken: string };
let patchRequestId: string;

async function get(url: string, htmx = false): Promise<string> {
  const response = await applyContext.app.request(url, {
    headers: { cookie: session.cookie, ...(htmx ? { 'hx-request': 'true' } : {}) },
  });
  expect(response.status).toBe(200);
  return response.text();
}

function expectNoRawCharacters(html: string, name: string): void {
  const found = rawCharacters.exec(html);
  const context = found ? JSON.stringify(html.slice(Math.max(0, found.index - 60), found.index + 20)) : '';
  expect(found, `${name} shows a raw invisible character in ${context}`).toBeNull();
}

beforeAll(async () => {
  groq = await startFakeGroq();
  applyContext = await createApplyTestContext({
    head: { 'app.txt': headText, [path]: headSource },
    env: { GROQ_API_KEY: 'gsk_invisible_characters_test', GROQ_BASE_URL: groq.url, LLM_MAX_RETRIES: '0' },
  });
  setup = applyContext.setup;
  const created = await createSession(setup.context.db, applyContext.user.id, 1);
  session = { cookie: `fixwright_session=${created.token}`, csrfToken: created.csrfToken };

  await setup.context.db
    .update(prRuns)
    .set({ prTitle: 'Fix \u202Egol.console' })
    .where(eq(prRuns.id, applyContext.runId));
  const selected = await setup.context.db
    .insert(findings)
    .values({
      runId: applyContext.runId,
      path,
      startLine: 2,
      endLine: 2,
      ruleId: 'debug/console-log',
      severity: 'warning',
      message: 'Remove the console.log call\u202E before merging.',
      excerpt: 'console.log(isAdmin);\u2067 // reviewed',
      fingerprint: 'invisible-characters',
    })
    .returning({ id: findings.id });
  const findingIds = selected.map((finding) => finding.id);
  patchRequestId = await runPreviewOfFindings(applyContext, groq, findingIds, modelText);
});

afterAll(async () => {
  await setup?.close();
  await groq?.close();
});

describe('invisible characters on the dashboard', () => {
  it('stores the model text as it came', async () => {
    const [file] = await setup.context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, patchRequestId));

    expect(file!.status).toBe('ready');
    expect(file!.path).toBe(path);
    expect(file!.proposedText).toBe(modelText);
  });

  it('marks the diff and the path on the preview page', async () => {
    const html = await get(`/patch-requests/${patchRequestId}`);

    expectNoRawCharacters(html, 'preview page');
    expect(html).toContain(`<code class="path">${markedPath}</code>`);
    expect(html).toContain(
      `<code>/*${overrideMark} } ${isolateMark}if (isAdmin)${popMark} ${isolateMark} begin admins only */</code>`,
    );
    expect(html).toContain(`<code>export const is${spaceMark}Admin = true;</code>`);
    expect(html).toContain('data-path="src/&lt;U+2066&gt;admin&lt;U+2069&gt;.ts"');
    // public/app.js marks the apply response with the same characters.
    expect(html).toContain('data-invisible-characters="{&quot;pattern&quot;:&quot;[\\\\u0000-');
  });

  it('marks the files fragment', async () => {
    const html = await get(`/patch-requests/${patchRequestId}/files`, true);

    expectNoRawCharacters(html, 'files fragment');
    expect(html).toContain(`<code class="path">${markedPath}</code>`);
    expect(html).toContain(`/*${overrideMark} }`);
  });

  it('marks the path, message and excerpt on the run page', async () => {
    const html = await get(`/runs/${applyContext.runId}`);

    expectNoRawCharacters(html, 'run page');
    expect(html).toContain(`<h1>Fix ${overrideMark}gol.console</h1>`);
    expect(html).toContain(`<legend><code>${markedPath}</code> <span class="muted">1 finding</span>`);
    expect(html).toContain(`<span class="message">Remove the console.log call${overrideMark} before merging.</span>`);
    expect(html).toContain(
      `<code>console.log(isAdmin);${mark('U+2067', 'RIGHT-TO-LEFT ISOLATE')} // reviewed</code>`,
    );
  });

  it('marks the pull request title on the home page', async () => {
    const html = await get('/');

    expectNoRawCharacters(html, 'home page');
    expect(html).toContain(`<td>Fix ${overrideMark}gol.console</td>`);
  });

  it('applies the model text unchanged', async () => {
    const page = await get(`/patch-requests/${patchRequestId}`);
    const previewVersion = /name="previewVersion" value="([^"]+)"/.exec(page)?.[1];
    expect(previewVersion).toBeDefined();

    // The form that a browser without JavaScript sends, which shows the API's response.
    const response = await applyContext.app.request(`/patch-requests/${patchRequestId}/apply`, {
      method: 'POST',
      headers: { cookie: session.cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: formBody({ _csrf: session.csrfToken, previewVersion: previewVersion! }),
    });

    expect(response.status).toBe(200);
    const html = await response.text();
    expectNoRawCharacters(html, 'apply result page');
    expect(html).toContain(`&quot;${markedPath}&quot;`);
    const commitSha = /&quot;commitSha&quot;: &quot;([0-9a-f]{40})&quot;/.exec(html)?.[1];
    expect(commitSha).toBeDefined();
    const written = await gitIn(setup, 'cat-file', 'blob', `${commitSha}:${path}`);
    // gitIn trims the output, so the final line break is gone.
    expect(written).toBe(modelText.trimEnd());
    expect(written).toContain('\u202E');
    expect(written).toContain('\u200B');
  });
});
