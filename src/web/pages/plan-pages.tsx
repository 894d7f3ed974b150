import { asc, eq, sql } from 'drizzle-orm';
import { Hono, type Context } from 'hono';
import type { AppContext } from '../../context.ts';
import { plans, users, type Plan } from '../../db/schema/index.ts';
import { isUuid } from '../../runs/visible-runs.ts';
import { countCharacters } from '../../text/character-count.ts';
import { joinWithOr } from '../../text/plural.ts';
import { quoteValue } from '../../text/quote-value.ts';
import { changePlan, isPlan, planLimits } from '../../usage/plans.ts';
import { AppError, notFound } from '../errors.ts';
import { FormFieldError, readOptionalTextField } from '../session/form-body.ts';
import type { PageVariables } from '../session/page-variables.ts';
import { requirePageSession } from '../session/require-page-session.ts';
import { safeReturnPath } from '../session/return-path.ts';
import { planNames } from '../views/components/plan-badge.tsx';
import { PlanSwitchResult, PlansPage, type PlanUserRow } from '../views/plans.tsx';
import { canChangeOwnPlan } from './load-usage.ts';

/** htmx event the usage widget listens for, sent in HX-Trigger after a plan change. */
export const planChangedEvent = 'plan-changed';

const maxListedUsers = 500;

/** Maximum length of a login search. GitHub logins have at most 39 characters. */
const maxLoginSearch = 100;

/** Turns `text` into a LIKE pattern for values that start with it, escaped with a backslash. */
function likePrefix(text: string): string {
  return `${text.replace(/[\\%_]/g, (character) => `\\${character}`)}%`;
}

/** `GET /plans`, `POST /plans` (own plan) and `POST /admin/users/:userId/plan` (admins). */
export function planPages(context: AppContext): Hono<{ Variables: PageVariables }> {
  const app = new Hono<{ Variables: PageVariables }>();
  app.use('/plans', requirePageSession(context));
  app.use('/admin/*', requirePageSession(context));

  app.get('/plans', async (c) => {
    const search = (c.req.query('login') ?? '').trim();
    const searchLength = countCharacters(search);
    if (searchLength > maxLoginSearch) {
      const searchError =
        `Invalid login search ${quoteValue(search, 60)}: it has ${searchLength} characters. ` +
        `Shorten it to at most ${maxLoginSearch} characters and press "Search" again.`;
      return renderPlansPage(c, context, { search, searchError }, 400);
    }
    return renderPlansPage(c, context, { search });
  });

  app.post('/plans', async (c) => {
    if (!canChangeOwnPlan(context, c.var.user)) {
      throw new AppError(
        'forbidden',
        'Plan changes are disabled: ask an admin to change your plan, or set ' +
          'PLAN_SELF_SERVICE=true to let users switch their own plan.',
      );
    }
    return switchPlan(c, context, c.var.user.id, c.var.user.login);
  });

  app.post('/admin/users/:userId/plan', async (c) => {
    if (c.var.user.role !== 'admin') {
      throw new AppError('forbidden', "Only admins can change another user's plan.");
    }
    const userId = c.req.param('userId');
    const target = isUuid(userId)
      ? await context.db.query.users.findFirst({ where: eq(users.id, userId) })
      : undefined;
    if (!target) throw notFound('User', userId);
    return switchPlan(c, context, target.id, target.login);
  });

  return app;
}

/**
 * Renders the plans page. Admins see the users whose login starts with `search`, unless
 * `searchError` gives the reason the search is invalid. `switchError` is the reason a plan
 * switch was rejected, shown next to the user's own switch or, with `userId`, above the user
 * list.
 */
async function renderPlansPage(
  c: Context<{ Variables: PageVariables }>,
  context: AppContext,
  input: { search: string; searchError?: string; switchError?: { message: string; userId?: string } },
  status: 200 | 400 = 200,
) {
  const admin = c.var.user.role === 'admin';
  const { search, searchError } = input;
  const rows = admin && !searchError ? await listUsers(context, search) : [];
  return c.html(
    <PlansPage
      session={c.var.session}
      limits={planLimits(context.config)}
      canChangePlan={canChangeOwnPlan(context, c.var.user)}
      users={admin ? rows.slice(0, maxListedUsers) : null}
      userList={{ search, cut: rows.length > maxListedUsers, max: maxListedUsers, error: searchError }}
      switchError={input.switchError}
    />,
    status,
  );
}

/** The columns of a user that the plans page shows. */
const planUserColumns = {
  id: users.id,
  login: users.login,
  plan: users.plan,
  tokenLimit: users.tokenLimit,
  tokensUsed: users.tokensUsed,
};

