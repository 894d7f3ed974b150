import { codeRules } from './code-rules.ts';
import type { AddedLine } from './patch.ts';
import {
  privateKeyBlockSteps,
  privateKeyFindingSteps,
  privateKeyRule,
  secretRules,
} from './secret-rules.ts';
import { runSteps, StepMeter, type Steps } from './steps.ts';

export type Severity = 'error' | 'warning' | 'notice';

export type RuleId =
  | 'secret/aws-access-key-id'
  | 'secret/private-key'
  | 'secret/hardcoded-credential'
  | 'secret/github-token'
  | 'secret/stripe-secret-key'
  | 'secret/slack-token'
  | 'secret/slack-webhook-url'
  | 'secret/jwt'
  | 'secret/connection-url-password'
  | 'debug/console-log'
  | 'debug/debugger'
  | 'debug/python-print'
  | 'merge-conflict-marker'
  | 'todo-comment';

/** A problem that a rule found on lines of one file, without the file path. */
export interface RuleFinding {
  ruleId: RuleId;
  severity: Severity;
  message: string;
  startLine: number;
  endLine: number;
  excerpt: string;
}

/** A check over the lines that a patch adds to one file. */
export interface Rule {
  id: RuleId;
  severity: Severity;
  /** Checks the lines in steps, so that a large file can share the event loop. */
  check(path: string, lines: readonly AddedLine[]): Steps<RuleFinding[]>;
}

export const rules: readonly Rule[] = [...secretRules, ...codeRules];

/**
 * Runs every rule over the lines a patch adds to the file at `path`. Lines inside a private key
 * block are key material, so only the private key rule checks them and no other excerpt shows them.
 */
export function runRules(path: string, lines: readonly AddedLine[]): RuleFinding[] {
  return runSteps(runRuleSteps(path, lines));
}

/**
 * Runs every rule as `runRules` does, in steps. The private key blocks are found once, both to
 * leave their lines out of the other rules and for the private key rule's findings.
 */
export function* runRuleSteps(path: string, lines: readonly AddedLine[]): Steps<RuleFinding[]> {
  const meter = new StepMeter();
  const keyMaterial = new Set<number>();
  const privateKeyBlocks = yield* privateKeyBlockSteps(lines);
  for (const block of privateKeyBlocks) {
    for (let line = block.startLine + 1; line < block.endLine; line += 1) {
      keyMaterial.add(line);
      if (meter.count(0)) {
        yield;
      }
    }
  }
  const otherLines: AddedLine[] = [];
  for (const added of lines) {
    if (!keyMaterial.has(added.line)) {
      otherLines.push(added);
    }
    if (meter.count(0)) {
      yield;
    }
  }

  const findings: RuleFinding[] = [];
  for (const rule of rules) {
    const found =
      rule === privateKeyRule
        ? yield* privateKeyFindingSteps(path, privateKeyBlocks)
        : yield* rule.check(path, otherLines);
    for (const finding of found) {
      findings.push(finding);
    }
  }
  return findings;
}
