import type { FC } from 'hono/jsx';
import { describeApplyRetry, type ApplyRetry } from '../../../apply/apply-retry.ts';
import { describeApplyWait, type ApplyWait } from '../../../apply/apply-wait.ts';
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
