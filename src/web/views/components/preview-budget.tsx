import type { FC } from 'hono/jsx';
import { describeNoProvider, payerYou } from '../../../autofix/no-provider.ts';
import { maxPatchRequestFindings } from '../../../autofix/patch-request-limit.ts';
import type { FileCallEstimate, FileCallParts, PreviewPayment } from '../../../autofix/preview-budget.ts';
import { providerNames } from '../../../llm/types.ts';
import { formatCount, formatNumber, pickForm } from '../../../text/plural.ts';

/** The estimates behind the "Preview fix" form and the files it checks by default. */
export interface PreviewBudgetView {
  payment: PreviewPayment;
  /** Every file's call with all of its findings, in the order the preview processes them. */
  calls: FileCallEstimate[];
  /** Each file's estimate split by finding, so that public/app.js totals the checked findings. */
  parts: ReadonlyMap<string, FileCallParts>;
  /** Ids of the findings checked by default. */
  checkedFindingIds: ReadonlySet<string>;
  /** The calls of the files with checked findings, each with its checked findings only. */
  checkedCalls: FileCallEstimate[];
  /** Number of the run's findings. */
  findingCount: number;
  /**
   * Findings left unchecked only because a preview takes at most `maxPatchRequestFindings`
   * (see pickDefaultSelection). The other unchecked findings do not fit the allowance left.
   */
  overLimit: number;
}

const overAllowanceText =
  'The checked findings need more tokens than your allowance has left, so the preview would ' +
  'be rejected. Uncheck findings until the total fits.';

const tooManyText =
  `More than ${formatNumber(maxPatchRequestFindings)} findings are checked, but a preview ` +
  `takes at most ${formatNumber(maxPatchRequestFindings)}, so it would be rejected. ` +
  'Uncheck findings until the count fits.';

const withoutContentNote =
  'An estimate of "at least" leaves out the file\'s content, because the run did not record ' +
  'its size, so that call needs more.';

/** Formats a token count as "1,234". */
export function formatTokens(tokens: number): string {
  return formatNumber(tokens);
}

/** Returns "about", or "at least" when an estimate leaves out a file's content. */
export function estimateWord(calls: readonly FileCallEstimate[]): string {
  return calls.every((call) => call.sizeKnown) ? 'about' : 'at least';
}

/** Tokens that the allowance leaves for the selection, or null when it does not limit it. */
export function allowanceLimit(payment: PreviewPayment): number | null {
  if (payment.kind !== 'allowance' || payment.allowance.limit < 0) return null;
  return payment.allowance.remaining;
}

/** Lists the ways to preview the findings left unchecked. Enterprise has no larger plan to move to. */
function uncheckedFilesAdvice(payment: PreviewPayment, anyChecked: boolean): string {
  // With nothing checked, unchecking frees no tokens.
  const steps = anyChecked ? ['uncheck other findings', 'wait for the next period'] : ['wait for the next period'];
  const onLargestPlan = payment.kind === 'allowance' && payment.allowance.plan === 'enterprise';
  if (!onLargestPlan) steps.push('move to a larger plan');
  return `${steps.join(', ')} or add your own Groq or Gemini key on the Keys page`;
}

/**
 * Returns the subject of the unchecked notice. pickDefaultSelection checks every finding that
 * fits alone, so with nothing checked, each finding's call alone is over the allowance. With
 * `overLimit` findings past the limit, the findings left out fit neither with the checked ones
 * and those.
 */
function uncheckedReason(anyChecked: boolean, overLimit: number): string {
  if (overLimit > 0) {
    return `together with the checked ones and the ${formatNumber(overLimit)} more that fit, their calls`;
  }
  return anyChecked ? 'with the checked ones their calls' : 'the call of each one alone';
}

function describePayment(payment: PreviewPayment): string {
  if (payment.kind === 'no_provider') {
    return `${describeNoProvider(payment.unusableOwnKeys, payerYou)} Without a provider, "Preview fix" starts no preview.`;
  }
  if (payment.kind === 'own_key') {
    const name = providerNames[payment.provider];
    return payment.platformFirst
      ? `The platform key is used while your allowance lasts and your own ${name} key after ` +
          'that, so the allowance does not limit the selection.'
      : `Your own ${name} key pays for these calls, so your allowance is not charged and does ` +
          'not limit the selection.';
  }
  const { allowance } = payment;
  if (allowance.limit < 0) return 'Your plan has no token limit.';
  return (
    `Your allowance has ${formatTokens(allowance.remaining)} tokens left ` +
    `(${formatTokens(allowance.limit)} per period on the ${allowance.plan} plan).`
  );
}

