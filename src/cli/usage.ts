/**
 * Help texts of the command line. They live apart from the commands, so `--help` prints them
 * without loading a command's modules, such as the demo's fake servers.
 */
import { maxDeliveryIdLength } from '../web/delivery-id.ts';

export const generalUsage = `Usage: fixwright <command> [options]

Commands:
  start [--role all|web|worker]   Run the HTTP server and job workers (default role: all)
  migrate                         Apply database migrations and exit
  receive --event NAME --payload FILE [--url URL] [--delivery ID] [--timeout S]
                                  Sign a webhook payload file with WEBHOOK_SECRET and post it
  users token --login NAME [--name LABEL] [--create]
                                  Create a personal access token for the JSON API
  users plan --login NAME --plan free|pro|enterprise
                                  Switch a user's plan
  users apply-limits [--plan free|pro|enterprise] [--dry-run]
                                  Give users who still have an older limit the one that
                                  PLAN_FREE_TOKENS, PLAN_PRO_TOKENS or PLAN_ENTERPRISE_TOKENS sets
  users reset-usage --login NAME  Start a new billing period for a user now
  users show --login NAME         Print a user's role, plan and usage
  users reset-admin --login NAME  Delete the GitHub id recorded for an ADMIN_LOGINS login
  keys rotate [--batch-size N]    Re-encrypt users' stored provider keys under the newest
                                  master key (the highest version set), N per transaction
  keys discard --version N [--dry-run]
                                  Delete the stored provider keys of master key version N that
                                  its configured key does not decrypt (its original key is lost)
  demo                            Run the service against fake GitHub, Groq and Gemini servers
                                  on 127.0.0.1, open a pull request and preview a fix (npm run demo)

Run "fixwright <command> --help" for the options of one command.
Configuration comes from environment variables; see README.md.
Exit status: 0 on success, 1 when the command failed, 2 for a usage or configuration error,
130 or 143 when SIGINT or SIGTERM interrupted start before the service had started, or
interrupted migrate, users or keys.`;

const startUsage = `Usage: fixwright start [--role all|web|worker]

Runs the service until SIGINT or SIGTERM: the HTTP server on HOST:PORT and the job workers.
It starts the bundled PostgreSQL in DATA_DIR when DATABASE_URL is unset, and applies the
database migrations first.

Options:
  --role all|web|worker  all: HTTP server and job workers (default); web: HTTP server only;
                         worker: job workers only. web and worker need DATABASE_URL: the
                         bundled PostgreSQL serves only the process that starts it, so the
                         processes of the two roles could not share it`;

const migrateUsage = `Usage: fixwright migrate

Applies the database migrations and exits. It takes no options.`;

const receiveUsage = `Usage: fixwright receive --event NAME --payload FILE [--url URL] [--delivery ID] [--timeout S]

Signs a webhook payload file with WEBHOOK_SECRET and posts it the way GitHub does. Exits 0
when the webhook endpoint accepted the delivery, and 1 otherwise.

Options:
  --event NAME     GitHub event name sent as X-GitHub-Event, such as pull_request (required)
  --payload FILE   path of the JSON payload file, posted byte for byte (required)
  --url URL        http or https URL to post to (default: http://HOST:PORT/webhooks/github,
                   with 127.0.0.1 for a HOST of 0.0.0.0 or ::); redirects are not followed
  --delivery ID    X-GitHub-Delivery value, 1 to ${maxDeliveryIdLength} printable ASCII characters without
                   spaces, as many as the webhook endpoint accepts (default: a new UUID)
  --timeout S      seconds to wait for the response, 1 to 600 (default: 30)`;

