import type { Severity } from '../analysis/analyze.ts';
import type { CheckConclusion } from './check-conclusion.ts';

/** Hidden marker that identifies Fixwright's summary comment among a pull request's comments. */
export const summaryMarker = '<!-- fixwright:summary -->';

/** Findings listed in the summary comment; the check run's annotations carry all of them. */
export const maxCommentFindings = 30;

/** GitHub rejects an issue comment whose body is longer than this many characters. */
export const maxCommentLength = 65536;

export interface ReportedFinding {
  path: string;
  startLine: number;
  endLine: number;
  ruleId: string;
  severity: Severity;
  message: string;
}

export interface ReportedRun {
  repository: string;
  prNumber: number;
  headSha: string;
}

const severityOrder: Severity[] = ['error', 'warning', 'notice'];

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** Counts per severity as "2 errors, 1 warning", or "no findings". */
export function describeCounts(findings: readonly ReportedFinding[]): string {
  const parts = severityOrder
    .map((severity) => [severity, findings.filter((f) => f.severity === severity).length] as const)
    .filter(([, count]) => count > 0)
    .map(([severity, count]) => plural(count, severity));
  return parts.length > 0 ? parts.join(', ') : 'no findings';
}

/**
 * Makes text safe inside one markdown table cell. CommonMark ends a line at LF, CRLF and a lone
 * CR, and git allows a CR in file names, so each of them becomes a space.
 */
function tableCell(text: string): string {
  return text.replace(/\r\n|\r|\n/g, ' ').replace(/\|/g, '\\|');
}

/**
 * Wraps text in a code span fenced by more backticks than any run inside it, padded with
 * spaces, so a file name from the pull request cannot close the span and inject markdown.
 */
export function codeSpan(text: string): string {
  const longestRun = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longestRun + 1);
  return longestRun > 0 ? `${fence} ${text} ${fence}` : `${fence}${text}${fence}`;
}

function lineLabel(finding: ReportedFinding): string {
  const range =
    finding.endLine > finding.startLine
      ? `${finding.startLine}-${finding.endLine}`
      : `${finding.startLine}`;
  return `${codeSpan(tableCell(finding.path))}:${range}`;
}

const conclusionText: Record<CheckConclusion, string> = {
  failure: 'Failed because at least one finding is an error.',
  neutral: 'Neutral because the worst finding is a warning.',
  success: 'Passed: no finding is worse than a notice.',
};

/** Title and summary of the check run. */
export function checkRunOutput(
  run: ReportedRun,
  findings: readonly ReportedFinding[],
  conclusion: CheckConclusion,
): { title: string; summary: string } {
  const counts = describeCounts(findings);
  const title =
    findings.length === 0 ? 'No findings' : counts.charAt(0).toUpperCase() + counts.slice(1);
  const lines = [
    `Fixwright checked the lines this pull request adds at \`${run.headSha.slice(0, 7)}\` ` +
      `and found ${counts}.`,
    '',
    conclusionText[conclusion],
  ];
  if (findings.length > 0) {
    lines.push(
      '',
      'Each finding is annotated on its line. **Fix with AI** previews fixes for all of them, ' +
        "charged to the allowance of the user who installed the app.",
    );
  }
  return { title, summary: lines.join('\n') };
}

/** Body of the pull request's summary comment, starting with the hidden marker. */
export function summaryCommentBody(
  run: ReportedRun,
  findings: readonly ReportedFinding[],
  checkRunUrl: string,
): string {
  const lines = [
    summaryMarker,
    '### Fixwright',
    '',
    `Found ${describeCounts(findings)} in the lines added up to \`${run.headSha.slice(0, 7)}\`.`,
  ];
  const footer = [
    '',
    `[Check run details](${checkRunUrl}). This comment is updated in place for every new commit.`,
  ];
  if (findings.length > 0) {
    lines.push('', '| Severity | Location | Rule | Message |', '| --- | --- | --- | --- |');
    const restLine = (rest: number) => `${plural(rest, 'more finding')} in the check run.`;
    // Rows stop where the body would exceed GitHub's limit with the longest possible rest line.
    // A pull request can add files with paths of thousands of characters.
    let length = [...lines, '', restLine(findings.length), ...footer].join('\n').length;
    let listed = 0;
    for (const finding of findings.slice(0, maxCommentFindings)) {
      const cells = [
        finding.severity,
        lineLabel(finding),
        `\`${finding.ruleId}\``,
        tableCell(finding.message),
      ];
      const row = `| ${cells.join(' | ')} |`;
      length += row.length + 1;
      if (length > maxCommentLength) break;
      lines.push(row);
      listed++;
    }
    const rest = findings.length - listed;
    if (rest > 0) lines.push('', restLine(rest));
  }
  return [...lines, ...footer].join('\n');
}
