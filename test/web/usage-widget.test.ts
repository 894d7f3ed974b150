import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planSwitchCommand } from '../../src/cli/usage.ts';
import { tokenEvents, users } from '../../src/db/schema/index.ts';
import { getDailyUsage } from '../../src/usage/daily-usage.ts';
import { getUsageStats } from '../../src/usage/stats.ts';
import { createApp } from '../../src/web/app.tsx';
import {
  nearLimitAdvice,
  usageLevel,
} from '../../src/web/views/components/usage-widget.tsx';
import { niceMaximum } from '../../src/web/views/components/usage-chart.tsx';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { createSignedInUser, type SignedInUser } from '../helpers/web.ts';

let context: TestContext;
let app: ReturnType<typeof createApp>;
let user: SignedInUser;

beforeAll(async () => {
  context = await createTestContext();
  app = createApp(context);
  user = await createSignedInUser(context.db, { login: 'usage-user', tokenLimit: 1000 });
});
afterAll(async () => {
  await context?.close();
});

async function widget(used: number, plan: 'free' | 'pro' | 'enterprise' = 'free', limit = 1000) {
  await context.db
    .update(users)
    .set({ tokensUsed: used, plan, tokenLimit: limit })
    .where(eq(users.id, user.userId));
  const response = await app.request('/usage/widget', {
    headers: { cookie: user.cookie, 'hx-request': 'true' },
  });
  expect(response.status).toBe(200);
  return response.text();
}

describe('usageLevel', () => {
  it.each([
    [0, 'ok'],
    [69.9, 'ok'],
    [70, 'warn'],
    [89.9, 'warn'],
    [90, 'danger'],
    [100, 'danger'],
  ])('%d %% is %s', (percent, level) => {
    expect(usageLevel(percent)).toBe(level);
  });
});

describe('usage widget fragment', () => {
  it('is green without a warning at 50 %', async () => {
    const html = await widget(500);
    expect(html).toContain('class="usage-bar level-ok"');
    expect(html).toContain('aria-valuenow="50"');
    expect(html).toContain('500 (50%)');
    expect(html).toContain('<dt>Remaining</dt><dd>500</dd>');
    expect(html).toContain('<dt>Limit</dt><dd>1,000</dd>');
    expect(html).toContain('>Free<');
    expect(html).not.toContain('class="warning"');
  });

  it('is orange without a warning at 75 %', async () => {
    const html = await widget(750);
    expect(html).toContain('class="usage-bar level-warn"');
    expect(html).not.toContain('class="warning"');
  });

  it('is red with a warning at 95 %', async () => {
    const html = await widget(950);
    expect(html).toContain('class="usage-bar level-danger"');
    expect(html).toContain('class="warning"');
    expect(html).toContain(
      'ask an admin to upgrade you to Pro (the <a href="/plans">Plan page</a> shows the command they run)',
    );
    expect(html).toContain('wait until the period ends on');
    expect(html).toContain('add your own Groq or Gemini key on the <a href="/keys">Keys page</a>.');
  });

  it('links to the plan commands', async () => {
    const html = await widget(950, 'pro', 1000);
    expect(html).toContain(
      'ask an admin to switch you to Enterprise (the <a href="/plans">Plan page</a> shows the command they run)',
    );
    const plansPage = await (await app.request('/plans', { headers: { cookie: user.cookie } })).text();
    expect(plansPage).toContain(planSwitchCommand('usage-user', 'enterprise'));
  });

  it('suggests no plan switch on Enterprise', async () => {
    const html = await widget(950, 'enterprise', 1000);
    expect(html).toContain('class="warning"');
    expect(html).toContain('wait until the period ends on');
    expect(html).toContain('add your own Groq or Gemini key');
    expect(html).not.toContain('Enterprise on the Plan page');
    expect(html).not.toContain('switch you to Enterprise');
  });

  it('names an ended period as ended', async () => {
    const late = await createSignedInUser(context.db, { login: 'late-rollover-user', tokensUsed: 950 });
    const started = new Date(Date.now() - 40 * 86_400_000);
    await context.db
      .update(users)
      .set({ periodStartedAt: started, periodAnchorAt: started })
      .where(eq(users.id, late.userId));
    const stats = await getUsageStats(context.db, context.config, late.userId);
    expect(new Date(stats.periodEnd).getTime()).toBeLessThan(Date.now());

    const response = await app.request('/usage/widget', {
      headers: { cookie: late.cookie, 'hx-request': 'true' },
    });
    const html = await response.text();
    expect(html).toContain('class="warning"');
    expect(html).toContain(`wait for the next period to start, as this one ended on ${stats.periodEnd.slice(0, 10)}`);
    expect(html).not.toContain('wait until the period ends on');
  });

  it('shows Unlimited for enterprise', async () => {
    const html = await widget(123_456, 'enterprise', -1);
    expect(html).toContain('<strong>Unlimited</strong>');
    expect(html).toContain('123,456 tokens used');
    expect(html).toContain('>Enterprise<');
    expect(html).not.toContain('usage-bar');
    expect(html).not.toContain('class="warning"');
  });

  it('shows the period end on the anchor day', async () => {
    const anchored = await createSignedInUser(context.db, { login: 'anchored-user' });
    await context.db
      .update(users)
      .set({
        periodStartedAt: new Date('2028-02-29T07:45:00Z'),
        periodAnchorAt: new Date('2027-12-31T07:45:00Z'),
      })
      .where(eq(users.id, anchored.userId));
    const response = await app.request('/usage/widget', {
      headers: { cookie: anchored.cookie, 'hx-request': 'true' },
    });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('Period 2028-02-29 to 2028-03-31 (UTC)');
  });

  it('is polled by the home page and refreshed on plan changes', async () => {
    const html = await (await app.request('/', { headers: { cookie: user.cookie } })).text();
    expect(html).toContain('hx-get="/usage/widget"');
    expect(html).toContain('hx-trigger="load, every 30s, plan-changed from:body"');
  });

  it('redirects a browser to the home page', async () => {
    const response = await app.request('/usage/widget', { headers: { cookie: user.cookie } });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/');
  });
});

