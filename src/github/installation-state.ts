import { RequestError } from '@octokit/request-error';
import type { GitHubApp } from './app.ts';

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
 * a pg-boss job that is retried with backoff, so no worker waits for them.
 */
export async function fetchInstallationState(
  app: GitHubApp,
  installationId: number,
): Promise<GitHubInstallationState> {
  try {
    const { data } = await app.appOctokit().rest.apps.getInstallation({
      installation_id: installationId,
      request: { retries: 0 },
    });
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
