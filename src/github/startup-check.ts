import { asGitHubRejection } from '../apply/github-rejection.ts';
import { redactCredentials } from '../errors/redact-credentials.ts';
import type { Logger } from '../logger.ts';
import type { GitHubApp } from './app.ts';
import { appCredentialHint } from './token-request.ts';

/**
 * Sends GET /app once with the app's JSON web token and logs the outcome, so that a wrong
 * GITHUB_API_URL or a key of another app shows at start rather than on the first run. A
 * failure is a warning and never stops the service, because GitHub may be down for a while.
 * Octokit's retries are off, so the check ends within GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS.
 */
export async function checkGitHubAtStart(github: GitHubApp, apiUrl: string, logger: Logger): Promise<void> {
  const setting = `GITHUB_API_URL ${redactCredentials(apiUrl)}`;
  try {
    const { data } = await github.appOctokit().request('GET /app', { request: { retries: 0 } });
    const slug = (data as { slug?: unknown } | null)?.slug;
    logger.info(
      { event: 'github.checked', appSlug: typeof slug === 'string' ? slug : null },
      `${setting} accepted the app's JSON web token`,
    );
    return;
  } catch (error) {
    const rejection = asGitHubRejection(error);
    if (rejection?.noResponse) {
      logger.warn(
        { event: 'github.unreachable', message: rejection.message },
        `${setting} sent no response to GET /app at start: ${rejection.message} Analyses retry ` +
          'GitHub requests for a few minutes and then fail.',
      );
    } else if (rejection?.status === 401) {
      logger.warn(
        { event: 'github.app_rejected', message: rejection.message },
        `GitHub returned 401 for GET /app at start: ${rejection.message}. ${appCredentialHint}`,
      );
    } else {
      const status = rejection && !rejection.invalidResponse ? rejection.status : null;
      logger.warn(
        { event: 'github.check_failed', status, message: rejection?.message ?? (error as Error).message },
        `GET /app to ${setting} failed at start; analyses will show the error if it persists`,
      );
    }
  }
}
