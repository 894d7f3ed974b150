import type { Octokit } from '@octokit/rest';
import { z } from 'zod';

/** Permissions of an installation access token by name, such as `{ contents: 'write' }`. */
export type InstallationPermissions = Record<string, string>;

/**
 * The field of the token authentication that `auth({ type: 'installation' })` of
 * @octokit/auth-app 8.3.1 returns: the `permissions` object of GitHub's response to
 * POST /app/installations/{installation_id}/access_tokens, kept with the cached token. The
 * cache stores each permission as `write` or `read`, so a token read from it has only those.
 */
const tokenAuthentication = z.object({ permissions: z.record(z.string(), z.string()) });

/**
 * Reads the permissions of the access token that `octokit`, an installation's Octokit, sends.
 * The token is requested only when none is cached, or always when `renew` is true, which
 * replaces the cached token for the installation's later requests too.
 */
export async function readTokenPermissions(
  octokit: Octokit,
  installationId: number,
  renew: boolean,
): Promise<InstallationPermissions> {
  const authentication = await octokit.auth({ type: 'installation', ...(renew ? { refresh: true } : {}) });
  const parsed = tokenAuthentication.safeParse(authentication);
  if (!parsed.success) {
    throw new Error(
      `Reading the permissions of the access token of installation ${installationId} failed, ` +
        'because @octokit/auth-app returned no `permissions` object. Check that the installed ' +
        '@octokit/auth-app is version 8.3.1, which package.json pins.',
    );
  }
  return parsed.data.permissions;
}
