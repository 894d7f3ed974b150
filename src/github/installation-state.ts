import { RequestError } from '@octokit/request-error';
import { z } from 'zod';
import { stripNulDeep } from '../text/strip-nul.ts';
import type { GitHubApp } from './app.ts';

/**
 * The fields of GitHub's `installation` object that the check reads. Octokit returns whatever
 * body a 200 response has, such as a proxy's HTML page as a string, and reading
 * `suspended_at` of that would find it missing and take the installation as suspended.
 */
const installationResponse = z.object({
  id: z.number(),
  suspended_at: z.string().nullable(),
  suspended_by: z.object({ login: z.string() }).nullish(),
});

/** An installation's state as GitHub reports it. */
export type GitHubInstallationState =
  | { kind: 'active' }
  | { kind: 'suspended'; suspendedAt: Date; suspendedBy: string | null }
  | { kind: 'deleted' };

/**
 * Reads the installation from GET /app/installations/{installation_id} with the app's JWT.
 * GitHub returns 404 for an uninstalled app, and a non-null `suspended_at` (with the user in
 * `suspended_by`) for a suspended one: schema `installation` in @octokit/openapi-types 29.
 * Octokit's own retries of server errors are turned off for this request, because the caller is
 * a pg-boss job that is retried with backoff, so no worker waits for them. A 200 response that
 * is not the installation `installationId` throws, so the job retries it and changes no mark.
 */
export async function fetchInstallationState(
  app: GitHubApp,
  installationId: number,
): Promise<GitHubInstallationState> {
  try {
    const response = await app.appOctokit().rest.apps.getInstallation({
      installation_id: installationId,
      request: { retries: 0 },
    });
    const data = parseInstallation(response.data, installationId);
    if (data.suspended_at === null) return { kind: 'active' };
    const suspendedAt = new Date(data.suspended_at);
    return {
      kind: 'suspended',
      // A time that does not parse still means suspended, so the check's time replaces it.
      suspendedAt: Number.isNaN(suspendedAt.getTime()) ? new Date() : suspendedAt,
      suspendedBy: data.suspended_by?.login ?? null,
    };
  } catch (error) {
    if (error instanceof RequestError && error.status === 404) return { kind: 'deleted' };
    throw error;
  }
}

/**
 * Returns `data` as the installation `installationId`. Throws when `data` is not an object,
 * lacks or mistypes a field, or has another installation's id.
 */
function parseInstallation(data: unknown, installationId: number) {
  const request = `GET /app/installations/${installationId}`;
  // The logins in it reach stored cancel reasons, and PostgreSQL text cannot store NUL.
  const parsed = installationResponse.safeParse(stripNulDeep(data));
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || 'body'}: ${issue.message}`,
    );
    throw new Error(`GitHub returned an invalid installation for ${request}: ${problems.join('; ')}.`);
  }
  if (parsed.data.id !== installationId) {
    throw new Error(
      `GitHub returned an invalid installation for ${request}: its id is ${parsed.data.id}, not ${installationId}.`,
    );
  }
  return parsed.data;
}