export const usersUsage = `Usage: fixwright users token --login NAME [--name LABEL] [--create]
       fixwright users plan --login NAME --plan free|pro|enterprise
       fixwright users apply-limits [--plan free|pro|enterprise] [--dry-run]
       fixwright users reset-usage --login NAME
       fixwright users show --login NAME
       fixwright users reset-admin --login NAME

Subcommands:
  token          create a personal access token for the JSON API for an existing user, or
                 with --create for a new one
  plan           switch the user's plan; the plan name may be in any case
  apply-limits   apply PLAN_FREE_TOKENS, PLAN_PRO_TOKENS and PLAN_ENTERPRISE_TOKENS to the
                 users whose stored limit differs, as choosing their own plan again with
                 users plan does: the period and usage are kept, usage is capped at a lower
                 limit, and each change is recorded. Changes up to 100 users per transaction
                 and prints, per plan, how many users changed and their old limits
  reset-usage    start a new billing period for the user now
  show           print the user's role, plan and usage as JSON
  reset-admin    delete the GitHub id recorded for an ADMIN_LOGINS login

Options:
  --login NAME   GitHub login of the user, matched without regard to case (required by all
                 but apply-limits), or LOGIN~ID for a user whose login GitHub gave to another
                 account
  --name LABEL   label of the new token, shown on the dashboard, 1 to 100 characters
                 (default: command line)
  --plan PLAN    free, pro or enterprise (required by users plan; apply-limits checks only
                 the users on this plan when given, and all users otherwise)
  --dry-run      with apply-limits: print what would change and change nothing
  --create       with token: create the user when no user has the login; without it, an
                 unknown login exits 1 and creates nothing`;

const keysUsage = `Usage: fixwright keys rotate [--batch-size N]
       fixwright keys discard --version N [--dry-run]

Subcommands:
  rotate    re-encrypt users' stored provider keys under the newest master key, the highest
            version that MASTER_KEYS and MASTER_KEY (version 1) set, and name the versions
            that no stored key uses any more. Exits 1 when some keys could not be rotated,
            and exits 1 without changing anything when, for a configured version, none of up
            to 5 keys stored under it decrypts with its key (a mistyped or replaced key)
  discard   delete the stored keys of master key version N that its configured key does not
            decrypt, when the original key of that version is lost, and print how many and
            whose. Exits 1 without deleting anything when one of up to 5 keys stored under
            version N decrypts with its key, and with --dry-run exits 0 and says that nothing
            would be deleted. Their owners must save the keys again. When N is the newest
            version, users can save keys only after every process is restarted

Both subcommands also print how many stored keys use each master key version when some of
those versions are not configured, and which MASTER_KEYS entries to add. rotate exits 1
then, because it could not rotate those keys.

Options:
  --batch-size N   with rotate: keys re-encrypted per transaction, 1 to 10000 (default: 100)
  --version N      with discard: the master key version, as configured (required)
  --dry-run        with discard: print what would be deleted and delete nothing`;

/** The `--login` option of the users subcommands that look up an existing user. */
const existingLoginOption = `  --login NAME   GitHub login of the user, matched without regard to case, or LOGIN~ID for a
                 user whose login GitHub gave to another account (required)`;

/** Help text of each users subcommand, printed for `fixwright users SUBCOMMAND --help`. */
const usersSubcommandUsages: Record<string, string> = {
  token: `Usage: fixwright users token --login NAME [--name LABEL] [--create]

Creates a personal access token for the JSON API for an existing user, or with --create for a
new one, and prints it once. Exits 1 when the user already has 100 live tokens.

Options:
  --login NAME   GitHub login of the user, matched without regard to case (required); without
                 --create also LOGIN~ID for a user whose login GitHub gave to another account
  --name LABEL   label of the new token, shown on the dashboard, 1 to 100 characters
                 (default: command line)
  --create       create the user when no user has the login; without it, an unknown login
                 exits 1 and creates nothing`,
  plan: `Usage: fixwright users plan --login NAME --plan free|pro|enterprise

Switches the user's plan. The plan's limit and, for a switch to pro, the period length are the
ones the service recorded at its last start; a PLAN_*_TOKENS or BILLING_PERIOD variable set here
to another value exits 1 and changes nothing.

Options:
${existingLoginOption}
  --plan PLAN    free, pro or enterprise (required)`,
  'apply-limits': `Usage: fixwright users apply-limits [--plan free|pro|enterprise] [--dry-run]

Applies PLAN_FREE_TOKENS, PLAN_PRO_TOKENS and PLAN_ENTERPRISE_TOKENS to the users whose stored
limit differs, as choosing their own plan again with users plan does: the period and usage are
kept, usage is capped at a lower limit, and each change is recorded. Changes up to 100 users per
transaction and prints, per plan, how many users changed and their old limits. The limits
are the ones the service recorded at its last start; a PLAN_*_TOKENS variable set here to
another value exits 1 and changes nothing.

Options:
  --plan PLAN    free, pro or enterprise: check only the users on this plan (default: all users)
  --dry-run      print what would change and change nothing`,
  'reset-usage': `Usage: fixwright users reset-usage --login NAME

Starts a new billing period for the user now and prints when it ends. The period length is the
BILLING_PERIOD that the service recorded at its last start; a BILLING_PERIOD variable set here
to another value exits 1 and changes nothing.

Options:
${existingLoginOption}`,
  show: `Usage: fixwright users show --login NAME

Prints the user's role, plan and usage as JSON, with the period end under the BILLING_PERIOD
that the service recorded at its last start.

Options:
${existingLoginOption}`,
  'reset-admin': `Usage: fixwright users reset-admin --login NAME

Deletes the GitHub id recorded for an ADMIN_LOGINS login, so that the next sign-in with it
records its account, and prints which role the next sign-in with it gets.

Options:
  --login NAME   a login listed in ADMIN_LOGINS, matched without regard to case (required)`,
};

