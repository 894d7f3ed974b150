import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runUsersCommand } from '../../src/cli/users.ts';
import { loadConfig } from '../../src/config/env.ts';
import { planChanges, users } from '../../src/db/schema/index.ts';
import { createLogger } from '../../src/logger.ts';
import { createApp } from '../../src/web/app.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import {
  createSignedInUser,
  formBody,
  formHeaders,
  multipartBody,
  textFile,
  type SignedInUser,
} from '../helpers/web.ts';

async function planOf(context: TestContext, userId: string) {
  const [row] = await context.db.select().from(users).where(eq(users.id, userId));
  return row!;
}

function postPlan(
  app: ReturnType<typeof createApp>,
  user: SignedInUser,
  path: string,
  fields: Record<string, string | string[]>,
  htmx = false,
) {
  return app.request(path, {
    method: 'POST',
    headers: formHeaders(user, htmx ? { 'hx-request': 'true' } : {}),
    body: formBody({ _csrf: user.csrfToken, ...fields }),
  });
}

describe('plan changes without self-service', () => {
  let context: TestContext;
  let app: ReturnType<typeof createApp>;
  let user: SignedInUser;
  let admin: SignedInUser;

  beforeAll(async () => {
    context = await createTestContext({ PLAN_SELF_SERVICE: 'false' });
    app = createApp(context);
    user = await createSignedInUser(context.db, { login: 'plain-user', tokensUsed: 400 });
    admin = await createSignedInUser(context.db, { login: 'the-admin', role: 'admin' });
  });
  afterAll(async () => {
    await context?.close();
  });

  it('rejects a user switching their own plan', async () => {
    const response = await postPlan(app, user, '/plans', { plan: 'pro' });
    expect(response.status).toBe(403);
    expect(await response.text()).toContain('PLAN_SELF_SERVICE=true');
    expect((await planOf(context, user.userId)).plan).toBe('free');
  });

  it('hides the switch from users', async () => {
    const html = await (await app.request('/plans', { headers: { cookie: user.cookie } })).text();
    expect(html).toContain('Ask an admin to change your plan.');
    expect(html).not.toContain('action="/plans"');
    expect(html).not.toContain('All users');
  });

  it("shows the admin's command per plan", async () => {
    const member = await createSignedInUser(context.db, { login: 'Cli-Member' });
    const html = await (await app.request('/plans', { headers: { cookie: member.cookie } })).text();
    const commands = [...html.matchAll(/<pre class="command"><code>([^<]*)<\/code><\/pre>/g)].map((match) => match[1]);
    expect(commands).toEqual([
      'npx fixwright users plan --login Cli-Member --plan pro',
      'npx fixwright users plan --login Cli-Member --plan enterprise',
    ]);

    // The command as shown switches the plan when the CLI runs it.
    const [npx, program, command, ...args] = commands[1]!.split(' ');
    expect([npx, program, command]).toEqual(['npx', 'fixwright', 'users']);
    const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: context.database.url });
    const output: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: unknown) => void output.push(String(line)));
    try {
      expect(await runUsersCommand(config, createLogger('silent'), args)).toBe(0);
    } finally {
      vi.restoreAllMocks();
    }
    expect(output).toEqual(['Cli-Member: free -> enterprise, limit unlimited, used 0 -> 0']);
    expect((await planOf(context, member.userId)).plan).toBe('enterprise');
  });

  it('shows the stored limit and a newer configured one', async () => {
    const before = await (await app.request('/plans', { headers: { cookie: user.cookie } })).text();
    expect(before).toContain('Free</span>, 1,000 tokens per period');
    expect(before).not.toContain('Your limit was set when your plan was last chosen.');

    await context.db.update(users).set({ tokenLimit: 500 }).where(eq(users.id, user.userId));
    const after = await (await app.request('/plans', { headers: { cookie: user.cookie } })).text();
    expect(after).toContain('Free</span>, 500 tokens per period');
    expect(after).toContain(
      'Your limit was set when your plan was last chosen. The Free plan now gives 1,000 tokens ' +
        'per period, which applies once your plan is chosen again or an admin applies the new limits.',
    );
    await context.db.update(users).set({ tokenLimit: 1000 }).where(eq(users.id, user.userId));
  });

  it("rejects a user switching someone else's plan", async () => {
    const response = await postPlan(app, user, `/admin/users/${admin.userId}/plan`, { plan: 'free' });
    expect(response.status).toBe(403);
  });

  it("lets an admin switch anyone's plan", async () => {
    const html = await (await app.request('/plans', { headers: { cookie: admin.cookie } })).text();
    expect(html).toContain('All users');
    expect(html).not.toContain('<pre class="command">');
    expect(html).toContain(`action="/admin/users/${user.userId}/plan"`);

    const response = await postPlan(app, admin, `/admin/users/${user.userId}/plan`, {
      plan: 'pro',
      returnTo: '/plans',
    });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/plans');
    const changed = await planOf(context, user.userId);
    expect(changed.plan).toBe('pro');
    expect(changed.tokenLimit).toBe(100_000);
    expect(changed.tokensUsed).toBe(0);
    const [change] = await context.db.select().from(planChanges).where(eq(planChanges.userId, user.userId));
    expect(change!.changedBy).toBe('the-admin');
    expect(change!.tokensUsedBefore).toBe(400);
  });

  it('returns 404 for an unknown user', async () => {
    const response = await postPlan(app, admin, '/admin/users/00000000-0000-4000-8000-000000000000/plan', {
      plan: 'pro',
    });
    expect(response.status).toBe(404);
  });

  it('rejects an unknown plan on the page', async () => {
    const response = await postPlan(app, admin, '/plans', { plan: 'platinum', returnTo: '/' });
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain('<h1>Plan</h1>');
    expect(html).toContain(
      '<p class="error" role="alert">Invalid plan &quot;platinum&quot;: choose Free, Pro or ' +
        'Enterprise and press &quot;Switch plan&quot; again.</p>',
    );
    expect((await planOf(context, admin.userId)).plan).toBe('free');
  });

  it("rejects an unknown plan for another user", async () => {
    const response = await postPlan(app, admin, `/admin/users/${user.userId}/plan`, { plan: 'gold' });
    expect(response.status).toBe(400);
    const html = await response.text();
    const allUsers = html.slice(html.indexOf('<h2>All users</h2>'));
    expect(allUsers).toContain(
      '<p class="error" role="alert">Invalid plan &quot;gold&quot; for plain-user: choose Free, ' +
        'Pro or Enterprise and press &quot;Switch plan&quot; again.</p>',
    );
    expect((await planOf(context, user.userId)).plan).toBe('pro');
  });

  it('names a missing plan for another user', async () => {
    const response = await postPlan(app, admin, `/admin/users/${user.userId}/plan`, { returnTo: '/plans' });

    expect(response.status).toBe(400);
    const html = await response.text();
    const allUsers = html.slice(html.indexOf('<h2>All users</h2>'));
    expect(allUsers).toContain(
      '<p class="error" role="alert">Missing field &quot;plan&quot; for plain-user: send ' +
        'plan=free, plan=pro or plan=enterprise, or choose Free, Pro or Enterprise and press ' +
        '&quot;Switch plan&quot; again.</p>',
    );
    expect((await planOf(context, user.userId)).plan).toBe('pro');
  });

  it('rejects an unknown plan for htmx', async () => {
    const response = await postPlan(app, admin, '/plans', { plan: 'platinum' }, true);
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('Invalid plan &quot;platinum&quot;: choose Free, Pro or Enterprise');
    expect(html).not.toContain('<h1>');
    expect(response.headers.get('hx-trigger')).toBeNull();
  });
});

