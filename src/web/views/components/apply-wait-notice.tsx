import type { FC } from 'hono/jsx';
import { describeApplyRetry, type ApplyRetry } from '../../../apply/apply-retry.ts';
import { describeApplyWait, type ApplyWait } from '../../../apply/apply-wait.ts';
import type { ApplyMode } from '../../../db/schema/index.ts';
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
 * that the job checks when it starts.
 */
export const ApplyUnconfirmedNotice: FC<{
  mode: ApplyMode;
  commitSha: string | null;
  branch: string;
  at: Date;
  jobWaits: boolean;
}> = ({ mode, commitSha, branch, at, jobWaits }) => {
  const checker = jobWaits ? 'The waiting apply job checks when it starts: it' : 'Apply again to check: the apply';
  const text =
    mode === 'commit'
      ? {
          before:
            `The last apply may have pushed commit ${commitSha?.slice(0, 7) ?? ''} to branch ` +
            `${branch}: GitHub did not confirm the update at`,
          after:
            `, and reading the branch to check failed. ${checker} records that commit if the ` +
            'branch has it, and commits the fixes only if it does not.',
        }
      : {
          before:
            'The last apply may have posted the review suggestions: GitHub did not confirm the ' +
            'review at',
          after:
            ", and reading the pull request's reviews to check failed. " +
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
