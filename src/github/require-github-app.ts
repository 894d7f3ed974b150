import { ConfigError } from '../config/env.ts';
import type { AppContext } from '../context.ts';
import type { GitHubApp } from './app.ts';

/**
 * Returns the GitHub App client, or raises ConfigError when APP_ID and the private key are not
 * set. Job handlers fail such work at once instead of retrying, since only a restart with the
 * credentials can help.
 */
export function requireGitHubApp(context: Pick<AppContext, 'github'>): GitHubApp {
  if (context.github) return context.github;
  throw new ConfigError(
    'GitHub App credentials are not configured: set APP_ID and PRIVATE_KEY (or ' +
      'PRIVATE_KEY_PATH) and restart; then redeliver the event or push a commit.',
  );
}