describe('plan changes with PLAN_SELF_SERVICE=true', () => {
  let context: TestContext;
  let app: ReturnType<typeof createApp>;
  let user: SignedInUser;

  beforeAll(async () => {
    context = await createTestContext({ PLAN_SELF_SERVICE: 'true' });
    app = createApp(context);
    user = await createSignedInUser(context.db, { login: 'self-service' });
  });
  afterAll(async () => {
    await context?.close();
  });

  it('shows the switch on the home page', async () => {
    const html = await (await app.request('/', { headers: { cookie: user.cookie } })).text();
    expect(html).toContain('hx-post="/plans"');
    expect(html).toContain('name="returnTo" value="/"');
  });

  it('switches and triggers plan-changed for htmx', async () => {
    const response = await postPlan(app, user, '/plans', { plan: 'enterprise' }, true);
    expect(response.status).toBe(200);
    expect(response.headers.get('hx-trigger')).toBe('plan-changed');
    expect(await response.text()).toContain('self-service is now on Enterprise.');
    const changed = await planOf(context, user.userId);
    expect(changed.plan).toBe('enterprise');
    expect(changed.tokenLimit).toBe(-1);
    const [change] = await context.db.select().from(planChanges).where(eq(planChanges.userId, user.userId));
    expect(change!.changedBy).toBe('self-service');
    expect(context.logs.some((line) => line.event === 'plan.changed' && line.toPlan === 'enterprise')).toBe(true);
  });

  it('redirects back without htmx', async () => {
    const response = await postPlan(app, user, '/plans', { plan: 'free', returnTo: '/' });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/');
    expect((await planOf(context, user.userId)).plan).toBe('free');
  });

  it('ignores a foreign return address', async () => {
    const response = await postPlan(app, user, '/plans', { plan: 'free', returnTo: 'https://evil.example/' });
    expect(response.headers.get('location')).toBe('/');
  });

  const missingPlan =
    'Missing field &quot;plan&quot;: send plan=free, plan=pro or plan=enterprise, or choose ' +
    'Free, Pro or Enterprise and press &quot;Switch plan&quot; again.';

  it('names a missing plan field', async () => {
    const before = (await planOf(context, user.userId)).plan;
    const forms: Record<string, string>[] = [{ returnTo: '/' }, { plan: '', returnTo: '/' }];
    for (const fields of forms) {
      const label = JSON.stringify(fields);

      const response = await postPlan(app, user, '/plans', fields);

      expect(response.status, label).toBe(400);
      const html = await response.text();
      expect(html, label).toContain('<h1>Plan</h1>');
      expect(html, label).toContain(`<p class="error" role="alert">${missingPlan}</p>`);
      expect(html, label).not.toContain('Invalid plan');
      expect((await planOf(context, user.userId)).plan, label).toBe(before);
    }
  });

  it('names a missing plan field for htmx', async () => {
    const response = await postPlan(app, user, '/plans', {}, true);

    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain(missingPlan);
    expect(html).not.toContain('<h1>');
    expect(response.headers.get('hx-trigger')).toBeNull();
  });

  it('rejects a plan sent as a file', async () => {
    const before = (await planOf(context, user.userId)).plan;
    const message =
      'Invalid field &quot;plan&quot;: the form sent it as a file upload, but expected a text ' +
      'field; choose Free, Pro or Enterprise and press &quot;Switch plan&quot; again.';
    for (const htmx of [false, true]) {
      const response = await app.request('/plans', {
        method: 'POST',
        headers: { cookie: user.cookie, ...(htmx ? { 'hx-request': 'true' } : {}) },
        body: multipartBody({ _csrf: user.csrfToken, plan: textFile('plan.txt', 'enterprise'), returnTo: '/' }),
      });

      expect(response.status, `htmx: ${htmx}`).toBe(400);
      const html = await response.text();
      if (htmx) {
        expect(html).toContain(`<strong>Error 400: </strong>${message}`);
        expect(html).not.toContain('<h1>');
      } else {
        expect(html).toContain(`<p class="error" role="alert">${message}</p>`);
        expect(html).toContain('<h1>Plan</h1>');
      }
      expect((await planOf(context, user.userId)).plan, `htmx: ${htmx}`).toBe(before);
    }
  });

  it('rejects repeated plan and returnTo fields', async () => {
    const before = (await planOf(context, user.userId)).plan;
    const cases: [Record<string, string[] | string>, string][] = [
      [
        { plan: ['free', 'enterprise'], returnTo: '/' },
        'Invalid field &quot;plan&quot;: the form sent it 2 times, but expected it once; choose ' +
          'Free, Pro or Enterprise and press &quot;Switch plan&quot; again.',
      ],
      [
        { plan: 'enterprise', returnTo: ['/', '/plans'] },
        'Invalid field &quot;returnTo&quot;: the form sent it 2 times, but expected it once; ' +
          'reload the page and press &quot;Switch plan&quot; again.',
      ],
    ];
    for (const [fields, message] of cases) {
      const response = await postPlan(app, user, '/plans', fields);

      expect(response.status, message).toBe(400);
      expect(await response.text(), message).toContain(`<p class="error" role="alert">${message}</p>`);
      expect((await planOf(context, user.userId)).plan, message).toBe(before);
    }
  });

  it('sends an over-long returnTo home', async () => {
    // Cutting this path at 2,000 characters would split the emoji's surrogate pair.
    const returnTo = `/${'a'.repeat(1998)}😀`;
    const response = await postPlan(app, user, '/plans', { plan: 'pro', returnTo });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/');
    expect((await planOf(context, user.userId)).plan).toBe('pro');
  });
});

