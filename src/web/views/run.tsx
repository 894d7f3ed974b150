import type { FC } from 'hono/jsx';
import type { FileCallEstimate, FileCallParts } from '../../autofix/preview-budget.ts';
import { bytesPerToken } from '../../llm/prompt.ts';
import type { findings, prRuns } from '../../db/schema/index.ts';
import { omissionNotes } from '../../report/summary-markdown.ts';
import { describeRunRateLimitWait, runRateLimitWait } from '../../runs/run-rate-limit.ts';
import type { NewestRunLink, RunInstallation } from '../../runs/visible-runs.ts';
import type { ActiveSession } from '../session/session-store.ts';
import { CsrfField } from './components/csrf-field.tsx';
import { FormError } from './components/form-error.tsx';
import { MarkedText } from './components/marked-text.tsx';
import { EarlierPreviews, type EarlierPreviewsView } from './components/earlier-previews.tsx';
import {
  FixBlockerBadges,
  FixBlockerNotices,
  listFixBlockers,
  SupersededRunNotice,
} from './components/fix-blockers.tsx';
import {
  estimateWord,
  formatTokens,
  PreviewBudgetSummary,
  type PreviewBudgetView,
} from './components/preview-budget.tsx';
import { StatusBadge } from './components/status-badge.tsx';
import { Time } from './components/time.tsx';
import { Layout } from './layout.tsx';

type Run = typeof prRuns.$inferSelect;
type Finding = typeof findings.$inferSelect;

function groupByPath(rows: Finding[]): [string, Finding[]][] {
  const groups = new Map<string, Finding[]>();
  for (const row of rows) groups.set(row.path, [...(groups.get(row.path) ?? []), row]);
  return [...groups.entries()];
}

/**
 * One file's call estimate with all its findings. Its attributes hold the parts from which
 * public/app.js computes the estimate for the checked findings alone.
 */
const CallEstimate: FC<{ call: FileCallEstimate; parts: FileCallParts | undefined }> = ({ call, parts }) => (
  <span
    class="muted call-estimate"
    data-tokens={call.tokens}
    data-size-known={String(call.sizeKnown)}
    data-base-bytes={parts?.baseBytes}
    data-fixed-tokens={parts?.fixedTokens}
    data-kind-bytes={parts ? JSON.stringify(Object.fromEntries(parts.kindBytes)) : undefined}
    data-bytes-per-token={bytesPerToken}
  >
    {`· ${estimateWord([call])} ${formatTokens(call.tokens)} tokens`}
  </span>
);

/**
 * A run's findings grouped by file, with checkboxes and the "Preview fix" form. Each file shows
 * its call's estimate, and only the findings in `budget.checkedFindingIds` are checked. htmx disables
 * the submit button while the form's request is in flight, so a double click sends it once, and
 * public/app.js disables it while no finding is checked. A
 * closed pull request, an unavailable installation or a newer commit hides the button and shows
 * why.
 */
const nothingCheckedText = 'No finding is checked. Check at least one finding to preview its fix.';