/** Help text of each keys subcommand, printed for `fixwright keys SUBCOMMAND --help`. */
const keysSubcommandUsages: Record<string, string> = {
  rotate: `Usage: fixwright keys rotate [--batch-size N]

Re-encrypts users' stored provider keys under the newest master key, the highest version that
MASTER_KEYS and MASTER_KEY (version 1) set, and names the versions that no stored key uses any
more. Exits 1 when some keys could not be rotated, and exits 1 without changing anything when,
for a configured version, none of up to 5 keys stored under it decrypts with its key (a
mistyped or replaced key). When stored keys use versions that are not configured, it prints
how many use each and which MASTER_KEYS entries to add, and exits 1, because it could not
rotate those keys.

Options:
  --batch-size N   keys re-encrypted per transaction, 1 to 10000 (default: 100)`,
  discard: `Usage: fixwright keys discard --version N [--dry-run]

Deletes the stored keys of master key version N that its configured key does not decrypt,
when the original key of that version is lost, and prints how many and whose. Their owners
must save the keys again. When N is the newest version, users can save keys only after every
process is restarted. Exits 1 without deleting anything when one of up to 5 keys stored under
version N decrypts with its key, because that key is the one they were encrypted with. When
stored keys use versions that are not configured, it also prints how many use each and which
MASTER_KEYS entries to add.

Options:
  --version N   the master key version, as configured (required)
  --dry-run     print what would be deleted and delete nothing. Exits 0 also when the key of
                version N decrypts its stored keys, and then says that nothing would be deleted`,
};

const demoUsage = `Usage: fixwright demo

Runs the service against fake GitHub, Groq and Gemini servers on 127.0.0.1, with the bundled
PostgreSQL in a new temporary folder, opens a pull request and previews a fix (npm run demo).
Stop it with Ctrl-C (SIGINT) or SIGTERM. It takes no options.`;

/** Returns the `users plan` command that switches the user with `login` to `plan`. */
export function planSwitchCommand(login: string, plan: string): string {
  return `npx fixwright users plan --login ${login} --plan ${plan}`;
}

/** Help text of each command, printed for `fixwright COMMAND --help`. */
const commandUsages: Record<string, string> = {
  start: startUsage,
  migrate: migrateUsage,
  receive: receiveUsage,
  users: usersUsage,
  keys: keysUsage,
  demo: demoUsage,
};

const subcommandUsages: Record<string, Record<string, string>> = {
  users: usersSubcommandUsages,
  keys: keysSubcommandUsages,
};

/** Returns the subcommand that `args` of `command` start with, when it has its own help text. */
function findSubcommand(command: string, args: readonly string[]): string | null {
  const subcommand = args[0];
  if (subcommand === undefined || !Object.hasOwn(subcommandUsages, command)) return null;
  return Object.hasOwn(subcommandUsages[command]!, subcommand) ? subcommand : null;
}

/**
 * Returns the help text for `fixwright COMMAND ARGS --help`: that of the subcommand when
 * `args` starts with one, and that of the command otherwise.
 */
export function findUsage(command: string, args: readonly string[]): string {
  const subcommand = findSubcommand(command, args);
  return subcommand === null ? commandUsages[command]! : subcommandUsages[command]![subcommand]!;
}

/** Returns the help command that covers `fixwright COMMAND ARGS`, for error messages. */
export function helpCommand(command: string, args: readonly string[]): string {
  if (!Object.hasOwn(commandUsages, command)) return 'fixwright --help';
  const subcommand = findSubcommand(command, args);
  return subcommand === null ? `fixwright ${command} --help` : `fixwright ${command} ${subcommand} --help`;
}
