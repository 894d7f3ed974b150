import type { ApplyLimitsReport, PlanLimitSummary } from '../usage/apply-limits.ts';
import { formatCount } from '../text/plural.ts';

/**
 * Builds the lines that `users apply-limits` prints: one per plan checked, then the totals.
 * After a dry run they describe what would change.
 */
export function describeApplyLimits(report: ApplyLimitsReport): string[] {
  const lines = report.plans.map((summary) => describePlan(summary, report.dryRun));
  const checked = report.plans.reduce((total, summary) => total + summary.checked, 0);
  const changed = report.plans.reduce((total, summary) => total + summary.changed, 0);
  if (report.dryRun) {
    lines.push(`Checked ${formatCount(checked, 'user')}; ${changed} would change.`);
    lines.push('Dry run: nothing was changed. Run without --dry-run to apply the limits.');
  } else {
    lines.push(`Checked ${formatCount(checked, 'user')}; changed ${changed}.`);
  }
  return lines;
}

function describePlan(summary: PlanLimitSummary, dryRun: boolean): string {
  const { plan, checked, changed, capped } = summary;
  if (checked === 0) return `${plan}: no users.`;
  const limit = summary.limit < 0 ? 'no limit' : `limit ${summary.limit}`;
  const verb = dryRun ? 'would change' : 'changed';
  if (changed === 0) return `${plan}: 0 of ${formatCount(checked, 'user')} ${verb}; each has ${limit}.`;

  const fromLimits = [...summary.changedFrom.entries()]
    .sort(([a], [b]) => a - b)
    .map(([before, users]) => `${users} from ${before < 0 ? 'no limit' : before}`);
  let line = `${plan}: ${changed} of ${formatCount(checked, 'user')} ${verb} to ${limit} (${fromLimits.join(', ')}).`;
  if (capped > 0) {
    const cappedVerb = dryRun ? 'would be capped' : 'capped';
    line += ` Usage of ${formatCount(capped, 'user')} ${cappedVerb} at ${summary.limit}.`;
  }
  return line;
}
