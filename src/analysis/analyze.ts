import { createHash } from 'node:crypto';
import { stripNul } from '../text/strip-nul.ts';
import { addedLineSteps, type AddedLine } from './patch.ts';
import { runRuleSteps, type RuleFinding, type RuleId, type Severity } from './rules.ts';
import { maskSecretsSteps } from './secrets.ts';
import { runSteps, sortSteps, StepMeter, Turns, type Steps } from './steps.ts';

export type { RuleId, Severity };

/** One entry of GitHub's "list pull request files" response, reduced to what analysis reads. */
export interface ChangedFile {
  filename: string;
  status: string;
  patch?: string | null;
}

/** A finding in a pull request, before it is stored. */
export interface FindingDraft {
  path: string;
  startLine: number;
  endLine: number;
  ruleId: RuleId;
  severity: Severity;
  message: string;
  excerpt: string;
  /** Identifies the same problem across runs: a sha256 hex digest that ignores line numbers. */
  fingerprint: string;
}

const SEVERITY_RANK: Record<Severity, number> = { error: 3, warning: 2, notice: 1 };

function compareNumbers(left: number, right: number): number {
  return left - right;
}

// Code point order, so the result does not depend on the locale.
function compareStrings(left: string, right: string): number {
  if (left === right) {
    return 0;
  }
  return left < right ? -1 : 1;
}

function compareByLine(left: RuleFinding, right: RuleFinding): number {
  return (
    compareNumbers(left.startLine, right.startLine) ||
    compareNumbers(left.endLine, right.endLine) ||
    compareStrings(left.ruleId, right.ruleId)
  );
}

/**
 * Hashes the rule, the path and the trimmed start line, so a finding keeps its fingerprint when
 * lines above it are added or removed. The line is hashed with secrets masked, so the stored hash
 * cannot confirm a guess at a short password. `occurrence` counts earlier findings of the same
 * rule on identical lines of the file, which keeps repeated lines apart.
 */
function fingerprintOf(ruleId: RuleId, path: string, lineText: string, occurrence: number): string {
  return createHash('sha256')
    .update([ruleId, path, lineText, String(occurrence)].join('\0'))
    .digest('hex');
}

function* analyzeFileSteps(file: ChangedFile): Steps<FindingDraft[]> {
  if (file.status === 'removed' || !file.patch) {
    return [];
  }
  const path = file.filename;
  const meter = new StepMeter();
  // Excerpts and messages quote the lines, and PostgreSQL text cannot store NUL.
  const lines: AddedLine[] = [];
  for (const added of yield* addedLineSteps(file.patch)) {
    const text = stripNul(added.text);
    lines.push(text === added.text ? added : { ...added, text });
    if (meter.count(text.length)) {
      yield;
    }
  }

  const found = yield* runRuleSteps(path, lines);
  const textByLine = yield* findingLineTextSteps(lines, found);
  const drafts: FindingDraft[] = [];
  const occurrences = new Map<string, number>();
  for (const finding of yield* sortSteps(found, compareByLine)) {
    const text = textByLine.get(finding.startLine) ?? '';
    const lineText = (yield* maskSecretsSteps(text, path)).trim();
    const key = `${finding.ruleId}\0${lineText}`;
    const occurrence = occurrences.get(key) ?? 0;
    occurrences.set(key, occurrence + 1);
    drafts.push({
      path,
      ...finding,
      fingerprint: fingerprintOf(finding.ruleId, path, lineText, occurrence),
    });
    if (meter.count(lineText.length)) {
      yield;
    }
  }
  return drafts;
}

/**
 * Maps the start line of each finding to its text, the last one when a patch adds a line number
 * twice. Only lines with findings are kept, because a growing map rehashes all its entries in
 * one go. One insert took 65 to 80 ms at 680,000 entries on Node.js 20 (2 vCPU, shared).
 */
function* findingLineTextSteps(
  lines: readonly AddedLine[],
  found: readonly RuleFinding[],
): Steps<Map<number, string>> {
  const meter = new StepMeter();
  const startLines = new Set<number>();
  for (const finding of found) {
    startLines.add(finding.startLine);
    if (meter.count(0)) {
      yield;
    }
  }
  const textByLine = new Map<number, string>();
  for (const added of lines) {
    if (startLines.has(added.line)) {
      textByLine.set(added.line, added.text);
    }
    if (meter.count(0)) {
      yield;
    }
  }
  return textByLine;
}

/**
 * Runs the built-in rules over the lines each pull request file adds, sorted by path and line.
 * Removed files and files without a patch (binary or too large for GitHub to diff) are skipped.
 */
