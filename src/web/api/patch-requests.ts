import { eq } from 'drizzle-orm';
import { Hono } from 'hono';
import { z } from 'zod';
import {
  createPatchRequest,
  findActivePatchRequest,
} from '../../autofix/create-patch-request.ts';
import { maxPatchRequestFindings } from '../../autofix/patch-request-limit.ts';
import { findApplyRetry, visibleApplyWait } from '../../apply/apply-retry.ts';
import {
  findVisiblePatchRequest,
  listPatchFiles,
  shownFileStatus,
  shownPreviewVersion,
  shownResultGeneration,
  splitPreviewTokens,
} from '../../autofix/visible-patch-requests.ts';
import {
  describeSelectionOverAllowance,
  findSelectionOverAllowance,
  loadPreviewPayment,
} from '../../autofix/preview-budget.ts';
import { loadPreviewKeyUsage } from '../../autofix/preview-key-usage.ts';
import { currentPreviewWait } from '../../autofix/preview-wait.ts';
import type { AppContext } from '../../context.ts';
import { patchRequests, prRuns, type RunStatus } from '../../db/schema/index.ts';
import { applyQueue } from '../../jobs/apply.ts';
import { previewQueue } from '../../jobs/preview.ts';
import { pullRequestClosedError } from '../../runs/pull-request-closed.ts';
import { runNotCompletedMessage, supersededRunMessage } from '../../runs/run-not-completed.ts';
import { findNewestRun, findNewestRunOfOtherOwner, findVisibleRun } from '../../runs/visible-runs.ts';
import type { AuthVariables } from '../auth.ts';
import {
  AppError,
  fromInstallationUnavailable,
  fromNoProvider,
  fromPlatformKeyRejected,
  fromPullRequestClosed,
  notFound,
} from '../errors.ts';
import { diffStats } from '../diff/diff-stats.ts';
import { listShort } from '../../text/plural.ts';
import { parseInput } from '../validation.ts';
import { installationJson } from './installation-json.ts';

// PostgreSQL returns uuids in lower case, and finding ids are compared with them as strings.
const createBody = z.object({
  findingIds: z
    .array(
      z
        .uuid()
        .describe('a finding id from GET /api/runs/:runId')
        .transform((id) => id.toLowerCase()),
    )
    .min(1)
    .max(maxPatchRequestFindings)
    .describe('an array of finding ids from GET /api/runs/:runId'),
});
const createExample = '{"findingIds": ["…"]}';

/**
 * Builds the 409 for a new patch request on a run that is not completed. For a superseded run
 * it names the newest run of the pull request in the message and in `newestRunId`.
 */
async function runNotCompleted(
  context: AppContext,
  userId: string,
  run: Pick<typeof prRuns.$inferSelect, 'id' | 'repositoryId' | 'prNumber'>,
  status: RunStatus,
): Promise<AppError> {
  if (status !== 'superseded') {
    return new AppError('conflict', runNotCompletedMessage(`Run ${run.id}`, status));
  }
  const newest = await findNewestRun(context.db, userId, run);
  const otherInstallation = newest ? null : await findNewestRunOfOtherOwner(context.db, userId, run);
  return new AppError('conflict', supersededRunMessage(run.id, newest, otherInstallation), {
    newestRunId: newest?.id ?? null,
  });
}

/**
 * `POST /api/runs/:runId/patch-requests` and `GET /api/patch-requests/:id`; applying is in
 * apply.ts.
 */