describe('nearLimitAdvice', () => {
  it('names the next plan and the period end', async () => {
    await context.db.update(users).set({ tokensUsed: 950, plan: 'free', tokenLimit: 1000 }).where(eq(users.id, user.userId));
    const stats = await getUsageStats(context.db, context.config, user.userId);
    const periodEnd = stats.periodEnd.slice(0, 10);
    const now = new Date(Date.parse(stats.periodEnd) - 86_400_000);
    const ownKey = 'or add your own Groq or Gemini key on the <a href="/keys">Keys page</a>.';

    expect(String(nearLimitAdvice(stats, true, now))).toBe(
      'You have used 95% of your tokens for this period. To keep previewing fixes, ' +
        'upgrade to Pro on the <a href="/plans">Plan page</a>, ' +
        `wait until the period ends on ${periodEnd} (UTC), ${ownKey}`,
    );
    expect(String(nearLimitAdvice({ ...stats, plan: 'pro' }, false, now))).toBe(
      'You have used 95% of your tokens for this period. To keep previewing fixes, ' +
        'ask an admin to switch you to Enterprise (the <a href="/plans">Plan page</a> shows the command they run), ' +
        `wait until the period ends on ${periodEnd} (UTC), ${ownKey}`,
    );
    expect(String(nearLimitAdvice({ ...stats, plan: 'enterprise' }, false, now))).toBe(
      'You have used 95% of your tokens for this period. To keep previewing fixes, ' +
        `wait until the period ends on ${periodEnd} (UTC) ${ownKey}`,
    );
  });
});

describe('nearLimitAdvice with own keys', () => {
  /** Returns the stats of the free user at 95 % and a time one day before the period ends. */
  async function statsNearLimit() {
    await context.db.update(users).set({ tokensUsed: 950, plan: 'free', tokenLimit: 1000 }).where(eq(users.id, user.userId));
    const stats = await getUsageStats(context.db, context.config, user.userId);
    return { stats, periodEnd: stats.periodEnd.slice(0, 10), now: new Date(Date.parse(stats.periodEnd) - 86_400_000) };
  }

  it('names only the provider without a key', async () => {
    const { stats, periodEnd, now } = await statsNearLimit();
    const advice = (ownKeys: { groq: boolean; gemini: boolean }) =>
      String(nearLimitAdvice({ ...stats, ownKeys }, true, now));
    const start =
      'You have used 95% of your tokens for this period. To keep previewing fixes, ' +
      `upgrade to Pro on the <a href="/plans">Plan page</a>, wait until the period ends on ${periodEnd} (UTC), `;

    expect(advice({ groq: false, gemini: false })).toBe(
      `${start}or add your own Groq or Gemini key on the <a href="/keys">Keys page</a>.`,
    );
    expect(advice({ groq: true, gemini: false })).toBe(
      `${start}or add your own Gemini key on the <a href="/keys">Keys page</a>.`,
    );
    expect(advice({ groq: false, gemini: true })).toBe(
      `${start}or add your own Groq key on the <a href="/keys">Keys page</a>.`,
    );
  });

  it('suggests no key when both are stored', async () => {
    const { stats, periodEnd, now } = await statsNearLimit();
    const both = { ...stats, ownKeys: { groq: true, gemini: true } };
    const start =
      'You have used 95% of your tokens for this period. Your own Groq and Gemini keys on the ' +
      '<a href="/keys">Keys page</a> pay for the calls that the allowance cannot. To preview on ' +
      'the allowance again, ';

    expect(String(nearLimitAdvice(both, true, now))).toBe(
      `${start}upgrade to Pro on the <a href="/plans">Plan page</a> or wait until the period ends on ${periodEnd} (UTC).`,
    );
    expect(String(nearLimitAdvice({ ...both, plan: 'enterprise' }, false, now))).toBe(
      `${start}wait until the period ends on ${periodEnd} (UTC).`,
    );
    expect(String(nearLimitAdvice(both, true, now))).not.toContain('add your own');
  });
});

