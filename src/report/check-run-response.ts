import { z } from 'zod';

const { shape } = z.object({
  id: z.number().int().positive(),
  external_id: z.string().nullable(),
  output: z.object({
    title: z.string().nullable(),
    summary: z.string().nullable(),
    text: z.string().nullable(),
    annotations_count: z.number().int().nonnegative(),
  }),
});
const { output } = shape;

/**
 * The fields of GitHub's check run (schema `check-run` in @octokit/openapi-types 29) that the
 * report and the "Fix with AI" notice read, for parseGitHubResponse. Each reader picks the
 * fields it reads, so that a response is rejected only for a field that its reader uses.
 */
export const checkRunSchemas = {
  /** A check run that a create or update request returns, whose id the report stores. */
  written: z.object({ id: shape.id }),
  /** A check run of a listing, which the report matches by its app and external id. */
  listed: z.object({
    id: shape.id,
    external_id: shape.external_id,
    app: z.object({ id: z.number() }).nullable(),
    output: output.pick({ annotations_count: true, text: true }),
  }),
  /** The stored output that a report attempt resumes from. */
  storedOutput: z.object({ output: output.pick({ annotations_count: true, text: true }) }),
  /** The check run that a "Fix with AI" notice rewrites and may write back. */
  noticed: z.object({
    external_id: shape.external_id,
    output: output.pick({ title: true, summary: true, text: true }),
  }),
};
