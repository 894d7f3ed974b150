import { buildExcerptSteps } from './excerpt.ts';
import { findSteps } from './line-search.ts';
import { lineRule } from './line-rule.ts';
import type { AddedLine } from './patch.ts';
import type { Rule, RuleFinding, RuleId } from './rules.ts';
import {
  findAwsAccessKeyIdSteps,
  findConnectionUrlPasswordSteps,
  findFormattedSecretSteps,
  findHardcodedCredentialSteps,
  PRIVATE_KEY_BEGIN_SEARCH,
  type SecretSpan,
} from './secrets.ts';
import { sortSteps, StepMeter, type Steps } from './steps.ts';
import { findTokenSteps, type TokenKind } from './token-secrets.ts';

/** A PEM private key block among the added lines, by new-file line numbers. */
export interface PrivateKeyBlock {
  startLine: number;
  /** The END marker line, or startLine when the END marker is not an added line. */
  endLine: number;
  /** The BEGIN marker line. */
  text: string;
  /** The index of the BEGIN marker in `text`. */
  index: number;
}

/**
 * Finds PEM private key blocks. Each BEGIN marker pairs with the next END marker of the same
 * label among the added lines, unless another BEGIN marker comes first.
 */
export function* privateKeyBlockSteps(lines: readonly AddedLine[]): Steps<PrivateKeyBlock[]> {
  const blocks: PrivateKeyBlock[] = [];
  const meter = new StepMeter();

  for (let beginIndex = 0; beginIndex < lines.length; beginIndex += 1) {
    const begin = lines[beginIndex]!;
    if (meter.count(begin.text.length)) {
      yield;
    }
    const marker = yield* findSteps(begin.text, PRIVATE_KEY_BEGIN_SEARCH, 0, meter);
    if (!marker) {
      continue;
    }
    const block: PrivateKeyBlock = {
      startLine: begin.line,
      endLine: begin.line,
      text: begin.text,
      index: marker.index,
    };
    blocks.push(block);

    const endMarker = `-----END ${marker[1]}-----`;
    if (begin.text.includes(endMarker, marker.index)) {
      continue;
    }
    for (let endIndex = beginIndex + 1; endIndex < lines.length; endIndex += 1) {
      const candidate = lines[endIndex]!;
      if (meter.count(candidate.text.length)) {
        yield;
      }
      if ((yield* findSteps(candidate.text, PRIVATE_KEY_BEGIN_SEARCH, 0, meter)) !== null) {
        break;
      }
      if (candidate.text.includes(endMarker)) {
        block.endLine = candidate.line;
        beginIndex = endIndex;
        break;
      }
    }
  }
  return blocks;
}

const awsAccessKeyIdRule = lineRule({
  id: 'secret/aws-access-key-id',
  severity: 'error',
  *match(text) {
    const [key] = yield* findAwsAccessKeyIdSteps(text);
    if (key === undefined) {
      return undefined;
    }
    return {
      index: key.start,
      message:
        'This line contains an AWS access key ID, so deactivate the key in AWS IAM and load ' +
        'credentials from the environment or a secret manager instead.',
    };
  },
});

/** Returns the findings of the private key rule for `blocks` of the file at `path`. */
export function* privateKeyFindingSteps(
  path: string,
  blocks: readonly PrivateKeyBlock[],
): Steps<RuleFinding[]> {
  const findings: RuleFinding[] = [];
  for (const block of blocks) {
    findings.push({
      ruleId: 'secret/private-key',
      severity: 'error',
      message:
        'A private key is committed here, so revoke it, issue a new one and keep it out of the ' +
        'repository, for example in a secret manager.',
      startLine: block.startLine,
      endLine: block.endLine,
      excerpt: yield* buildExcerptSteps(block.text, path, block.index),
    });
  }
  return findings;
}

export const privateKeyRule: Rule = {
  id: 'secret/private-key',
  severity: 'error',
  *check(path, lines) {
    return yield* privateKeyFindingSteps(path, yield* privateKeyBlockSteps(lines));
  },
};

