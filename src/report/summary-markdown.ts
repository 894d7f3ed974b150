import type { Severity } from '../analysis/analyze.ts';
import type { UncheckedFileReason } from '../db/schema/index.ts';
import { maxPatchRequestFindings } from '../autofix/patch-request-limit.ts';
import { showCodePoints } from '../text/invisible-characters.ts';
import { formatCount, joinWithAnd, pickForm } from '../text/plural.ts';
import type { CheckConclusion } from './check-conclusion.ts';

/** Hidden marker that identifies Fixwright's summary comment among a pull request's comments. */
export const summaryMarker = '<!-- fixwright:summary -->';

/** Findings listed in the summary comment; the check run's annotations carry more. */
export const maxCommentFindings = 30;

/**
 * Findings annotated on a run's check run: 20 requests. Octokit's throttling plugin (11.0.5)
 * sends an installation's writes at least 1 s apart, so 30,000 findings would take the 10
 * minutes a report job may run, and hold up every other write of the installation meanwhile.
 */
export const maxAnnotationsPerRun = 1000;

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

/** Unchecked files named in the report; the rest are counted. */
export const maxNamedUncheckedFiles = 10;

export interface ReportedRun {
  repository: string;
  prNumber: number;
  headSha: string;
  /**
   * Paths of files whose added lines were not checked, because GitHub sent no diff or for the
   * reason in `uncheckedFileReasons`.
   */
  uncheckedFiles?: readonly string[];
  /** Reasons of unchecked files skipped for another reason than a missing diff. */
  uncheckedFileReasons?: readonly UncheckedFileReason[];
  /** Changed files past the 3,000 that GitHub lists. */
  unlistedFiles?: number;
  /** Findings past the most severe 10,000 of the run, which were not stored. */
  omittedFindings?: number;
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
 * Replaces line breaks with spaces. Markdown ends a line at CR as well as LF, and git allows
 * both in file names.
 */
function singleLine(text: string): string {
  return text.replace(/\r\n|\r|\n/g, ' ');
}

/**
 * Maximum length, in code points, of a path in the comment and summary. Annotations keep the
 * whole path.
 */
export const maxShownPathLength = 300;

/**
 * Shortens a path to `maxShownPathLength` by replacing its middle with `…`, so that 30 table
 * rows and 10 named files of paths up to Linux's 4,096-byte PATH_MAX stay within GitHub's
 * 65,536 characters of a comment.
 */
function shownPath(path: string): string {
  // showCodePoints marks a bidi override such as U+202E, which would display the rest of the
  // sentence or table row reversed. It leaves line breaks as they are, so singleLine goes first.
  const codePoints = Array.from(showCodePoints(singleLine(path)));
  if (codePoints.length <= maxShownPathLength) {
    return codePoints.join('');
  }
  const headLength = Math.floor(maxShownPathLength / 2);
  const tailLength = maxShownPathLength - headLength - 1;
  return `${codePoints.slice(0, headLength).join('')}…${codePoints.slice(-tailLength).join('')}`;
}

/** Makes text safe inside one markdown table cell. */
function tableCell(text: string): string {
  return singleLine(text).replace(/\|/g, '\\|');
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
  return `${codeSpan(tableCell(shownPath(finding.path)))}:${range}`;
}

/** Formats a path for markdown: shortened, on one line, in a code span. */
function markdownPath(path: string): string {
  return codeSpan(shownPath(path));
}

/**
 * Sentences on the files and findings that a run leaves out, or none. `formatPath` renders each
 * named path: a markdown code span by default, plain text for HTML that escapes it.
 */
export function omissionNotes(
  run: ReportedRun,
  formatPath: (path: string) => string = markdownPath,
): string[] {
  const notes: string[] = [];
  const reasons = run.uncheckedFileReasons ?? [];
  const withReason = new Set(reasons.map((file) => file.path));
  const unchecked = (run.uncheckedFiles ?? []).filter((path) => !withReason.has(path));
  if (unchecked.length > 0) {
    const named = unchecked.slice(0, maxNamedUncheckedFiles).map(formatPath);
    const rest = unchecked.length - named.length;
    const list = joinWithAnd(rest > 0 ? [...named, formatCount(rest, 'more file')] : named);
    notes.push(
      `GitHub sent no diff for ${formatCount(unchecked.length, 'file')} with added lines and ` +
        'Fixwright could not build one (for example for a version over 5 MB or not UTF-8 ' +
        `text), so ${pickForm(unchecked.length, 'its', 'their')} added lines were not checked: ` +
        `${list}.`,
    );
  }
  if (reasons.length > 0) {
    const named = reasons
      .slice(0, maxNamedUncheckedFiles)
      .map((file) => `${formatPath(file.path)} (${file.reason})`);
    const rest = reasons.length - named.length;
    const list = joinWithAnd(rest > 0 ? [...named, formatCount(rest, 'more file')] : named);
    notes.push(
      `The added lines of ${formatCount(reasons.length, 'file')} were not checked: ${list}.`,
    );
  }
  const unlisted = run.unlistedFiles ?? 0;
  if (unlisted > 0) {
    notes.push(
      'GitHub lists at most 3,000 files of a pull request, so the added lines of ' +
        `${formatCount(unlisted, 'further file')} were not checked.`,
    );
  }
  const omitted = run.omittedFindings ?? 0;
  if (omitted > 0) {
    notes.push(
      'Fixwright keeps the 10,000 most severe findings of a run, so ' +
        `${formatCount(omitted, 'further finding')} of the same or lower severity ` +
        `${pickForm(omitted, 'is', 'are')} left out.`,
    );
  }
  return notes;
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
    ...omissionNotes(run).flatMap((note) => ['', note]),
    '',
    conclusionText[conclusion],
  ];
  if (findings.length > maxAnnotationsPerRun) {
    lines.push(
      '',
      `The first ${maxAnnotationsPerRun.toLocaleString('en-US')} of the ` +
        `${findings.length.toLocaleString('en-US')} findings, errors first, are annotated on ` +
        "their lines, and the run's page on the Fixwright dashboard lists all of them. " +
        describeFixWithAi(findings.length),
    );
  } else if (findings.length > 0) {
    lines.push('', `Each finding is annotated on its line. ${describeFixWithAi(findings.length)}`);
  }
  return { title, summary: lines.join('\n') };
}

