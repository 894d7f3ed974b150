import type { AppContext } from '../context.ts';
import type { Database, Transaction } from '../db/client.ts';
import type { Provider } from '../db/schema/index.ts';
import { configuredPlatformKeyId, findPendingPlatformKeyRejection } from '../keys/platform-key-rejections.ts';
import { getProviderOrder, listUserKeys } from '../keys/user-keys.ts';
import { listRunFindings } from '../runs/run-findings.ts';
import {
  describeExhausted,
  describeMinimumReservation,
  getAllowance,
  type AllowanceState,
  type EstimateBound,
} from '../usage/allowance.ts';
import { maxPatchRequestFindings } from './patch-request-limit.ts';
import { chooseKeys } from './model-clients.ts';
import { compareBySeverity } from '../analysis/analyze.ts';
import { bytesPerToken, type FindingKind } from '../llm/prompt.ts';
import { estimateLeastCallParts, estimateLeastCallTokens } from './preview.ts';
import { groupFindingsByFile, type SelectedFinding } from './preview-files.ts';
import { platformKey } from './provider-client.ts';

/** The estimate of one file's model call in a preview. */
export interface FileCallEstimate {
  path: string;
  /** Minimum tokens that the call reserves with the file's findings, by the worker's estimate. */
  tokens: number;
  /**
   * False when the run did not record the file's size, so `tokens` leaves out the content,
   * which the prompt and the output both contain, and is a lower bound.
   */
  sizeKnown: boolean;
}

/** Payer of a preview's model calls, as chosen for a preview started now. */
export type PreviewPayment =
  /**
   * No provider has a key that previews may use: neither a usable own key nor a platform key
   * in place of a missing own key. `unusableOwnKeys` are the providers whose stored own key is
   * unusable, in the user's order.
   */
  | { kind: 'no_provider'; unusableOwnKeys: Provider[] }
  | {
      kind: 'allowance';
      allowance: AllowanceState;
      /**
       * The rejection of the platform key that the preview would call first, while it is not
       * due for a re-check, so every file would fail without a request.
       */
      platformKeyRejection?: { provider: Provider; status: number | null };
    }
  | {
      kind: 'own_key';
      provider: Provider;
      /** True when a platform key is tried first, while the allowance lasts. */
      platformFirst: boolean;
    };

/**
 * Estimates each file's call for the findings, in the order the preview processes the files.
 * Only the findings given count, so pass the selected ones.
 */
export function estimateFileCalls(
  findings: readonly (SelectedFinding & { fileBytes: number | null })[],
): FileCallEstimate[] {
  const fileBytes = new Map(findings.map((finding) => [finding.path, finding.fileBytes]));
  const byPath = groupFindingsByFile(findings);
  return [...byPath].map(([path, fileFindings]) => {
    const bytes = fileBytes.get(path) ?? null;
    return {
      path,
      tokens: estimateLeastCallTokens({ path, findings: fileFindings, fileBytes: bytes ?? 0 }),
      sizeKnown: bytes !== null,
    };
  });
}

/**
 * The parts of one file's call estimate, keyed by finding id, from which the run page totals
 * the checked findings of each file (see `estimateLeastCallParts`).
 */
export interface FileCallParts {
  baseBytes: number;
  fixedTokens: number;
  findingBytes: Map<string, number>;
  findingKinds: Map<string, FindingKind>;
  kindBytes: Map<FindingKind, number>;
}

/** Returns each file's `FileCallParts` for the findings, keyed by path. */
export function estimateFileCallParts(
  findings: readonly (SelectedFinding & { fileBytes: number | null })[],
): Map<string, FileCallParts> {
  const fileBytes = new Map(findings.map((finding) => [finding.path, finding.fileBytes]));
  const parts = new Map<string, FileCallParts>();
  for (const [path, fileFindings] of groupFindingsByFile(findings)) {
    const estimate = estimateLeastCallParts({ path, findings: fileFindings, fileBytes: fileBytes.get(path) ?? 0 });
    parts.set(path, {
      baseBytes: estimate.baseBytes,
      fixedTokens: estimate.fixedTokens,
      findingBytes: new Map(fileFindings.map((finding, index) => [finding.id, estimate.findingBytes[index]!])),
      findingKinds: new Map(fileFindings.map((finding, index) => [finding.id, estimate.findingKinds[index]!])),
      kindBytes: estimate.kindBytes,
    });
  }
  return parts;
}

