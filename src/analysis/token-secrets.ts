/**
 * Finds secrets that their own format gives away, whatever name they are assigned to: GitHub
 * tokens, Stripe live secret keys, Slack tokens and webhook URLs, and JSON Web Tokens.
 *
 * Every pattern takes linear time on a line of megabytes. A lookbehind right after its literal
 * prefix rejects a prefix inside a run of the token's own characters, so a run such as
 * `eyJeyJeyJ…` is read once, not once per repeat. The parts that repeat are single character
 * classes separated by a character outside them, so a failed try backtracks over each run once.
 * The lookbehind follows the prefix because at the start of a pattern it made the search of
 * short lines several times slower (BENCHMARKS.md, "Rules for tokens and connection URL
 * passwords").
 */
import { matchAllSteps, mayMatch, steppedPattern, type SteppedPattern } from './line-search.ts';
import type { SecretSpan } from './secrets.ts';
import { StepMeter, type Steps } from './steps.ts';

export type TokenKind =
  | 'github-token'
  | 'stripe-secret-key'
  | 'slack-token'
  | 'slack-webhook-url'
  | 'jwt';

/**
 * GitHub's personal, OAuth, user-to-server, server-to-server and refresh tokens: `ghp_`, `gho_`,
 * `ghu_`, `ghs_` or `ghr_` and 36 characters of `[A-Za-z0-9_]`, which GitHub's changelog of
 * 2021-03-31 says may grow up to 255 in all. Fine-grained personal access tokens are
 * `github_pat_` and 82 such characters.
 */
export const GITHUB_TOKEN_SEARCH = steppedPattern(
  /(?:gh[pousr]_(?<!\wgh[pousr]_)\w{36,}|github_pat_(?<!\wgithub_pat_)\w{82,})(?!\w)/,
  /gh[pousr]_|github_pat_/,
  'github_pat_'.length,
);

/** Stripe's live secret keys (`sk_live_`) and restricted keys (`rk_live_`). */
export const STRIPE_SECRET_KEY_SEARCH = steppedPattern(
  /[rs]k_live_(?<!\w[rs]k_live_)[A-Za-z0-9]{24,}(?!\w)/,
  /[rs]k_live_/,
  'sk_live_'.length,
);

/**
 * Slack's bot (`xoxb-`), user (`xoxp-`), workspace app (`xoxa-`), refresh (`xoxr-`, `xoxe-`) and
 * legacy (`xoxs-`) tokens: the prefix, a number, `-` and at least 10 more characters. Slack's
 * samples such as `xoxb-your-token` have no number after the prefix.
 */
export const SLACK_TOKEN_SEARCH = steppedPattern(
  /xox[abeprs]-(?<![A-Za-z0-9-]xox[abeprs]-)\d+-[A-Za-z0-9-]{10,}/,
  /xox[abeprs]-/,
  'xoxb-'.length,
);

/**
 * A Slack webhook URL from its host. Group 1 is the path after `/services/`, `/workflows/` or
 * `/triggers/`: the team id, one or two more ids and the secret. The secret span is that whole
 * path, so its mask shows only the first 4 characters of the team id and the last 4 of the
 * secret.
 */
export const SLACK_WEBHOOK_SEARCH = steppedPattern(
  new RegExp(
    String.raw`hooks\.slack\.com/(?:services|workflows|triggers)/` +
      String.raw`(T[A-Z0-9]{6,}(?:/[A-Za-z0-9]{6,}){1,2}/[A-Za-z0-9]{16,})(?![A-Za-z0-9])`,
  ),
  /hooks\.slack\.com\//,
  'hooks.slack.com/'.length,
);

/**
 * A JSON Web Token: three base64url segments separated by `.`, the first starting with `eyJ`,
 * which is how `{"` starts in base64. The lengths leave out a token without a signature, which
 * grants nothing.
 */
export const JWT_SEARCH = steppedPattern(
  /eyJ(?<![\w-]eyJ)[\w-]{7,}\.[\w-]{10,}\.[\w-]{16,}(?![\w-])/,
  /eyJ/,
  'eyJ'.length,
);

const tokenSearches: Record<TokenKind, SteppedPattern> = {
  'github-token': GITHUB_TOKEN_SEARCH,
  'stripe-secret-key': STRIPE_SECRET_KEY_SEARCH,
  'slack-token': SLACK_TOKEN_SEARCH,
  'slack-webhook-url': SLACK_WEBHOOK_SEARCH,
  jwt: JWT_SEARCH,
};

export const tokenKinds = Object.keys(tokenSearches) as TokenKind[];

// Documentation and tests fill token formats with these, as in Slack's sample webhook URL
// `https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX`.
const TOKEN_PLACEHOLDER = /xxxx|example|your[_-]|placeholder|redacted/i;

/**
 * Finds the tokens of one kind on a line, skipping placeholders, in steps. A pattern with a
 * group has the token in group 1, at the end of the match, and the other patterns match the
 * token alone.
 */
export function* findTokenSteps(
  text: string,
  kind: TokenKind,
  meter = new StepMeter(),
): Steps<SecretSpan[]> {
  const spans: SecretSpan[] = [];
  const search = tokenSearches[kind];
  if (!mayMatch(text, search)) {
    return spans;
  }
  for (const match of yield* matchAllSteps(text, search, meter)) {
    const token = match[1] ?? match[0];
    if (!TOKEN_PLACEHOLDER.test(token)) {
      const end = match.index + match[0].length;
      spans.push({ kind, start: end - token.length, end });
    }
  }
  return spans;
}

/** Finds the tokens of every kind on a line, in steps. */
export function* findAllTokenSteps(text: string, meter = new StepMeter()): Steps<SecretSpan[]> {
  const spans: SecretSpan[] = [];
  for (const kind of tokenKinds) {
    for (const span of yield* findTokenSteps(text, kind, meter)) {
      spans.push(span);
    }
  }
  return spans;
}