/**
 * Returns the users whose login starts with `search`, by login, one more than the page lists,
 * which shows whether the list was cut.
 */
function listUsers(context: AppContext, search: string): Promise<PlanUserRow[]> {
  return context.db
    .select(planUserColumns)
    .from(users)
    .where(search ? sql`lower(${users.login}) LIKE ${likePrefix(search.toLowerCase())} ESCAPE '\\'` : undefined)
    .orderBy(asc(users.login))
    .limit(maxListedUsers + 1);
}

/**
 * Returns which parts that show `user`'s plan the page in the browser has, from the address
 * that htmx sends in HX-Current-URL. The plans page has the own plan block and switch when
 * `user` is the signed-in user, and the user's row when its login search lists the user. Other
 * pages, such as the home page, have none of them.
 */
async function findShownParts(c: Context<{ Variables: PageVariables }>, context: AppContext, user: PlanUserRow) {
  const shown = { ownPlan: false, ownSwitch: false, userRow: false };
  let page: URL;
  try {
    page = new URL(c.req.header('hx-current-url') ?? '');
  } catch {
    return shown;
  }
  if (page.pathname !== '/plans') return shown;
  if (user.id === c.var.user.id) {
    shown.ownPlan = true;
    shown.ownSwitch = canChangeOwnPlan(context, c.var.user);
  }
  if (c.var.user.role === 'admin') {
    const search = (page.searchParams.get('login') ?? '').trim();
    if (countCharacters(search) <= maxLoginSearch) {
      const listed = await listUsers(context, search);
      shown.userRow = listed.slice(0, maxListedUsers).some((row) => row.id === user.id);
    }
  }
  return shown;
}

async function switchPlan(
  c: Context<{ Variables: PageVariables }>,
  context: AppContext,
  userId: string,
  login: string,
) {
  const form = await c.req.parseBody({ all: true });
  // htmx shows the error next to the form that sent it, and a page load gets the plans page.
  const rejectSwitch = (error: AppError) => {
    if (c.req.header('hx-request')) throw error;
    const { message } = error;
    const switchError = userId === c.var.user.id ? { message } : { message, userId };
    return renderPlansPage(c, context, { search: '', switchError }, 400);
  };
  const choosePlan = `choose ${joinWithOr(plans.map((name) => planNames[name]))} and press "Switch plan" again.`;
  let plan: string | undefined;
  let returnTo: string | undefined;
  try {
    plan = readOptionalTextField(form, 'plan', choosePlan);
    returnTo = readOptionalTextField(form, 'returnTo', 'reload the page and press "Switch plan" again.');
  } catch (error) {
    if (!(error instanceof FormFieldError)) throw error;
    return rejectSwitch(error);
  }
  const forUser = userId === c.var.user.id ? '' : ` for ${login}`;
  if (plan === undefined || plan === '') {
    const values = joinWithOr(plans.map((name) => `plan=${name}`));
    return rejectSwitch(
      new AppError('bad_request', `Missing field "plan"${forUser}: send ${values}, or ${choosePlan}`, {
        fields: ['plan'],
      }),
    );
  }
  if (!isPlan(plan)) {
    return rejectSwitch(new AppError('bad_request', `Invalid plan ${quoteValue(plan, 40)}${forUser}: ${choosePlan}`));
  }
  const result = await changePlan(context.db, context.config, {
    userId,
    plan: plan as Plan,
    changedBy: c.var.user.login,
  });
  if (result.changed) {
    context.logger.info(
      {
        event: 'plan.changed',
        requestId: c.get('requestId'),
        userId,
        changedBy: c.var.user.login,
        fromPlan: result.fromPlan,
        toPlan: result.toPlan,
        usedBefore: result.usedBefore,
        usedAfter: result.usedAfter,
      },
      'plan changed',
    );
  }

  if (c.req.header('hx-request')) {
    c.header('HX-Trigger', planChangedEvent);
    const notice = result.changed
      ? `${login} is now on ${planNames[result.toPlan]}.`
      : `${login} is already on ${planNames[result.toPlan]}; nothing changed.`;
    const [user] = await context.db
      .select(planUserColumns)
      .from(users)
      .where(eq(users.id, userId));
    if (!user) throw notFound('User', userId);
    const shown = await findShownParts(c, context, user);
    return c.html(<PlanSwitchResult notice={notice} user={user} limits={planLimits(context.config)} shown={shown} />);
  }
  return c.redirect(safeReturnPath(returnTo ?? '/plans'), 303);
}