export function analyzeChangedFiles(files: readonly ChangedFile[]): FindingDraft[] {
  return files.flatMap((file) => runSteps(analyzeFileSteps(file))).sort(compareByPathAndLine);
}

/**
 * Findings kept for one run. A generated file or data dump can add a finding on each of
 * hundreds of thousands of lines, and every kept finding is a database row that the run page
 * and the runs API list in full.
 */
export const maxFindingsPerRun = 10_000;

export interface AnalysisResult {
  /** The most severe findings, at most `maxFindings`, sorted by path and line. */
  findings: FindingDraft[];
  /** Findings found beyond `maxFindings`, none more severe than the least severe one kept. */
  omittedFindings: number;
}

/** Time the analysis runs before it returns to the event loop, in ms. */
export const analysisSliceMs = 20;

/**
 * Runs the rules as `analyzeChangedFiles` does, but returns to the event loop before each file
 * and after every `sliceMs` (default `analysisSliceMs`) of work, and keeps only the `maxFindings`
 * (default `maxFindingsPerRun`) most severe findings. The rules take several microseconds a
 * line, so a large file would otherwise block the web server and the other jobs of the same
 * process for seconds: about a second for a 5 MB file (bench/large-file.ts).
 *
 * `checkpoint` runs at each of those returns, so at least once before each file. An error it
 * throws stops the analysis and rejects the returned promise with that error.
 *
 * A line longer than `searchWindowChars` is searched in windows too (`findSteps`), with the
 * same findings as a search of the whole line.
 *
 * NOTE: one try of a rule's pattern at one position still runs in one piece, such as over a
 * 5 MB identifier or 5 MB of spaces after `console.log`. That held the event loop for tens of
 * milliseconds (BENCHMARKS.md, "One long line").
 */
export async function analyzeChangedFilesInTurns(
  files: readonly ChangedFile[],
  options: { maxFindings?: number; sliceMs?: number; checkpoint?: () => Promise<void> } = {},
): Promise<AnalysisResult> {
  const keptFindings = new MostSevereFindings(options.maxFindings ?? maxFindingsPerRun);
  const turns = new Turns(options.sliceMs ?? analysisSliceMs, options.checkpoint);
  for (const file of files) {
    await turns.next();
    const drafts = await turns.run(analyzeFileSteps(file));
    await turns.run(keptFindings.addSteps(drafts));
  }
  return turns.run(keptFindings.resultSteps());
}

/** The most severe findings of a run so far, and how many were found in all. */
class MostSevereFindings {
  private drafts: FindingDraft[] = [];
  private found = 0;

  constructor(private readonly maxFindings: number) {}

  *addSteps(drafts: readonly FindingDraft[]): Steps<void> {
    const meter = new StepMeter();
    for (const draft of drafts) {
      this.drafts.push(draft);
      this.found += 1;
      // The most severe findings of a part stay among those of the whole, so cutting early is
      // safe and keeps memory to about twice the limit. Equal findings keep their order, so
      // when the cuts happen does not change the result.
      if (this.drafts.length >= 2 * this.maxFindings) {
        this.drafts = yield* mostSevereSteps(this.drafts, this.maxFindings);
      } else if (meter.count(0)) {
        yield;
      }
    }
  }

  *resultSteps(): Steps<AnalysisResult> {
    const kept = yield* mostSevereSteps(this.drafts, this.maxFindings);
    const findings = yield* sortSteps(kept, compareByPathAndLine);
    return { findings, omittedFindings: this.found - findings.length };
  }
}

function compareByPathAndLine(left: FindingDraft, right: FindingDraft): number {
  return compareStrings(left.path, right.path) || compareByLine(left, right);
}

/** Orders errors before warnings before notices. */
export function compareBySeverity(
  left: { severity: Severity },
  right: { severity: Severity },
): number {
  return SEVERITY_RANK[right.severity] - SEVERITY_RANK[left.severity];
}

function* mostSevereSteps(drafts: FindingDraft[], count: number): Steps<FindingDraft[]> {
  if (drafts.length <= count) {
    return drafts;
  }
  const bySeverity = yield* sortSteps(
    drafts,
    (left, right) => compareBySeverity(left, right) || compareByPathAndLine(left, right),
  );
  return bySeverity.slice(0, count);
}

/** Returns the highest severity among the findings, or undefined when there are none. */
export function worstSeverity(
  findings: readonly { severity: Severity }[],
): Severity | undefined {
  let worst: Severity | undefined;
  for (const finding of findings) {
    if (worst === undefined || SEVERITY_RANK[finding.severity] > SEVERITY_RANK[worst]) {
      worst = finding.severity;
    }
  }
  return worst;
}
