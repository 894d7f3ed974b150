import os from 'node:os';
import { sql } from 'drizzle-orm';
import type { Config } from '../config/env.ts';
import type { Database } from '../db/client.ts';
import { users } from '../db/schema/index.ts';
import type { Logger } from '../logger.ts';
import { countCharacters } from '../text/character-count.ts';
import { joinWithOr } from '../text/plural.ts';
import { shortenText } from '../text/quote-value.ts';
import { maxTokenNameLength, mintApiToken, TokenLimitError } from '../users/api-tokens.ts';
import { resetAdminLogin } from '../users/sync-admin-role.ts';
import { applyPlanLimits } from '../usage/apply-limits.ts';
import { changePlan, isPlan, resetUsage } from '../usage/plans.ts';
import { periodColumns } from '../usage/period.ts';
import { getUsageStats } from '../usage/stats.ts';
import { ServiceSettingMismatchError, withServiceSettings } from '../usage/service-plan-limits.ts';
import { CommandError, CommandFailedError } from './command-error.ts';
import { parseCommandOptions, rejectOtherOptions, suggestClosest } from './parse-options.ts';
import { withDatabase } from './with-database.ts';
import { describeLoginProblem, formerLoginOf } from '../users/github-login.ts';
import { findCloseLogins } from '../users/close-logins.ts';
import { usersUsage } from './usage.ts';
import { describeApplyLimits } from './apply-limits-report.ts';
import { describeResetAdmin } from './reset-admin-report.ts';

/** Users that `users apply-limits` processes between two progress lines. */
const progressEvery = 1000;

const subcommands = ['token', 'plan', 'apply-limits', 'reset-usage', 'show', 'reset-admin'] as const;

/** Options that each users subcommand takes. */
const subcommandOptions: Record<(typeof subcommands)[number], string[]> = {
  token: ['login', 'name', 'create'],
  plan: ['login', 'plan'],
  'apply-limits': ['plan', 'dry-run'],
  'reset-usage': ['login'],
  show: ['login'],
  'reset-admin': ['login'],
};

/**
 * Checks the `--login` value of `subcommand`. Returns the error message, or null when the login
 * is valid. A login renamed to `LOGIN~ID` names an existing user, so it is accepted wherever
 * the command looks a user up, but not where it creates a user or reads ADMIN_LOGINS.
 */
function describeInvalidLogin(login: string, subcommand: string, create: boolean): string | null {
  const quoted = JSON.stringify(shortenText(login, 60));
  const formerLogin = formerLoginOf(login);
  const problem = describeLoginProblem(formerLogin ?? login);
  if (problem !== null) {
    const renamedHint = login.includes('~') && formerLogin === null ? renamedLoginHint : '';
    return `Invalid --login ${quoted}: ${problem}${renamedHint}.`;
  }
  if (formerLogin === null) return null;
  if (create) {
    return (
      `Invalid --login ${quoted} with --create: a login of the form LOGIN~ID names a user ` +
      'whose login GitHub gave to another account, so no new user can have it. Give the ' +
      'GitHub login of the account to create a user for.'
    );
  }
  if (subcommand === 'reset-admin') {
    return (
      `Invalid --login ${quoted} for users reset-admin: give a login listed in ADMIN_LOGINS, ` +
      'which are GitHub logins without "~".'
    );
  }
  return null;
}

const renamedLoginHint =
  '; a user whose login GitHub gave to another account is named LOGIN~ID, with ID its ' +
  'GitHub id or, when it has none, its user id';

