import { buildExcerpt } from './excerpt.ts';
import type { Rule, RuleId, Severity } from './rules.ts';

/** A problem on one line: its index in the line and the message for the author. */
export interface LineMatch {
  index: number;
  message: string;
}

export interface LineRuleOptions {
  id: RuleId;
  severity: Severity;
  /** Limits the rule to some file types. Without it the rule checks every file. */
  appliesTo?: (path: string) => boolean;
  /** Returns the problem on one line, or undefined when the line is fine. */
  match: (text: string, path: string) => LineMatch | undefined;
}

/** Creates a rule that reports at most one finding per added line. */
export function lineRule(options: LineRuleOptions): Rule {
  return {
    id: options.id,
    severity: options.severity,
    check(path, lines) {
      if (options.appliesTo && !options.appliesTo(path)) {
        return [];
      }
      return lines.flatMap((added) => {
        const match = options.match(added.text, path);
        if (match === undefined) {
          return [];
        }
        return [
          {
            ruleId: options.id,
            severity: options.severity,
            message: match.message,
            startLine: added.line,
            endLine: added.line,
            excerpt: buildExcerpt(added.text, path, match.index),
          },
        ];
      });
    },
  };
}
