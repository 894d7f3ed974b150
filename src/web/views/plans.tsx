import type { FC } from 'hono/jsx';
import { planSwitchCommand } from '../../cli/usage.ts';
import { plans, type Plan } from '../../db/schema/index.ts';
import type { ActiveSession } from '../session/session-store.ts';
import { FormError } from './components/form-error.tsx';
import { PlanBadge, planNames } from './components/plan-badge.tsx';
import { PlanSelect, PlanSwitchForm } from './components/plan-switch-form.tsx';
import { Layout } from './layout.tsx';

export interface PlanUserRow {
  id: string;
  login: string;
  plan: Plan;
  tokenLimit: number;
  tokensUsed: number;
}

const numberFormat = new Intl.NumberFormat('en-US');

function limitText(limit: number): string {
  return limit < 0 ? 'Unlimited' : `${numberFormat.format(limit)} tokens per period`;
}

/** Formats a limit for use inside a sentence. */
function allowanceText(limit: number): string {
  return limit < 0 ? 'unlimited tokens' : `${numberFormat.format(limit)} tokens per period`;
}

/**
 * Tells a user who cannot switch their own plan how an admin does it: on this page, or with the
 * `users plan` command for each other plan, with the user's login filled in.
 */
const AdminPlanCommands: FC<{ login: string; current: Plan }> = ({ login, current }) => (
  <div class="admin-plan-commands">
    <p class="muted">
      Ask an admin to change your plan. An admin can switch it on this page, or run the command
      for the plan you want on the server that runs Fixwright:
    </p>
    {plans
      .filter((plan) => plan !== current)
      .map((plan) => (
        <pre class="command">
          <code>{planSwitchCommand(login, plan)}</code>
        </pre>
      ))}
  </div>
);

/**
 * The user's plan and allowance, with the plans and their limits. With `oob`, it replaces the
 * block on the plans page after an htmx plan switch (see PlanSwitchResult).
 */
export const OwnPlan: FC<{
  user: { plan: Plan; tokenLimit: number };
  limits: Record<Plan, number>;
  oob?: boolean;
}> = ({ user, limits, oob }) => (
  <div id="own-plan" hx-swap-oob={oob ? 'true' : undefined}>
    <p>
      Your plan: <PlanBadge plan={user.plan} />, {allowanceText(user.tokenLimit)}
    </p>
    {user.tokenLimit !== limits[user.plan] ? (
      <p class="muted">
        {`Your limit was set when your plan was last chosen. The ${planNames[user.plan]} plan now gives ` +
          `${allowanceText(limits[user.plan])}, which applies once your plan is chosen again ` +
          'or an admin applies the new limits.'}
      </p>
    ) : null}
    <table class="plans">
      <thead>
        <tr>
          <th>Plan</th>
          <th>Allowance</th>
        </tr>
      </thead>
      <tbody>
        {plans.map((plan) => (
          <tr class={plan === user.plan ? 'current' : undefined}>
            <td>{planNames[plan]}</td>
            <td>{limitText(limits[plan])}</td>
          </tr>
        ))}
      </tbody>
    </table>
  </div>
);

/**
 * The plan page: the plans and their limits, the user's switch, and for admins every user.
 * `switchError` is a rejected plan switch, shown above the user's own switch, or above the user
 * list when it names another user.
 */
export const PlansPage: FC<{
  session: ActiveSession;
  limits: Record<Plan, number>;
  canChangePlan: boolean;
  users: PlanUserRow[] | null;
  /**
   * The admin's login search, whether more users match than the `max` listed, and why the
   * search is invalid, in which case no user is listed.
   */
  userList: { search: string; cut: boolean; max: number; error?: string | undefined };
  switchError?: { message: string; userId?: string } | undefined;
}> = ({ session, limits, canChangePlan, users, userList, switchError }) => (
  <Layout title="Plan" session={session}>
    <h1>Plan</h1>
    <section class="card">
      <OwnPlan user={session.user} limits={limits} />
      {switchError && !switchError.userId ? <FormError message={switchError.message} /> : null}
      {canChangePlan ? (
        <PlanSwitchForm session={session} current={session.user.plan} returnTo="/plans" />
      ) : (
        <AdminPlanCommands login={session.user.login} current={session.user.plan} />
      )}
    </section>

    {users ? (
      <section class="card">
        <h2>All users</h2>
        {switchError?.userId ? <FormError message={switchError.message} /> : null}
        {userList.error ? <FormError message={userList.error} id="login-search-error" /> : null}
        <form method="get" action="/plans" class="user-search">
          <label>
            Login starts with{' '}
            {/* Twice the 100 characters that the server accepts, because browsers count
                maxlength in UTF-16 code units and a character takes at most 2. */}
            <input
              type="search"
              name="login"
              value={userList.search}
              maxlength={200}
              aria-invalid={userList.error ? 'true' : undefined}
              aria-describedby={userList.error ? 'login-search-error' : undefined}
            />
          </label>{' '}
          <button type="submit">Search</button>
        </form>
        {userList.error ? null : <UserList users={users} userList={userList} session={session} />}
      </section>
    ) : null}
  </Layout>
);

