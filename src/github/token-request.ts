import type { Octokit } from '@octokit/core';
import { accessTokenPath } from './installation-unavailable.ts';

/**
 * Returns whether `error` is GitHub's 401 to the request that mints an installation token.
 * GitHub sends it when the app's JSON web token does not verify: APP_ID and PRIVATE_KEY_PATH
 * belong to different apps, or the key was deleted from the app. Neither heals by itself, and
 * the service reads the key only when it starts, so a retry would fail the same way.
 */
export function isAppCredentialRejection(error: unknown): boolean {
  if (!(error instanceof Error) || (error as { status?: unknown }).status !== 401) return false;
  const url = (error as { request?: { url?: unknown } }).request?.url;
  return typeof url === 'string' && accessTokenPath.test(url);
}

/** The next steps after isAppCredentialRejection, for messages that name the failed request. */
export const appCredentialHint =
  'GitHub rejected the JSON web token signed with the key of PRIVATE_KEY_PATH for APP_ID. ' +
  'Check that APP_ID and PRIVATE_KEY_PATH belong to the same GitHub App and that the key is ' +
  "one of the app's current private keys (GitHub rejects a deleted key), then restart the " +
  'service and push a commit or redeliver the event.';

/** The token request's URL in request options, a route template or a path. */
const tokenRoute = /\/app\/installations\/[^/]+\/access_tokens$/;

/**
 * Octokit plugin that stops the retry plugin from sending a request again when it failed
 * because minting its installation token failed. @octokit/auth-app sends the token request
 * through the same Octokit, so the retry plugin has already retried that request, and retrying
 * the request that needed the token would repeat those retries: 4 x 4 token requests in place
 * of 4. Register it after parseResponses and before the retry plugin, so that its error hook
 * runs before the retry plugin's.
 */
export function retryTokenRequestOnce(octokit: Octokit): void {
  octokit.hook.wrap('request', async (request, options) => {
    try {
      return await request(options);
    } catch (error) {
      const failedUrl = (error as { request?: { url?: unknown } }).request?.url;
      const isTokenFailure = typeof failedUrl === 'string' && accessTokenPath.test(failedUrl);
      // before-after-hook 4 passes this options object to the retry plugin's hooks, which read
      // `request.retries` from it, as parseResponses sets its own option.
      if (isTokenFailure && !tokenRoute.test(String(options.url))) {
        options.request = { ...options.request, retries: 0 };
      }
      throw error;
    }
  });
}