describe('tokens per day', () => {
  it('groups token events by UTC day and key source', async () => {
    const other = await createSignedInUser(context.db, { login: 'chart-user' });
    const event = (day: string, keySource: 'platform' | 'user', total: number, key: string) => ({
      userId: other.userId,
      provider: 'groq' as const,
      model: 'llama',
      keySource,
      promptTokens: total,
      completionTokens: 0,
      totalTokens: total,
      chargedTokens: keySource === 'platform' ? total : 0,
      idempotencyKey: key,
      createdAt: new Date(`${day}T12:00:00Z`),
    });
    await context.db.insert(tokenEvents).values([
      event('2026-03-02', 'platform', 100, 'a'),
      event('2026-03-02', 'platform', 50, 'b'),
      event('2026-03-02', 'user', 30, 'c'),
      event('2026-03-04', 'user', 70, 'd'),
      event('2026-04-01', 'platform', 999, 'outside'),
    ]);
    const days = await getDailyUsage(context.db, other.userId, {
      start: new Date('2026-03-01T00:00:00Z'),
      end: new Date('2026-04-01T00:00:00Z'),
    });
    expect(days).toHaveLength(31);
    expect(days[0]).toEqual({ day: '2026-03-01', platform: 0, own: 0 });
    expect(days[1]).toEqual({ day: '2026-03-02', platform: 150, own: 30 });
    expect(days[3]).toEqual({ day: '2026-03-04', platform: 0, own: 70 });
    expect(days.reduce((sum, day) => sum + day.platform + day.own, 0)).toBe(250);
  });

  it('shows no axis before any model call', async () => {
    const html = await widget(0);
    const chart = /<figure class="usage-chart">[\s\S]*?<\/figure>/.exec(html)?.[0];
    expect(chart).toBe(
      '<figure class="usage-chart"><figcaption>Tokens per day this period (UTC)</figcaption>' +
        '<p class="muted">No model calls this period yet.</p></figure>',
    );
    expect(html).not.toContain('class="axis-label"');
  });

  it('draws one bar per day and key source', async () => {
    await context.db.insert(tokenEvents).values([
      {
        userId: user.userId,
        provider: 'groq',
        model: 'llama',
        keySource: 'platform',
        promptTokens: 300,
        completionTokens: 100,
        totalTokens: 400,
        chargedTokens: 400,
        idempotencyKey: 'widget-platform',
      },
      {
        userId: user.userId,
        provider: 'gemini',
        model: 'flash',
        keySource: 'user',
        promptTokens: 200,
        completionTokens: 50,
        totalTokens: 250,
        chargedTokens: 0,
        idempotencyKey: 'widget-own',
      },
    ]);
    const html = await widget(400);
    const today = new Date().toISOString().slice(0, 10);
    expect(html).toContain(`<title>${today}: 400 platform tokens</title>`);
    expect(html).toContain(`<title>${today}: 250 own-key tokens</title>`);
    expect(html.match(/class="bar platform"/g)).toHaveLength(1);
    expect(html.match(/class="bar own"/g)).toHaveLength(1);
    expect(html).toContain('aria-label="Tokens per day: 650 in total this period"');
    expect(html).toContain('<text class="axis-label" x="50" y="16" text-anchor="end">500</text>');
    expect(html).not.toContain('No model calls this period yet.');
  });

  it.each([
    [0, 1],
    [1, 1],
    [7, 10],
    [150, 200],
    [400, 500],
    [1000, 1000],
    [1001, 2000],
  ])('rounds the axis maximum %d up to %d', (value, expected) => {
    expect(niceMaximum(value)).toBe(expected);
  });
});