/** The admin's list of users with their plans and a switch for each. */
const UserList: FC<{
  session: ActiveSession;
  users: PlanUserRow[];
  userList: { search: string; cut: boolean; max: number };
}> = ({ session, users, userList }) => (
  <>
    {userList.cut ? (
      <p class="muted">
        {`Only the first ${numberFormat.format(userList.max)} users${
          userList.search ? ` whose login starts with "${userList.search}"` : ''
        } are listed, by login. Search by login to find the others.`}
      </p>
    ) : null}
    {users.length === 0 ? <p class="muted">No user's login starts with "{userList.search}".</p> : null}
    <table class="users">
      <thead>
        <tr>
          <th>Login</th>
          <th>Plan</th>
          <th>Used</th>
          <th>Change</th>
        </tr>
      </thead>
      <tbody>
        {users.map((user) => (
          <tr>
            <td>{user.login}</td>
            <UserPlanCells user={user} />
            <td>
              <PlanSwitchForm
                session={session}
                current={user.plan}
                returnTo="/plans"
                userId={user.id}
              />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  </>
);

/**
 * Renders the plan and usage cells of a user's row in the admin's list. With `oob`, each cell
 * replaces its cell after an htmx plan switch, wrapped in a template because a table cell
 * outside a table does not parse.
 */
export const UserPlanCells: FC<{ user: PlanUserRow; oob?: boolean }> = ({ user, oob }) => {
  const swap = oob ? 'true' : undefined;
  const cells = [
    <td id={`plan-user-${user.id}-plan`} hx-swap-oob={swap}>
      <PlanBadge plan={user.plan} />
    </td>,
    <td id={`plan-user-${user.id}-used`} hx-swap-oob={swap}>
      {`${numberFormat.format(user.tokensUsed)} of ${
        user.tokenLimit < 0 ? 'unlimited' : numberFormat.format(user.tokenLimit)
      }`}
    </td>,
  ];
  return <>{oob ? cells.map((cell) => <template>{cell}</template>) : cells}</>;
};

/**
 * The response to an htmx plan switch: `notice` for the form's message, and out of band the
 * parts of the plans page that show the switched user's plan, with the notice in the message of
 * each switch of that user. `shown` names the parts that the page in the browser has, because
 * htmx reports a part without its element on the page as an error.
 */
export const PlanSwitchResult: FC<{
  notice: string;
  user: PlanUserRow;
  limits: Record<Plan, number>;
  /** The own plan block, the own switch, and the user's row in the admin's list. */
  shown: { ownPlan: boolean; ownSwitch: boolean; userRow: boolean };
}> = ({ notice, user, limits, shown }) => {
  const message = <span class="notice">{notice}</span>;
  return (
    <>
      {message}
      {shown.ownPlan ? <OwnPlan user={user} limits={limits} oob /> : null}
      {shown.ownSwitch ? (
        <>
          <PlanSelect current={user.plan} oob />
          <span id="plan-message-self" hx-swap-oob="innerHTML">
            {message}
          </span>
        </>
      ) : null}
      {shown.userRow ? (
        <>
          <UserPlanCells user={user} oob />
          <PlanSelect current={user.plan} userId={user.id} oob />
          <span id={`plan-message-${user.id}`} hx-swap-oob="innerHTML">
            {message}
          </span>
        </>
      ) : null}
    </>
  );
};