/**
 * Explains that only the first `maxPatchRequestFindings` findings are checked. `limited` is
 * true when the allowance limits the selection, so that the other unchecked findings are
 * counted in the allowance's notice.
 */
function describeOverLimit(overLimit: number, limited: boolean): string {
  const limit = formatNumber(maxPatchRequestFindings);
  const others = limited
    ? `${formatNumber(overLimit)} more ${pickForm(overLimit, 'finding fits', 'findings fit')} your ` +
      `allowance together with them but ${pickForm(overLimit, 'is', 'are')} unchecked`
    : `The other ${formatNumber(overLimit)} ${pickForm(overLimit, 'is', 'are')} unchecked`;
  return (
    `A preview takes at most ${limit} findings, so only the first ${limit}, the most severe ` +
    `first, are checked. ${others}. To preview ${pickForm(overLimit, 'it', 'them')}, start ` +
    `another preview with ${pickForm(overLimit, 'it', 'them')} checked in place of these.`
  );
}

/**
 * Renders the total estimate of the checked findings next to what pays for them, and why
 * findings were left unchecked. public/app.js updates the total when a checkbox changes, and
 * shows an error while more findings are checked than a preview takes.
 */
export const PreviewBudgetSummary: FC<{ budget: PreviewBudgetView }> = ({ budget }) => {
  const { payment, calls, checkedCalls: checked, checkedFindingIds, findingCount, overLimit } = budget;
  const total = checked.reduce((sum, call) => sum + call.tokens, 0);
  const limit = allowanceLimit(payment);
  const unchecked = findingCount - checkedFindingIds.size - overLimit;
  const anyChecked = checkedFindingIds.size > 0;
  const over = limit !== null && total > limit;
  const tooMany = checkedFindingIds.size > maxPatchRequestFindings;
  return (
    <div
      class="preview-budget"
      data-preview-budget
      data-remaining={limit ?? undefined}
      data-max-findings={maxPatchRequestFindings}
    >
      <p>
        Selected: <span data-selected-files>{formatCount(checked.length, 'file')}</span>,{' '}
        <span data-selected-estimate>{estimateWord(checked)}</span>{' '}
        <strong data-selected-tokens>{formatTokens(total)}</strong> tokens. {describePayment(payment)}
      </p>
      {unchecked > 0 && limit !== null ? (
        <p class="notice preview-unchecked">
          {`${formatNumber(unchecked)} of ${formatNumber(findingCount)} ${pickForm(findingCount, 'finding', 'findings')} ` +
            `in ${formatCount(calls.length, 'file')} ` +
            `${unchecked === 1 ? 'was' : 'were'} left unchecked, because ${uncheckedReason(anyChecked, overLimit)} ` +
            `would need more than the ${formatTokens(limit)} tokens your allowance has left. ` +
            `To preview them, ${uncheckedFilesAdvice(payment, anyChecked)}.`}
        </p>
      ) : null}
      {overLimit > 0 ? (
        <p class="notice preview-over-limit">{describeOverLimit(overLimit, limit !== null)}</p>
      ) : null}
      {/*
        Hidden, a notice has no text, so a browser that ignores the hidden attribute, such as a
        text browser, shows only the notices that apply. public/app.js sets the text from
        data-text when it shows the notice.
      */}
      <p class="error" data-too-many-findings data-text={tooManyText} hidden={!tooMany}>
        {tooMany ? tooManyText : null}
      </p>
      <p class="error" data-over-allowance data-text={overAllowanceText} hidden={!over}>
        {over ? overAllowanceText : null}
      </p>
      <p class="muted">
        Each file shows the minimum reservation of its model call with all of its findings: the
        prompt estimate, at 4 bytes a token, plus the least output cap that can hold the file.
        {calls.every((call) => call.sizeKnown) ? null : ` ${withoutContentNote}`}
      </p>
    </div>
  );
};
