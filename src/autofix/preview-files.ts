import { compareBySeverity, worstSeverity } from '../analysis/analyze.ts';
import type { Severity } from '../db/schema/index.ts';
import type { FixFinding } from '../llm/prompt.ts';

/** A stored finding, with the columns that a fix prompt uses. */
export interface SelectedFinding {
  id: string;
  path: string;
  ruleId: string;
  severity: Severity;
  startLine: number;
  endLine: number;
  message: string;
}

/**
 * Groups findings by file, each file's by line, in the order a preview processes the files:
 * files with an error first, then those with a warning, then the rest, each group by path in
 * code point order. When the allowance runs out part-way, the most severe files are done.
 */
export function groupFindingsByFile(rows: readonly SelectedFinding[]): Map<string, FixFinding[]> {
  const byPath = new Map<string, SelectedFinding[]>();
  for (const row of rows) {
    const list = byPath.get(row.path) ?? [];
    list.push(row);
    byPath.set(row.path, list);
  }
  const files = [...byPath.entries()].map(([path, list]) => ({
    path,
    list,
    severity: worstSeverity(list)!,
  }));
  files.sort((left, right) => compareBySeverity(left, right) || comparePaths(left.path, right.path));

  const grouped = new Map<string, FixFinding[]>();
  for (const file of files) {
    const findings = file.list.map((row) => ({
      id: row.id,
      ruleId: row.ruleId,
      line: row.startLine,
      endLine: row.endLine,
      message: row.message,
    }));
    findings.sort((a, b) => a.line - b.line);
    grouped.set(file.path, findings);
  }
  return grouped;
}

// Code point order, so the result does not depend on the locale.
function comparePaths(left: string, right: string): number {
  if (left === right) return 0;
  return left < right ? -1 : 1;
}