/**
 * Describes what a press of "Fix with AI" previews. The report cannot know the allowance left
 * at the press, or whether an own key pays, so it names the limits without numbers. The press
 * writes how many findings it left out to the check run (see fix-press-notice.ts).
 */
function describeFixWithAi(findingCount: number): string {
  const previewed =
    findingCount > maxPatchRequestFindings
      ? `at most ${maxPatchRequestFindings.toLocaleString('en-US')} of them, the most severe first`
      : 'them';
  return (
    `**Fix with AI** previews fixes for ${previewed}. The preview is charged to the token allowance ` +
    "of the user who installed the app, unless that user's own Groq or Gemini key pays, and " +
    'findings whose fixes do not fit what is left of that allowance are left out. Each press ' +
    'writes on this check run what it queued and what it left out.'
  );
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
    ...omissionNotes(run).flatMap((note) => ['', note]),
  ];
  const footer = [
    '',
    `[Check run details](${checkRunUrl}). This comment is updated in place for every new commit.`,
  ];
  if (findings.length > 0) {
    lines.push('', '| Severity | Location | Rule | Message |', '| --- | --- | --- | --- |');
    const restLine = (rest: number) =>
      findings.length > maxAnnotationsPerRun
        ? `${plural(rest, 'more finding')} on the run's page of the Fixwright dashboard; the ` +
          `check run annotates the first ${maxAnnotationsPerRun.toLocaleString('en-US')}, errors first.`
        : `${plural(rest, 'more finding')} in the check run.`;
    // Rows stop where the body would exceed GitHub's limit with the longest possible rest line,
    // because finding messages have no length limit of their own.
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