describe('plan switch responses for htmx', () => {
  let context: TestContext;
  let app: ReturnType<typeof createApp>;
  let admin: SignedInUser;
  let alice: SignedInUser;

  beforeAll(async () => {
    context = await createTestContext({ PLAN_SELF_SERVICE: 'false' });
    app = createApp(context);
    admin = await createSignedInUser(context.db, { login: 'htmx-admin', role: 'admin', tokensUsed: 808 });
    alice = await createSignedInUser(context.db, { login: 'alice', plan: 'pro', tokenLimit: 100_000 });
  });
  afterAll(async () => {
    await context?.close();
  });

  /** Posts a plan switch as htmx sends it from the page at `page`. */
  async function switchFrom(page: string, path: string, plan: string) {
    const response = await app.request(path, {
      method: 'POST',
      headers: formHeaders(admin, { 'hx-request': 'true', 'hx-current-url': `http://localhost${page}` }),
      body: formBody({ _csrf: admin.csrfToken, plan, returnTo: '/plans' }),
    });
    expect(response.status).toBe(200);
    return response.text();
  }

  /** Returns the element with `id` that `html` swaps in out of band, or undefined. */
  function oobPart(html: string, tag: string, id: string): string | undefined {
    const pattern = new RegExp(`<${tag}(?=[^>]* id="${id}")(?=[^>]* hx-swap-oob="true")[^>]*>[\\s\\S]*?</${tag}>`);
    return pattern.exec(html)?.[0];
  }

  const selectedPlan = (select: string | undefined) => /<option value="(\w+)" selected/.exec(select ?? '')?.[1];

  it('updates the own plan and row on the plans page', async () => {
    const html = await switchFrom('/plans', '/plans', 'pro');

    expect(html.startsWith('<span class="notice">htmx-admin is now on Pro.</span>')).toBe(true);
    const ownPlan = oobPart(html, 'div', 'own-plan');
    expect(ownPlan).toContain('Your plan: <span class="badge plan plan-pro">Pro</span>, 100,000 tokens per period');
    expect(ownPlan).toContain('<tr class="current"><td>Pro</td>');
    expect(selectedPlan(oobPart(html, 'select', 'plan-select-self'))).toBe('pro');
    expect(oobPart(html, 'td', `plan-user-${admin.userId}-plan`)).toContain('plan-pro');
    expect(oobPart(html, 'td', `plan-user-${admin.userId}-used`)).toBe(
      `<td id="plan-user-${admin.userId}-used" hx-swap-oob="true">0 of 100,000</td>`,
    );
    expect(html).toContain(`<template><td id="plan-user-${admin.userId}-used"`);
    expect(selectedPlan(oobPart(html, 'select', `plan-select-${admin.userId}`))).toBe('pro');
    // The admin's own row has a switch too, whose message shows the switch.
    expect(html).toContain(
      `<span id="plan-message-${admin.userId}" hx-swap-oob="innerHTML"><span class="notice">` +
        'htmx-admin is now on Pro.</span></span>',
    );
    expect(html).not.toContain(alice.userId);
  });

  it("updates another user's row only", async () => {
    const html = await switchFrom('/plans', `/admin/users/${alice.userId}/plan`, 'enterprise');

    expect(html.startsWith('<span class="notice">alice is now on Enterprise.</span>')).toBe(true);
    expect(oobPart(html, 'td', `plan-user-${alice.userId}-plan`)).toContain(
      '<span class="badge plan plan-enterprise">Enterprise</span>',
    );
    expect(oobPart(html, 'td', `plan-user-${alice.userId}-used`)).toContain('>0 of unlimited</td>');
    expect(selectedPlan(oobPart(html, 'select', `plan-select-${alice.userId}`))).toBe('enterprise');
    expect(html).not.toContain('own-plan');
    expect(html).not.toContain('plan-select-self');
  });

  it('leaves out a row the search does not list', async () => {
    const html = await switchFrom('/plans?login=htmx', `/admin/users/${alice.userId}/plan`, 'free');

    expect(html).toBe('<span class="notice">alice is now on Free.</span>');
  });

  it('sends the own parts for a switch in the own row', async () => {
    const html = await switchFrom('/plans?login=HTMX', `/admin/users/${admin.userId}/plan`, 'free');

    expect(oobPart(html, 'div', 'own-plan')).toContain('Your plan: <span class="badge plan plan-free">Free</span>');
    expect(selectedPlan(oobPart(html, 'select', 'plan-select-self'))).toBe('free');
    expect(html).toContain(
      '<span id="plan-message-self" hx-swap-oob="innerHTML"><span class="notice">htmx-admin is now on Free.</span></span>',
    );
    expect(oobPart(html, 'td', `plan-user-${admin.userId}-used`)).toContain('>0 of 1,000</td>');
  });

  it('sends only the message to the home page', async () => {
    const html = await switchFrom('/', '/plans', 'enterprise');

    expect(html).toBe('<span class="notice">htmx-admin is now on Enterprise.</span>');
    expect((await planOf(context, admin.userId)).plan).toBe('enterprise');
  });
});

