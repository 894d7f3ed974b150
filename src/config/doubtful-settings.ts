import { countCharacters } from '../text/character-count.ts';
import { maxTotalTimeoutSecondsWithinJobs } from '../github/app.ts';
import type { Config } from './env.ts';

/**
 * WEBHOOK_SECRET length below which the start warns. GitHub's "Validating webhook deliveries"
 * page says to "choose a random string of text with high entropy". The check catches words and
 * placeholders such as "dev-secret", but a secret of 16 characters or more is not random for
 * that.
 */
export const minWebhookSecretLength = 16;

/** A plan token limit setting, in the order of the plans from the smallest limit up. */
const planSettings = ['PLAN_FREE_TOKENS', 'PLAN_PRO_TOKENS', 'PLAN_ENTERPRISE_TOKENS'] as const;

/**
 * Lists settings that are valid but probably not meant, one warning line each, for the start-up
 * log: a short WEBHOOK_SECRET, dashboard sign-in without ADMIN_LOGINS, a GitHub request time
 * limit that lets a call outlast a job, and plan limits where a higher plan gets fewer tokens
 * than a lower one. With `http: false` (a worker process) it
 * leaves out WEBHOOK_SECRET and ADMIN_LOGINS, which only the HTTP server uses. No line repeats a
 * secret.
 */
export function describeDoubtfulSettings(config: Config, options: { http?: boolean } = {}): string[] {
  const lines: string[] = [];
  const http = options.http ?? true;
  const secret = config.WEBHOOK_SECRET;
  if (http && secret !== undefined && countCharacters(secret) < minWebhookSecretLength) {
    lines.push(
      `WEBHOOK_SECRET has ${countCharacters(secret)} characters, fewer than ` +
        `${minWebhookSecretLength}: whoever guesses it can post webhooks that Fixwright takes ` +
        "for GitHub's. Set a long random string, such as the output of \"openssl rand -hex 32\", " +
        'on the GitHub App and in WEBHOOK_SECRET.',
    );
  }
  const signInConfigured = Boolean(config.GITHUB_CLIENT_ID && config.GITHUB_CLIENT_SECRET);
  if (http && signInConfigured && config.ADMIN_LOGINS.length === 0) {
    lines.push(
      'ADMIN_LOGINS is unset while dashboard sign-in is configured (GITHUB_CLIENT_ID and ' +
        'GITHUB_CLIENT_SECRET), so the first GitHub account to sign in while no admin exists ' +
        'becomes admin, whoever it is. Set ADMIN_LOGINS to the GitHub logins of the admins, ' +
        'separated by commas, and restart.',
    );
  }
  const totalTimeout = config.GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS;
  if (totalTimeout > maxTotalTimeoutSecondsWithinJobs) {
    lines.push(
      `GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS is ${totalTimeout}, so one GitHub call with its 3 ` +
        'retries can outlast the 5-minute time limit of the shortest jobs, and pg-boss then ' +
        'ends such a job as expired and runs it again. Set at most ' +
        `${maxTotalTimeoutSecondsWithinJobs} unless GitHub's responses need longer.`,
    );
  }
  for (const [index, lower] of planSettings.slice(0, -1).entries()) {
    const higher = planSettings[index + 1]!;
    if (tokensOf(config[lower]) <= tokensOf(config[higher])) continue;
    lines.push(
      `${lower} (${describeLimit(config[lower])}) is more than ${higher} ` +
        `(${describeLimit(config[higher])}), so a user who moves up to the ${planName(higher)} ` +
        `plan gets fewer tokens than on the ${planName(lower)} plan. Check the two values.`,
    );
  }
  return lines;
}

/** Returns a plan limit as a number of tokens that compares, with -1 (unlimited) as Infinity. */
function tokensOf(limit: number): number {
  return limit === -1 ? Number.POSITIVE_INFINITY : limit;
}

function describeLimit(limit: number): string {
  return limit === -1 ? 'unlimited, -1' : `${limit} tokens`;
}

/** Returns the plan that a PLAN_*_TOKENS setting limits, such as "pro". */
function planName(setting: (typeof planSettings)[number]): string {
  return setting.slice('PLAN_'.length, -'_TOKENS'.length).toLowerCase();
}