/** The findings that a preview includes unless the user chooses, and those left out. */
export interface DefaultSelection {
  findingIds: Set<string>;
  /**
   * Findings left out only because a preview takes at most `maxPatchRequestFindings`. Together
   * with the picked findings, they fit the allowance left. The other findings left out do not.
   */
  overLimit: number;
}

/**
 * Picks the findings that a preview includes unless the user chooses. The findings are taken
 * most severe first, then in the order the preview processes their files, then by line. When
 * the allowance pays, each is taken when the calls of the files with the findings taken so far
 * still fit what is left. So a file can be taken with some of its findings, and a cheaper
 * finding may still fit after a costlier one did not. Otherwise every finding is taken. The
 * first `maxPatchRequestFindings` findings taken are picked.
 */
export function pickDefaultSelection(
  payment: PreviewPayment,
  findings: readonly (SelectedFinding & { fileBytes: number | null })[],
): DefaultSelection {
  const remaining = payment.kind === 'allowance' ? payment.allowance.remaining : Number.POSITIVE_INFINITY;
  const parts = estimateFileCallParts(findings);
  const fileRank = new Map([...groupFindingsByFile(findings).keys()].map((path, index) => [path, index]));
  const ordered = [...findings].sort(
    (left, right) =>
      compareBySeverity(left, right) ||
      fileRank.get(left.path)! - fileRank.get(right.path)! ||
      left.startLine - right.startLine,
  );

  const callTokens = (file: FileCallParts, bytes: number) =>
    Math.ceil(bytes / bytesPerToken) + file.fixedTokens;
  // Prompt bytes of each file's call with the findings taken so far, and the kinds among them.
  const takenCalls = new Map<string, { bytes: number; kinds: Set<FindingKind> }>();
  const taken: string[] = [];
  let total = 0;
  for (const finding of ordered) {
    const file = parts.get(finding.path)!;
    const before = takenCalls.get(finding.path);
    const kind = file.findingKinds.get(finding.id)!;
    const kindBytes = before?.kinds.has(kind) ? 0 : file.kindBytes.get(kind)!;
    const after = (before?.bytes ?? file.baseBytes) + file.findingBytes.get(finding.id)! + kindBytes;
    const change = callTokens(file, after) - (before === undefined ? 0 : callTokens(file, before.bytes));
    if (total + change > remaining) continue;
    total += change;
    takenCalls.set(finding.path, { bytes: after, kinds: new Set(before?.kinds).add(kind) });
    taken.push(finding.id);
  }
  // A file's call needs fewer tokens with fewer findings, so the first ones taken fit as well.
  return {
    findingIds: new Set(taken.slice(0, maxPatchRequestFindings)),
    overLimit: Math.max(taken.length - maxPatchRequestFindings, 0),
  };
}

/** Returns the ids that `pickDefaultSelection` picks. */
export function pickDefaultFindings(
  payment: PreviewPayment,
  findings: readonly (SelectedFinding & { fileBytes: number | null })[],
): Set<string> {
  return pickDefaultSelection(payment, findings).findingIds;
}

/**
 * Kind of smaller selection that fits the allowance when the whole selection does not.
 * `fewer_files`: several files are selected, and the call of at least one of them fits alone.
 * `fewer_findings`: no such file, but a call with fewer of the selected findings fits.
 */
export type SmallerSelection = 'fewer_files' | 'fewer_findings';

/** A selection of files whose estimated calls add up to more than the allowance left. */
export interface SelectionOverAllowance {
  calls: FileCallEstimate[];
  /** Sum of the calls' minimum reservations. */
  neededTokens: number;
  /** `at least` when a file's size is unknown, so that `neededTokens` is a lower bound. */
  estimate: EstimateBound;
  allowance: AllowanceState;
  /** Kind of smaller selection that fits, or null when no selected finding's call fits alone. */
  smallerSelection: SmallerSelection | null;
  /** Sentence that names the estimate, the allowance left and the ways to get more. */
  message: string;
}