export async function runUsersCommand(config: Config, logger: Logger, args: string[]): Promise<number> {
  const [subcommand, ...rest] = args;
  if (subcommand === '--help' || subcommand === '-h' || subcommand === 'help') {
    console.log(usersUsage);
    return 0;
  }
  if (!subcommand) throw new CommandError(`Missing users command: use ${subcommands.join(', ')}.`);
  if (!subcommands.includes(subcommand as (typeof subcommands)[number])) {
    throw new CommandError(
      `Unknown users command ${JSON.stringify(subcommand)}: use ${subcommands.join(', ')}.` +
        suggestClosest(subcommand, subcommands),
    );
  }
  const command = `users ${subcommand}`;
  const accepted = subcommandOptions[subcommand as (typeof subcommands)[number]];
  const { values, suppliedOptions } = parseCommandOptions(
    command,
    rest,
    {
      login: { type: 'string' },
      name: { type: 'string' },
      plan: { type: 'string' },
      'dry-run': { type: 'boolean' },
      create: { type: 'boolean' },
    },
    accepted,
  );
  rejectOtherOptions(command, suppliedOptions, accepted);
  // Plan names are stored in lower case, and logins match without regard to case too.
  const plan = values.plan?.toLowerCase();
  const changedBy = `cli:${os.userInfo().username}`;
  if (subcommand === 'apply-limits') {
    if (plan !== undefined && !isPlan(plan)) throw invalidPlanError(values.plan!);
    // A run on many users takes minutes, so stderr gets a line per 1,000 users processed.
    let reported = 0;
    const onProgress = ({ processed }: { processed: number }) => {
      if (processed - reported < progressEvery) return;
      reported = processed;
      console.error(`${processed} users with another limit processed so far...`);
    };
    const options = { plan, dryRun: values['dry-run'] ?? false, changedBy, onProgress };
    return withDatabase(config, logger, async (db) => {
      const serviceConfig = await resolveServiceSettings(db, config);
      const report = await applyPlanLimits(db, serviceConfig, logger, options);
      for (const line of describeApplyLimits(report)) console.log(line);
      return 0;
    }, { command });
  }
  const login = values.login?.trim();
  if (!login) throw new CommandError('Missing --login: give the GitHub login of the user.');
  const loginProblem = describeInvalidLogin(login, subcommand, values.create ?? false);
  if (loginProblem) throw new CommandError(loginProblem);
  if (subcommand === 'plan' && !values.plan) {
    throw new CommandError('Missing --plan: use free, pro or enterprise.');
  }
  if (subcommand === 'plan' && !isPlan(plan ?? '')) throw invalidPlanError(values.plan!);
  // The same rule as the dashboard's tokens page, which lists the names.
  const tokenName = values.name === undefined ? 'command line' : values.name.trim();
  const tokenNameLength = countCharacters(tokenName);
  if (subcommand === 'token' && (tokenNameLength === 0 || tokenNameLength > maxTokenNameLength)) {
    throw new CommandError(
      `Invalid --name: it has ${tokenNameLength} characters without the spaces around it; ` +
        `give 1 to ${maxTokenNameLength}, such as "ci".`,
    );
  }

  return withDatabase(config, logger, async (db) => {
    if (subcommand === 'token') {
      // A mistyped login would otherwise create a user that no GitHub account links to until
      // someone with that login installs the app or signs in.
      const existing = await findUser(db, login);
      if (!existing && !values.create) {
        const notFound = `User ${JSON.stringify(login)} not found, so no token was created.`;
        const hint = await describeCloseLogins(db, login);
        throw new CommandFailedError(
          hint
            ? `${notFound} ${hint}`
            : `${notFound} Check the login, or run "fixwright users token --login ${login} ` +
                '--create" to create a user with it.',
        );
      }
      const user = existing
        ? { ...existing, created: false }
        : await createUser(db, login, await resolveServiceSettings(db, config));
      const { token } = await mintApiToken(db, user.id, tokenName).catch(
        (error) => {
          if (error instanceof TokenLimitError) throw new CommandFailedError(error.message);
          throw error;
        },
      );
      if (user.created) {
        console.error(
          `Created user ${user.login}; their installations link to it on the next installation event.`,
        );
      }
      console.error(`Personal access token for ${user.login} (shown once; store it now):`);
      console.log(token);
      return 0;
    }

    if (subcommand === 'reset-admin') {
      const githubId = await resetAdminLogin(db, login);
      console.log(await describeResetAdmin(db, login, githubId, config.ADMIN_LOGINS));
      return 0;
    }

    const user = await findUser(db, login);
    if (!user) {
      // A login close to an existing one is most likely a typo, so creating a user with it is
      // not suggested then.
      const hint = await describeCloseLogins(db, login);
      throw new CommandFailedError(
        hint
          ? `User ${JSON.stringify(login)} not found. ${hint}`
          : `User ${JSON.stringify(login)} not found. Users appear when they install the app or ` +
              `sign in, or create one with "fixwright users token --login ${login} --create".`,
      );
    }
    // Logins match without regard to case, so the output names the user as stored.
    if (subcommand === 'plan') {
      const serviceConfig = await resolveServiceSettings(db, config);
      const result = await changePlan(db, serviceConfig, { userId: user.id, plan: plan as never, changedBy });
      if (!result.changed) {
        console.log(
          `${user.login} is already on ${result.toPlan}; nothing changed. To start a new period, run ` +
            `fixwright users reset-usage --login ${user.login}.`,
        );
        return 0;
      }
      console.log(
        `${user.login}: ${result.fromPlan} -> ${result.toPlan}, limit ${result.limit < 0 ? 'unlimited' : result.limit}, ` +
          `used ${result.usedBefore} -> ${result.usedAfter}`,
      );
      return 0;
    }
    if (subcommand === 'reset-usage') {
      const serviceConfig = await resolveServiceSettings(db, config);
      const result = await resetUsage(db, serviceConfig, { userId: user.id, changedBy, reason: 'usage_reset' });
      console.log(
        `${user.login}: used ${result!.usedBefore} -> 0; a new period starts now and ends ` +
          `${result!.periodEndsAt.toISOString()}.`,
      );
      return 0;
    }
    // The period end shown is the one the service's BILLING_PERIOD gives.
    const stats = await getUsageStats(db, await resolveServiceSettings(db, config), user.id);
    console.log(JSON.stringify({ login: user.login, role: user.role, ...stats }, null, 2));
    return 0;
  }, { command });
}

