import { buildExcerptSteps } from './excerpt.ts';
import type { Rule, RuleFinding, RuleId, Severity } from './rules.ts';
import { StepMeter, type Steps } from './steps.ts';

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
  /**
   * Returns the problem on one line, or undefined when the line is fine. It yields inside a long
   * line, so that one line of megabytes does not hold the event loop either.
   */
  match: (text: string, path: string) => Steps<LineMatch | undefined>;
}

/** Creates a rule that reports at most one finding per added line. */
export function lineRule(options: LineRuleOptions): Rule {
  return {
    id: options.id,
    severity: options.severity,
    *check(path, lines) {
      const findings: RuleFinding[] = [];
      if (options.appliesTo && !options.appliesTo(path)) {
        return findings;
      }
      const meter = new StepMeter();
      for (const added of lines) {
        const match = yield* options.match(added.text, path);
        if (match !== undefined) {
          findings.push({
            ruleId: options.id,
            severity: options.severity,
            message: match.message,
            startLine: added.line,
            endLine: added.line,
            excerpt: yield* buildExcerptSteps(added.text, path, match.index),
          });
        }
        if (meter.count(added.text.length)) {
          yield;
        }
      }
      return findings;
    },
  };
}
