import type { Octokit } from '@octokit/rest';
import { z } from 'zod';
import { parseGitHubResponse, requestPath, UnexpectedGitHubAnswerError } from './github-response.ts';

/**
 * The bot user of a GitHub App. GitHub records the reviews that the app posts as written by it,
 * and the commits that the app creates through the Git Data API as authored by it.
 */
export interface AppBotUser {
  /** The bot user's account id, which differs from the app id. */
  id: number;
  /** `SLUG[bot]`. Users cannot register a login with `[bot]` in it. */
  login: string;
}

/**
 * This GitHub App as the checks for its own earlier writes need it: the app id for check runs,
 * the bot user for reviews and commits, and GitHub's committer address for signed commits.
 */
export interface AppIdentity {
  appId: number;
  /**
   * Returns the app's bot user, read from GitHub with `octokit` (an installation's Octokit) until
   * one read succeeds. A failed read fails only the concurrent calls that passed the same Octokit.
   */
  botUser(octokit: Octokit): Promise<AppBotUser>;
  /**
   * Host of GitHub's web interface (see `webHostOfApi`), which GitHub's no-reply addresses
   * `noreply@HOST` and `ID+LOGIN@users.noreply.HOST` name.
   */
  webHost: string;
  /**
   * Address of the committer `GitHub <noreply@HOST>` that GitHub puts on the commits it
   * creates and signs for an app.
   */
  webCommitterEmail: string;
}

/** The fields of `GET /app` that are read (schema `integration` in @octokit/openapi-types 29). */
const appSchema = z.object({ id: z.number(), slug: z.string().min(1) });

/** The fields of `GET /users/{username}` that are read (schema `public-user`). */
const userSchema = z.object({
  id: z.number().int().positive(),
  login: z.string(),
  type: z.string(),
});

/**
 * Reads the app's bot user: the slug from `GET /app` with the app's JWT, then the account
 * `SLUG[bot]` from `GET /users/{username}` with an installation token. Raises
 * UnexpectedGitHubAnswerError when GitHub names another app or the account is not a bot.
 */
export async function readAppBotUser(
  appOctokit: Octokit,
  installationOctokit: Octokit,
  appId: number,
): Promise<AppBotUser> {
  const appResponse = await appOctokit.request('GET /app');
  const app = parseGitHubResponse(appSchema, 'GET', appResponse);
  if (app.id !== appId) {
    throw new UnexpectedGitHubAnswerError(
      'GET',
      requestPath(appResponse.url),
      `id: expected app ${appId}, the APP_ID setting, received ${app.id}`,
      appResponse.status,
    );
  }
  const login = `${app.slug}[bot]`;
  const userResponse = await installationOctokit.rest.users.getByUsername({ username: login });
  const user = parseGitHubResponse(userSchema, 'GET', userResponse);
  if (user.type !== 'Bot' || user.login.toLowerCase() !== login.toLowerCase()) {
    throw new UnexpectedGitHubAnswerError(
      'GET',
      requestPath(userResponse.url),
      `expected the bot account ${login}, received ${user.type} ${user.login}`,
      userResponse.status,
    );
  }
  return { id: user.id, login: user.login };
}

/**
 * Returns the host of GitHub's web interface for the REST API at `apiUrl`: `github.com` for
 * `https://api.github.com`, `NAME.ghe.com` for `https://api.NAME.ghe.com`, and the server's
 * own host for GitHub Enterprise Server's `https://HOST/api/v3`.
 */
export function webHostOfApi(apiUrl: string): string {
  const { hostname, pathname } = new URL(apiUrl);
  if (pathname.replace(/\/+$/, '') === '/api/v3') return hostname;
  return hostname.replace(/^api\./, '');
}
