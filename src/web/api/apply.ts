import { Hono } from 'hono';
import { z } from 'zod';
import { applyPatchRequest, ApplyRejectedError } from '../../apply/apply-patch-request.ts';
import { previewVersionSchema } from '../../apply/preview-version.ts';
import type { AppContext } from '../../context.ts';
import { applyModes } from '../../db/schema/index.ts';
import { isUuid } from '../../runs/visible-runs.ts';
import type { AuthVariables } from '../auth.ts';
import { AppError, notFound } from '../errors.ts';
import { parseInput } from '../validation.ts';

const applyBody = z.object({
  mode: z.enum(applyModes).describe('"commit" or "suggestions"').optional(),
  previewVersion: previewVersionSchema.optional(),
});

/**
 * `POST /api/patch-requests/:id/apply` with an optional body
 * `{ "mode": "commit" | "suggestions", "previewVersion": "…" }`. Another user's request gets
 * 404, like a missing one. With `previewVersion` (see `PreviewVersion`), files that changed
 * since then get 409 with `changedFiles`, and nothing is claimed or written.
 * An apply that GitHub rate-limits gets 202 `{ "id", "status": "waiting", "rateLimitedUntil" }`,
 * and so does an apply while the request's apply job waits for a rate limit. While that job
 * waits for another apply's claim instead, the 202 has `otherApplyWaitUntil`.
 */
export function applyRoutes(context: AppContext): Hono<{ Variables: AuthVariables }> {
  const app = new Hono<{ Variables: AuthVariables }>();

  app.post('/api/patch-requests/:id/apply', async (c) => {
    const id = c.req.param('id');
    if (!isUuid(id)) throw notFound('Patch request', id);

    const text = await c.req.text();
    let body: unknown = {};
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        throw new AppError(
          'bad_request',
          'Request body must be JSON like {"mode": "commit"}, or empty.',
        );
      }
    }
    const { mode, previewVersion } = parseInput(applyBody, body, 'body', '{"mode": "commit"}');

    const logger = context.logger.child({ patchRequestId: id, userId: c.var.user.id });
    let result;
    try {
      result = await applyPatchRequest(
        context,
        { patchRequestId: id, userId: c.var.user.id, mode, previewVersion },
        logger,
      );
    } catch (error) {
      if (error instanceof ApplyRejectedError) {
        throw new AppError(error.code, error.message, error.details);
      }
      throw error;
    }
    if (!result) throw notFound('Patch request', id);
    // An apply job continues the apply when the rate limit lifts or the other apply ends.
    if ('status' in result) return c.json(result, 202);
    return c.json(result, 200);
  });

  return app;
}
