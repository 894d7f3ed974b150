import { codeRules } from './code-rules.ts';
import type { AddedLine } from './patch.ts';
import { findPrivateKeyBlocks, secretRules } from './secret-rules.ts';

export type Severity = 'error' | 'warning' | 'notice';

export type RuleId =
  | 'secret/aws-access-key-id'
  | 'secret/private-key'
  | 'secret/hardcoded-credential'
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
  check(path: string, lines: readonly AddedLine[]): RuleFinding[];
}

export const rules: readonly Rule[] = [...secretRules, ...codeRules];

/**
 * Runs every rule over the lines a patch adds to the file at `path`. Lines inside a private key
 * block are key material, so only the private key rule checks them and no other excerpt shows them.
 */
export function runRules(path: string, lines: readonly AddedLine[]): RuleFinding[] {
  const keyMaterial = new Set<number>();
  for (const block of findPrivateKeyBlocks(lines)) {
    for (let line = block.startLine + 1; line < block.endLine; line += 1) {
      keyMaterial.add(line);
    }
  }
  const otherLines = lines.filter((added) => !keyMaterial.has(added.line));

  return rules.flatMap((rule) =>
    rule.id === 'secret/private-key' ? rule.check(path, lines) : rule.check(path, otherLines),
  );
}