export const RunPage: FC<{
  session: ActiveSession;
  run: Run;
  installation: RunInstallation | null;
  findings: Finding[];
  previews: EarlierPreviewsView;
  budget: PreviewBudgetView;
  /** The link to a superseded run's newer commits (see findNewestRunLink), or null. */
  newestRun: NewestRunLink;
  /** The reason the last "Preview fix" was rejected, shown under the form. */
  selectionError?: string | undefined;
}> = ({ session, run, installation, findings, previews, budget, newestRun, selectionError }) => {
  const action = `/runs/${run.id}/patch-requests`;
  const blockers = listFixBlockers(run, installation);
  const canPreview = blockers.length === 0 && run.status === 'completed' && findings.length > 0;
  const callsByPath = new Map(budget.calls.map((call) => [call.path, call]));
  const rateLimitWait = runRateLimitWait(run);
  const waitText = rateLimitWait ? describeRunRateLimitWait(rateLimitWait) : null;
  return (
    <Layout title={`${run.repository}#${run.prNumber}`} session={session}>
      <p class="breadcrumbs">
        <a href="/">Home</a> / {`${run.repository}#${run.prNumber}`}
      </p>
      <h1>
        <MarkedText text={run.prTitle || `Pull request #${run.prNumber}`} />
      </h1>
      <p class="meta">
        <StatusBadge status={run.status} /> <FixBlockerBadges blockers={blockers} />
        {`${run.repository}#${run.prNumber}`} · head{' '}
        <code>{run.headSha.slice(0, 12)}</code> on{' '}
        <code>
          <MarkedText text={run.headRef} />
        </code>{' '}
        · base{' '}
        <code>{run.baseSha.slice(0, 12)}</code>
        {run.baseRef ? (
          <>
            {' '}
            on{' '}
            <code class="base-ref">
              <MarkedText text={run.baseRef} />
            </code>
          </>
        ) : null}{' '}
        · started <Time date={run.createdAt} />
      </p>
      <FixBlockerNotices blockers={blockers} />
      {run.error ? (
        <p class="error">
          <MarkedText text={run.error} />
        </p>
      ) : null}
      {run.reportError ? (
        <p class="error">
          <MarkedText text={run.reportError} />
        </p>
      ) : null}
      {rateLimitWait && waitText ? (
        <p class="notice rate-limit-wait">
          {waitText.before} <Time date={rateLimitWait.until} />
          {waitText.after}
        </p>
      ) : null}
      {omissionNotes(run, (path) => path).map((note) => (
        <p class="notice">
          <MarkedText text={note} />
        </p>
      ))}

      <form
        method="post"
        action={action}
        hx-post={action}
        hx-target="#preview-progress"
        hx-disabled-elt="find button[type=submit]"
      >
        <CsrfField session={session} />
        {/* The "Earlier previews" list that the response sends out of band keeps this length. */}
        {previews.listAll ? <input type="hidden" name="previews" value="all" /> : null}
        {findings.length === 0 ? (
          <p class="muted">
            {run.status === 'completed'
              ? 'No findings in this run.'
              : run.status === 'queued' || run.status === 'analyzing'
                ? 'The analysis has not finished yet.'
                : `This run is ${run.status} and has no findings to show.`}
          </p>
        ) : (
          groupByPath(findings).map(([path, rows]) => (
            <fieldset class="file-findings card">
              <legend>
                <code>
                  <MarkedText text={path} />
                </code>{' '}
                <span class="muted">{`${rows.length} finding${rows.length === 1 ? '' : 's'}`}</span>
                {canPreview && callsByPath.has(path) ? (
                  <>
                    {' '}
                    <CallEstimate call={callsByPath.get(path)!} parts={budget.parts.get(path)} />
                  </>
                ) : null}
              </legend>
              {rows.map((finding) => (
                <label class="finding">
                  <input
                    type="checkbox"
                    name="findingIds"
                    value={finding.id}
                    data-bytes={budget.parts.get(path)?.findingBytes.get(finding.id)}
                    data-kind={budget.parts.get(path)?.findingKinds.get(finding.id)}
                    checked={budget.checkedFindingIds.has(finding.id)}
                  />
                  <span class={`badge severity-${finding.severity}`}>{finding.severity}</span>
                  <code class="rule">{finding.ruleId}</code>
                  <span class="muted">
                    {finding.startLine === finding.endLine
                      ? `line ${finding.startLine}`
                      : `lines ${finding.startLine}–${finding.endLine}`}
                  </span>
                  <span class="message">
                    <MarkedText text={finding.message} />
                  </span>
                  {finding.excerpt ? (
                    <pre class="excerpt">
                      <code>
                        <MarkedText text={finding.excerpt} />
                      </code>
                    </pre>
                  ) : null}
                </label>
              ))}
            </fieldset>
          ))
        )}
        {canPreview ? (
          <>
            <PreviewBudgetSummary budget={budget} />
            {/*
              public/app.js shows this, with its text from data-text, and disables the button
              while no finding is checked. Without JavaScript the rejected request says so.
            */}
            <p class="notice" data-nothing-checked data-text={nothingCheckedText} hidden></p>
            <button type="submit" class="primary">
              Preview fix
            </button>
          </>
        ) : blockers.length > 0 ? null : run.status === 'superseded' ? (
          <SupersededRunNotice subject="run" newestRun={newestRun} />
        ) : null}
      </form>
      <div id="preview-progress" aria-live="polite">
        {selectionError ? <FormError message={selectionError} /> : null}
      </div>

      <EarlierPreviews runId={run.id} view={previews} />
    </Layout>
  );
};