describe('admin user list', () => {
  let context: TestContext;
  let app: ReturnType<typeof createApp>;
  let admin: SignedInUser;

  beforeAll(async () => {
    context = await createTestContext();
    app = createApp(context);
    admin = await createSignedInUser(context.db, { login: 'list-admin', role: 'admin' });
    await context.db.execute(sql`
      INSERT INTO users (login) SELECT 'member-' || lpad(n::text, 3, '0')
      FROM generate_series(1, 520) AS n`);
    await context.db.insert(users).values([{ login: 'a_b' }, { login: 'axb' }, { login: '100%' }]);
  });
  afterAll(async () => {
    await context?.close();
  });

  async function listPage(query: string) {
    const response = await app.request(`/plans${query}`, { headers: { cookie: admin.cookie } });
    return { status: response.status, html: await response.text() };
  }

  it('says when the list is cut', async () => {
    const { html } = await listPage('');
    expect(html).toContain('Only the first 500 users are listed, by login.');
    expect(html.match(/action="\/admin\/users\/[0-9a-f-]{36}\/plan"/g)).toHaveLength(500);
  });

  it('finds users by login prefix', async () => {
    const { html } = await listPage('?login=MEMBER-51');
    expect(html).toContain('<td>member-510</td>');
    expect(html).toContain('<td>member-519</td>');
    expect(html).not.toContain('<td>member-509</td>');
    expect(html).not.toContain('<td>member-520</td>');
    expect(html).not.toContain('Only the first');
    expect(html).toContain('value="MEMBER-51"');
  });

  it('matches underscore and percent literally', async () => {
    const underscore = await listPage('?login=a_');
    expect(underscore.html).toContain('<td>a_b</td>');
    expect(underscore.html).not.toContain('<td>axb</td>');
    const percent = await listPage('?login=100%25');
    expect(percent.html).toContain('<td>100%</td>');
    const none = await listPage('?login=1%25');
    expect(none.html).toContain('No user&#39;s login starts with &quot;1%&quot;.');
  });

  it('rejects a search longer than 100 characters', async () => {
    const search = 'x'.repeat(101);
    const { status, html } = await listPage(`?login=${search}`);
    expect(status).toBe(400);
    expect(html).toContain('<h2>All users</h2>');
    expect(html).toContain(
      `<p class="error" role="alert" id="login-search-error">Invalid login search &quot;${'x'.repeat(58)}…: ` +
        'it has 101 characters. Shorten it to at most 100 characters and press &quot;Search&quot; again.</p>',
    );
    expect(html).toContain(`value="${search}"`);
    expect(html).not.toContain('<table class="users">');
  });

  it('counts an emoji in a search as one character', async () => {
    const search = '\u{1F600}'.repeat(100);

    const accepted = await listPage(`?login=${encodeURIComponent(search)}`);
    const rejected = await listPage(`?login=${encodeURIComponent(`x${search}`)}`);

    expect(accepted.status).toBe(200);
    expect(accepted.html).not.toContain('login-search-error');
    expect(rejected.status).toBe(400);
    // The quote is cut before a whole emoji, never between the halves of its surrogate pair.
    expect(rejected.html).toContain(
      `Invalid login search &quot;x${'\u{1F600}'.repeat(28)}…: it has 101 characters. ` +
        'Shorten it to at most 100 characters and press &quot;Search&quot; again.',
    );
    expect(rejected.html).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
    expect(rejected.html).toContain('maxlength="200"');
  });
});