/**
 * Returns `config` with the plan limits and BILLING_PERIOD that the service recorded at its
 * last start, or raises CommandFailedError when this shell sets a different one.
 */
async function resolveServiceSettings(db: Database, config: Config): Promise<Config> {
  try {
    return await withServiceSettings(db, config, process.env);
  } catch (error) {
    if (error instanceof ServiceSettingMismatchError) throw new CommandFailedError(error.message);
    throw error;
  }
}

/** Builds the "Did you mean" hint with the stored logins close to `login`, or null when none is. */
async function describeCloseLogins(db: Database, login: string): Promise<string | null> {
  const close = await findCloseLogins(db, login);
  if (close.length === 0) return null;
  return `Did you mean ${joinWithOr(close)}?`;
}

function invalidPlanError(plan: string): CommandError {
  return new CommandError(`Invalid --plan ${JSON.stringify(plan)}: use free, pro or enterprise.`);
}

async function findUser(db: Database, login: string) {
  const [user] = await db
    .select({ id: users.id, login: users.login, role: users.role })
    .from(users)
    .where(sql`lower(${users.login}) = lower(${login})`);
  return user;
}

/** Creates a user with `login`, or returns the user that another command created first. */
async function createUser(db: Database, login: string, config: Config) {
  const now = new Date();
  const [created] = await db
    .insert(users)
    .values({ login, tokenLimit: config.PLAN_FREE_TOKENS, ...periodColumns(now, now, config.BILLING_PERIOD) })
    .onConflictDoNothing()
    .returning({ id: users.id, login: users.login });
  if (created) return { ...created, created: true };
  const raced = await findUser(db, login);
  return { ...raced!, created: false };
}