/** Finds the kind of smaller selection of the selected findings that fits the allowance left. */
function findSmallerSelection(
  payment: Extract<PreviewPayment, { kind: 'allowance' }>,
  selected: readonly (SelectedFinding & { fileBytes: number | null })[],
  calls: readonly FileCallEstimate[],
): SmallerSelection | null {
  const remaining = payment.allowance.remaining;
  if (calls.length > 1 && calls.some((call) => call.tokens <= remaining)) return 'fewer_files';
  // The picker takes a finding whenever its call fits, so it takes none only when no finding's
  // call fits alone, and then no smaller selection fits either.
  if (pickDefaultFindings(payment, selected).size > 0) return 'fewer_findings';
  return null;
}

/**
 * Builds the message of a selection over the allowance: `over.message`, and when a smaller
 * selection fits, how to choose one, for a client that sends `findingIds` (`api`) or for the
 * run page's checkboxes (`page`).
 */
export function describeSelectionOverAllowance(over: SelectionOverAllowance, client: 'api' | 'page'): string {
  if (over.smallerSelection === 'fewer_files') {
    const advice =
      client === 'api'
        ? 'Or remove the findings of some files from findingIds until the selection fits: files ' +
          'lists the estimate of each file.'
        : 'Or uncheck files until the selection fits.';
    return `${over.message} ${advice}`;
  }
  if (over.smallerSelection === 'fewer_findings') {
    const action = client === 'api' ? 'remove some findings from findingIds' : 'uncheck some findings';
    return `${over.message} Or ${action}, because a call with fewer findings needs fewer tokens.`;
  }
  return over.message;
}

/**
 * Checks the calls of the run's findings in `findingIds` against the allowance before a
 * preview is created. Returns null when they fit, and when the allowance does not pay (an own
 * key pays, or no provider is available, which the preview reports itself). Ids that are not
 * findings of the run are left out.
 */
export async function findSelectionOverAllowance(
  db: Database | Transaction,
  payment: PreviewPayment,
  input: { runId: string; findingIds: readonly string[] },
): Promise<SelectionOverAllowance | null> {
  if (payment.kind !== 'allowance') return null;
  const selectedIds = new Set(input.findingIds);
  const selected = (await listRunFindings(db, input.runId)).filter((row) => selectedIds.has(row.id));
  const calls = estimateFileCalls(selected);
  const neededTokens = calls.reduce((sum, call) => sum + call.tokens, 0);
  if (neededTokens <= payment.allowance.remaining) return null;
  const estimate: EstimateBound = calls.every((call) => call.sizeKnown) ? 'about' : 'at least';
  const subject =
    calls.length === 1 ? `the model call for ${calls[0]!.path}` : `the selection of ${calls.length} files`;
  return {
    calls,
    neededTokens,
    estimate,
    allowance: payment.allowance,
    smallerSelection: findSmallerSelection(payment, selected, calls),
    message: describeExhausted(
      payment.allowance,
      describeMinimumReservation(subject, neededTokens, estimate, calls.length),
    ),
  };
}

/**
 * Finds what would pay for a preview that the user starts now. An own key counts as usable
 * unless it is marked unusable, as on the keys page. A key that the provider rejects only at
 * the preview's call is therefore taken as usable here.
 */
export async function loadPreviewPayment(
  context: Pick<AppContext, 'config' | 'keyring' | 'logger'> & { db: Database | Transaction },
  userId: string,
): Promise<PreviewPayment> {
  const order = await getProviderOrder(context.db, userId);
  const keys = await listUserKeys(context, userId);
  const usable = new Map(keys.map((key) => [key.provider, key.unusableReason === null]));
  const choices = chooseKeys(order, usable, (provider) => Boolean(platformKey(context.config, provider)));
  if (choices.length === 0) {
    return { kind: 'no_provider', unusableOwnKeys: order.filter((provider) => usable.get(provider) === false) };
  }
  const own = choices.find((choice) => choice.keySource === 'user');
  if (own) {
    return { kind: 'own_key', provider: own.provider, platformFirst: choices[0]!.keySource === 'platform' };
  }
  const allowance = await getAllowance(context.db, userId);
  // A rejected platform key passes no file to the next platform key, so the first one decides.
  const first = choices[0]!.provider;
  const key = configuredPlatformKeyId(context.config, first);
  const rejection = key ? await findPendingPlatformKeyRejection(context.db, key) : null;
  if (!rejection) return { kind: 'allowance', allowance };
  return { kind: 'allowance', allowance, platformKeyRejection: { provider: first, status: rejection.status } };
}
