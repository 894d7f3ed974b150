import type { FC } from 'hono/jsx';
import { describeApplyRetry, type ApplyRetry } from '../../../apply/apply-retry.ts';
import { describeApplyWait, type ApplyWait } from '../../../apply/apply-wait.ts';
import { describePreviewWait, type PreviewWait } from '../../../autofix/preview-wait.ts';
import type { ApplyMode, ClosedApplyCheck } from '../../../db/schema/index.ts';
import { MarkedText } from './marked-text.tsx';
import { Time } from './time.tsx';

/** Renders the notice that a preview's apply job waits, and until when, for the preview and run pages. */
export const ApplyWaitNotice: FC<{ wait: ApplyWait }> = ({ wait }) => {
  const text = describeApplyWait(wait);
  const kind = wait.reason === 'rate_limit' ? 'rate-limit-wait' : 'other-apply-wait';
  return (
    <p class={`notice ${kind}`}>
      {text.before} <Time date={wait.until} />
      {text.after}
    </p>
  );
};

/**
 * Renders the notice that a preview waits for a GitHub rate limit to lift, in the markup of
 * ApplyWaitNotice, for the preview and run pages.
 */
export const PreviewWaitNotice: FC<{ wait: PreviewWait }> = ({ wait }) => {
  const text = describePreviewWait(wait);
  return (
    <p class="notice rate-limit-wait">
      {text.before} <Time date={wait.until} />
      {text.after}
    </p>
  );
};

/** Renders the notice that an attempt of a preview's apply job failed, and when it tries again. */
export const ApplyRetryNotice: FC<{ retry: ApplyRetry }> = ({ retry }) => {
  const text = describeApplyRetry(retry);
  return (
    <p class="warning apply-retry">
      {text.before} <Time date={retry.retryAt} />
      {text.after}
    </p>
  );
};

/**
 * Renders the warning that the last apply may have written without being recorded: GitHub did
 * not confirm its ref update or review at `at`, and the read that checks it failed too. While
 * an apply job waits (`jobWaits`), pressing Apply only returns that wait, so the warning states
 * that the job checks when it starts. While the pull request is closed (`closed`), Apply is
 * rejected, and the warning states that Fixwright checks once without writing.
 */
export const ApplyUnconfirmedNotice: FC<{
  mode: ApplyMode;
  commitSha: string | null;
  branch: string;
  at: Date;
  jobWaits: boolean;
  closed: boolean;
}> = ({ mode, commitSha, branch, at, jobWaits, closed }) => {
  const checker = jobWaits ? 'The waiting apply job checks when it starts: it' : 'Apply again to check: the apply';
  const closedCheck = 'The pull request is closed, so Fixwright checks GitHub once without writing:';
  const text =
    mode === 'commit'
      ? {
          before:
            `The last apply may have pushed commit ${commitSha?.slice(0, 7) ?? ''} to branch ` +
            `${branch}: GitHub did not confirm the update at`,
          after: closed
            ? `, and reading the branch to check failed. ${closedCheck} it records that commit ` +
              'if the branch or the pull request has it.'
            : `, and reading the branch to check failed. ${checker} records that commit if the ` +
              'branch has it, and commits the fixes only if it does not.',
        }
      : {
          before:
            'The last apply may have posted the review suggestions: GitHub did not confirm the ' +
            'review at',
          after: closed
            ? ", and reading the pull request's reviews to check failed. " +
              `${closedCheck} it records that review if the pull request has it.`
            : ", and reading the pull request's reviews to check failed. " +
              `${checker} records that review if the pull request has it, and posts the review ` +
              'only if it does not.',
        };
  return (
    <p class="warning apply-unconfirmed">
      <MarkedText text={text.before} /> <Time date={at} />
      {text.after}
    </p>
  );
};

/**
 * Renders the outcome of the check that a close of the pull request started for an unconfirmed
 * apply, when the check found no commit or review (see `handleClosedApplyCheckJob`).
 */
export const ApplyClosedCheckNotice: FC<{ check: ClosedApplyCheck; branch: string }> = ({
  check,
  branch,
}) => {
  const commit = `commit ${check.commitSha?.slice(0, 7) ?? ''}`;
  const text = closedCheckText(check.outcome, check.mode, commit, branch);
  const kind = check.outcome === 'not_checked' ? 'warning' : 'notice';
  return (
    <p class={`${kind} apply-closed-check`}>
      <MarkedText text={text.before} /> <Time date={new Date(check.unconfirmedAt)} />
      {text.after}
    </p>
  );
};

/** Builds the text of ApplyClosedCheckNotice: the text before the unconfirmed write's time and after it. */
function closedCheckText(
  outcome: ClosedApplyCheck['outcome'],
  mode: ApplyMode,
  commit: string,
  branch: string,
): { before: string; after: string } {
  if (outcome === 'not_found') {
    return mode === 'commit'
      ? {
          before:
            `Not applied: the last apply did not push ${commit} to branch ${branch}. GitHub did ` +
            'not confirm the update at',
          after:
            ', and after the pull request closed, neither the branch nor the pull request ' +
            'contained the commit.',
        }
      : {
          before:
            'Not applied: the last apply did not post the review suggestions. GitHub did not ' +
            'confirm the review at',
          after:
            ', and after the pull request closed, the pull request had no review from this ' +
            'preview.',
        };
  }
  return mode === 'commit'
    ? {
        before:
          'Not confirmed: the pull request closed before Fixwright could check whether the ' +
          `last apply pushed ${commit} to branch ${branch}, whose update GitHub did not confirm at`,
        after:
          '. Reopen the pull request and apply again to check: the apply records that commit if ' +
          'the branch has it, and commits the fixes only if it does not.',
      }
    : {
        before:
          'Not confirmed: the pull request closed before Fixwright could check whether the ' +
          'last apply posted the review suggestions, which GitHub did not confirm at',
        after:
          '. Reopen the pull request and apply again to check: the apply records that review if ' +
          'the pull request has it, and posts the review only if it does not.',
      };
}
