import { z } from 'zod';
import type { Config } from '../config/env.ts';
import { stripNulDeep } from '../text/strip-nul.ts';

/** Raised when GitHub rejects the sign-in or cannot be reached; the message states what to do. */
export class GitHubOAuthError extends Error {
  override name = 'GitHubOAuthError';
}

const requestTimeoutMs = 10_000;

const tokenResponse = z.union([
  z.object({ access_token: z.string().min(1) }),
  z.object({ error: z.string(), error_description: z.string().optional() }),
]);

const userResponse = z.object({
  id: z.number().int().positive(),
  login: z.string().min(1),
  name: z.string().nullish(),
});

/** Builds the URL of GitHub's authorize page for the web flow. */
export function authorizeUrl(
  config: Config,
  input: { clientId: string; callbackUrl: string; state: string },
): string {
  const url = new URL(`${config.GITHUB_URL}/login/oauth/authorize`);
  url.searchParams.set('client_id', input.clientId);
  url.searchParams.set('redirect_uri', input.callbackUrl);
  url.searchParams.set('state', input.state);
  url.searchParams.set('allow_signup', 'false');
  return url.toString();
}

/** Exchanges the callback's code for a user access token. */
export async function exchangeCode(
  config: Config,
  input: { clientId: string; clientSecret: string; code: string; callbackUrl: string },
): Promise<string> {
  const url = `${config.GITHUB_URL}/login/oauth/access_token`;
  const response = await request(url, {
    method: 'POST',
    headers: { accept: 'application/json', 'content-type': 'application/json' },
    body: JSON.stringify({
      client_id: input.clientId,
      client_secret: input.clientSecret,
      code: input.code,
      redirect_uri: input.callbackUrl,
    }),
  });
  const parsed = tokenResponse.safeParse(await readJson(response, url));
  if (!parsed.success) {
    throw new GitHubOAuthError(`GitHub's token endpoint ${url} returned an unexpected body.`);
  }
  // GitHub reports a bad code or client secret with status 200 and an `error` field.
  if ('error' in parsed.data) {
    const detail = parsed.data.error_description ?? parsed.data.error;
    throw new GitHubOAuthError(
      `GitHub rejected the sign-in code (${detail}); start the sign-in again, and if it keeps ` +
        'failing check GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET.',
    );
  }
  return parsed.data.access_token;
}

/** Reads the account of a user access token from `GET /user`. */
export async function fetchGitHubUser(
  config: Config,
  accessToken: string,
): Promise<{ id: number; login: string; name: string | null }> {
  const url = `${config.GITHUB_API_URL}/user`;
  const response = await request(url, {
    headers: {
      accept: 'application/vnd.github+json',
      authorization: `Bearer ${accessToken}`,
      'x-github-api-version': '2022-11-28',
      'user-agent': 'fixwright',
    },
  });
  // The login and name are stored, and PostgreSQL text cannot store NUL.
  const parsed = userResponse.safeParse(stripNulDeep(await readJson(response, url)));
  if (!parsed.success) {
    throw new GitHubOAuthError(`GitHub's ${url} returned no user id and login.`);
  }
  return { id: parsed.data.id, login: parsed.data.login, name: parsed.data.name ?? null };
}

async function request(url: string, init: RequestInit): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal: AbortSignal.timeout(requestTimeoutMs) });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new GitHubOAuthError(`Request to ${url} failed (${reason}); try signing in again.`);
  }
  if (!response.ok) {
    throw new GitHubOAuthError(
      `GitHub's ${url} returned HTTP ${response.status}; try signing in again later.`,
    );
  }
  return response;
}

async function readJson(response: Response, url: string): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    throw new GitHubOAuthError(`GitHub's ${url} returned a body that is not JSON.`);
  }
}