export function patchRequestRoutes(context: AppContext): Hono<{ Variables: AuthVariables }> {
  const app = new Hono<{ Variables: AuthVariables }>();

  app.post('/api/runs/:runId/patch-requests', async (c) => {
    const runId = c.req.param('runId').toLowerCase();
    const run = await findVisibleRun(context.db, c.var.user.id, runId);
    if (!run) throw notFound('Run', runId);

    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      throw new AppError('bad_request', `Request body must be JSON like ${createExample}.`);
    }
    const { findingIds } = parseInput(createBody, body, 'body', createExample);

    // Checked before the status, because a run cancelled by the close would otherwise be
    // reported as having no findings. createPatchRequest checks again under a row lock.
    const closed = pullRequestClosedError(run);
    if (closed) throw fromPullRequestClosed(closed);
    if (run.status !== 'completed') {
      throw await runNotCompleted(context, c.var.user.id, run, run.status);
    }

    // Responds 200 with the user's active patch request that has the same findings.
    const respondExisting = async (id: string) => {
      const [existing] = await context.db
        .select({ status: patchRequests.status })
        .from(patchRequests)
        .where(eq(patchRequests.id, id));
      context.logger.info(
        { event: 'patch_request.reused', patchRequestId: id, runId: run.id, userId: c.var.user.id },
        'returned the patch request already queued or running for these findings',
      );
      return c.json({ id, status: existing!.status, created: false }, 200);
    };

    // A repeated request gets the preview already under way. Checked before the allowance,
    // because that preview's own holds would otherwise make the repeat look over the allowance.
    // createPatchRequest checks again under the run's lock.
    const active = await findActivePatchRequest(context.db, {
      runId: run.id,
      userId: c.var.user.id,
      findingIds,
    });
    if (active) return respondExisting(active);

    // The same check as the dashboard's form, so that a preview is not queued only to fail the
    // files that the allowance cannot cover.
    const payment = await loadPreviewPayment(context, c.var.user.id);
    const rejected = fromNoProvider(payment) ?? fromPlatformKeyRejected(payment);
    if (rejected) throw rejected;
    const over = await findSelectionOverAllowance(context.db, payment, { runId: run.id, findingIds });
    if (over) {
      throw new AppError(
        'conflict',
        describeSelectionOverAllowance(over, 'api'),
        {
          neededTokens: over.neededTokens,
          remainingTokens: over.allowance.remaining,
          estimate: over.estimate,
          files: over.calls,
        },
      );
    }

    const result = await createPatchRequest(context.db, context.boss, {
      runId: run.id,
      userId: c.var.user.id,
      findingIds,
    });
    if (!result.ok && result.reason === 'installation_unavailable') {
      throw fromInstallationUnavailable(result.error);
    }
    if (!result.ok && result.reason === 'pull_request_closed') {
      throw fromPullRequestClosed(result.error);
    }
    // A push that superseded the run after the check above.
    if (!result.ok && result.reason === 'run_not_completed') {
      throw await runNotCompleted(context, c.var.user.id, run, result.status);
    }
    if (!result.ok) {
      throw new AppError(
        'bad_request',
        `Invalid findingIds: ${listShort(result.unknownFindingIds)} ` +
          `${result.unknownFindingIds.length === 1 ? 'is' : 'are'} not a finding of run ${run.id}.`,
        { unknownFindingIds: result.unknownFindingIds },
      );
    }
    if (!result.created) return respondExisting(result.id);
    context.logger.info(
      { event: 'patch_request.created', patchRequestId: result.id, runId: run.id, userId: c.var.user.id },
      'patch request queued',
    );
    return c.json({ id: result.id, status: 'queued', created: true }, 202);
  });

  app.get('/api/patch-requests/:id', async (c) => {
    const id = c.req.param('id').toLowerCase();
    const found = await findVisiblePatchRequest(context.db, c.var.user.id, id);
    if (!found) throw notFound('Patch request', id);
    const { request, run, installation } = found;

    const files = await listPatchFiles(context.db, request.id);
    const tokens = splitPreviewTokens(request, files);
    const keyUsage = await loadPreviewKeyUsage(context.db, request.id, files);
    const applyRetry = await findApplyRetry(context.boss, request);
    const applyWait = visibleApplyWait(request, applyRetry);
    // A preview waits while the request is running, and an apply only once it is ready.
    const previewWait = currentPreviewWait(request, files.filter((file) => file.status === 'running').length);
    const waitJson = (reason: 'rate_limit' | 'other_apply') =>
      applyWait?.reason === reason ? { job: applyQueue, until: applyWait.until.toISOString() } : null;
    return c.json({
      id: request.id,
      runId: request.runId,
      status: request.status,
      error: request.error,
      filesTotal: request.filesTotal,
      filesDone: request.filesDone,
      totalTokens: tokens.total,
      filesTokens: tokens.files,
      discardedTokens: tokens.discarded,
      chargedTokens: keyUsage.chargedTokens,
      ownKeyTokens: keyUsage.ownKeyTokens,
      createdAt: request.createdAt.toISOString(),
      completedAt: request.completedAt?.toISOString() ?? null,
      applied: request.appliedAt
        ? {
            mode: request.applyMode,
            at: request.appliedAt.toISOString(),
            commitSha: request.appliedCommitSha,
            reviewId: request.appliedReviewId,
            note: request.appliedNote,
          }
        : null,
      applyError: request.applyError,
      applyUnconfirmed:
        request.appliedAt === null && request.applyUnconfirmedAt !== null
          ? {
              mode: request.applyUnconfirmedMode,
              at: request.applyUnconfirmedAt.toISOString(),
              commitSha: request.applyUnconfirmedCommitSha,
            }
          : null,
      applyClosedCheck: request.appliedAt === null ? request.applyClosedCheck : null,
      pullRequestClosedAt: run.prClosedAt?.toISOString() ?? null,
      rateLimitWait: previewWait
        ? { job: previewQueue, until: previewWait.until.toISOString(), filesRunning: previewWait.filesRunning }
        : waitJson('rate_limit'),
      otherApplyWait: waitJson('other_apply'),
      applyRetry: applyRetry
        ? {
            job: applyQueue,
            retryAt: applyRetry.retryAt.toISOString(),
            failedAttempts: applyRetry.failedAttempts,
            maxAttempts: applyRetry.maxAttempts,
            error: applyRetry.error,
          }
        : null,
      installation: installationJson(run.installationId, installation),
      // Sent back with an apply, which then writes only these files as they are here.
      previewVersion: shownPreviewVersion(request.status, files),
      files: files.map((file) => {
        const stats = file.diff ? diffStats(file.diff, file.originalText ?? '') : null;
        return {
          id: file.id,
          generation: file.generation,
          resultGeneration: shownResultGeneration(file),
          path: file.path,
          status: shownFileStatus(request.status, file.status),
          diff: file.diff,
          linesAdded: stats?.added ?? null,
          linesDeleted: stats?.deleted ?? null,
          largeRewrite: stats?.largeRewrite ?? false,
          error: file.error,
          regenerationError: file.regenerationError,
          keyNotice: file.keyNotice,
          provider: file.provider,
          keySource: keyUsage.fileKeySources.get(file.id) ?? null,
          model: file.model,
          tokens: file.totalTokens,
        };
      }),
    });
  });

  return app;
}
