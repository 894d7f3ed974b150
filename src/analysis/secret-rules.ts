import { buildExcerptSteps } from './excerpt.ts';
import { findSteps } from './line-search.ts';
import { lineRule } from './line-rule.ts';
import type { AddedLine } from './patch.ts';
import type { Rule, RuleFinding } from './rules.ts';
import {
  findAwsAccessKeyIdSteps,
  findHardcodedCredentialSteps,
  PRIVATE_KEY_BEGIN_SEARCH,
} from './secrets.ts';
import { StepMeter, type Steps } from './steps.ts';

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

const hardcodedCredentialRule = lineRule({
  id: 'secret/hardcoded-credential',
  severity: 'error',
  *match(text, path) {
    const [credential] = yield* findHardcodedCredentialSteps(text, path);
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

export const secretRules: readonly Rule[] = [
  awsAccessKeyIdRule,
  privateKeyRule,
  hardcodedCredentialRule,
];