/**
 * Reports a credential assigned to a name such as `password` or `apiKey`, unless secrets that
 * other rules report overlap every such value on the line, as in `GITHUB_TOKEN="ghp_…"`. Their
 * messages name what to revoke.
 */
const hardcodedCredentialRule = lineRule({
  id: 'secret/hardcoded-credential',
  severity: 'error',
  *match(text, path) {
    const credentials = yield* findHardcodedCredentialSteps(text, path);
    if (credentials.length === 0) {
      return undefined;
    }
    const credential = yield* firstUnreportedSteps(credentials, text);
    if (credential === undefined) {
      return undefined;
    }
    return {
      index: credential.start,
      message:
        'A credential is hard-coded in this line, so rotate it and read the value from the ' +
        'environment or a secret manager instead.',
    };
  },
});

/**
 * Returns the first of `credentials` that no secret found by its format overlaps. Both lists
 * are walked once in order of their start, so a line of thousands of credentials stays linear.
 */
function* firstUnreportedSteps(
  credentials: readonly SecretSpan[],
  text: string,
): Steps<SecretSpan | undefined> {
  const byStart = (left: SecretSpan, right: SecretSpan) => left.start - right.start;
  const others = yield* sortSteps(yield* findFormattedSecretSteps(text), byStart);
  const meter = new StepMeter();
  let next = 0;
  for (const credential of yield* sortSteps([...credentials], byStart)) {
    // A secret that ends before this credential starts also ends before every later one.
    while (next < others.length && others[next]!.end <= credential.start) {
      next += 1;
    }
    // The first secret left starts first, so no other can overlap when it starts too late.
    if (next === others.length || others[next]!.start >= credential.end) {
      return credential;
    }
    if (meter.count(0)) {
      yield;
    }
  }
  return undefined;
}

/** Creates a rule that reports the first secret that `find` finds on an added line. */
function formattedSecretRule(
  id: RuleId,
  find: (text: string) => Steps<SecretSpan[]>,
  message: string,
): Rule {
  return lineRule({
    id,
    severity: 'error',
    *match(text) {
      const [secret] = yield* find(text);
      return secret === undefined ? undefined : { index: secret.start, message };
    },
  });
}

function tokenRule(id: RuleId, kind: TokenKind, message: string): Rule {
  return formattedSecretRule(id, (text) => findTokenSteps(text, kind), message);
}

const readInstead = 'and read its replacement from the environment or a secret manager instead.';

export const secretRules: readonly Rule[] = [
  awsAccessKeyIdRule,
  tokenRule(
    'secret/github-token',
    'github-token',
    'This line contains a GitHub token, so revoke it in the GitHub settings of the account or ' +
      `app that owns it ${readInstead}`,
  ),
  tokenRule(
    'secret/stripe-secret-key',
    'stripe-secret-key',
    `This line contains a Stripe live secret key, so roll the key in the Stripe Dashboard ${readInstead}`,
  ),
  tokenRule(
    'secret/slack-token',
    'slack-token',
    `This line contains a Slack token, so revoke it in the Slack app's settings ${readInstead}`,
  ),
  tokenRule(
    'secret/slack-webhook-url',
    'slack-webhook-url',
    'This line contains a Slack webhook URL, which lets anyone post to its channel, so ' +
      `regenerate the URL in the Slack app's settings ${readInstead}`,
  ),
  tokenRule(
    'secret/jwt',
    'jwt',
    'This line contains a JSON Web Token, so revoke it or rotate its signing key unless it has ' +
      `expired, ${readInstead}`,
  ),
  formattedSecretRule(
    'secret/connection-url-password',
    findConnectionUrlPasswordSteps,
    'A URL in this line contains a password, so change the password on its server and read ' +
      'the URL or the password from the environment or a secret manager instead.',
  ),
  privateKeyRule,
  hardcodedCredentialRule,
];
