import { accountId, nodeId, userPayload } from './payloads.ts';
import { FakeGitHubError, type FakeResponse, type Route } from './router.ts';
import { json, param, type Context } from './route-helpers.ts';
import type { FakeState } from './state.ts';

/**
 * The fake's GitHub App and its bot user. GitHub records what an installation token writes as
 * the app's bot user `SLUG[bot]`, an account of type "Bot" whose id differs from the app id.
 * `GET /app` and `GET /users/{username}` return them in the shapes of the schemas
 * `integration` and `public-user` of @octokit/openapi-types 29. The fake has no other accounts,
 * so `GET /users/{username}` returns 404 for every other login.
 */

export const appSlug = 'fixwright';
export const appBotLogin = `${appSlug}[bot]`;
/** The bot user's account id, as `userPayload` gives it. */
export const appBotUserId = accountId(appBotLogin);

/** Returns the app as check runs and comments name it in `app` and `performed_via_github_app`. */
export function appSummary(state: FakeState) {
  return { id: Number(state.appId), slug: appSlug, name: 'Fixwright' };
}

/** Returns the web host of the fake, which GitHub's no-reply addresses name. */
function webHost(state: FakeState): string {
  return new URL(state.baseUrl).hostname;
}

/** Returns the author that GitHub records on a commit that the app creates without naming one. */
export function appBotCommitIdentity(state: FakeState) {
  return { name: appBotLogin, email: `${appBotUserId}+${appBotLogin}@users.noreply.${webHost(state)}` };
}

/** Returns the committer `GitHub <noreply@HOST>` of the commits that GitHub creates and signs itself. */
export function webCommitterIdentity(state: FakeState) {
  return { name: 'GitHub', email: `noreply@${webHost(state)}` };
}

function getApp(context: Context): FakeResponse {
  const { state } = context;
  const app = appSummary(state);
  const createdAt = '2024-01-01T00:00:00Z';
  return json(200, {
    ...app,
    client_id: `Iv1.${app.id}`,
    node_id: nodeId('Integration', String(app.id)),
    owner: userPayload(state.baseUrl, 'octo-org', 'Organization'),
    description: 'Fixes findings in pull requests.',
    external_url: state.baseUrl,
    html_url: `${state.baseUrl}/apps/${appSlug}`,
    created_at: createdAt,
    updated_at: createdAt,
    permissions: { checks: 'write', contents: 'write', metadata: 'read', pull_requests: 'write' },
    events: ['pull_request', 'check_run'],
    installations_count: state.installations.size,
  });
}

function getUser(context: Context): FakeResponse {
  const login = param(context, 'username');
  if (login.toLowerCase() !== appBotLogin) {
    throw new FakeGitHubError(404, 'Not Found', 'https://docs.github.com/rest/users/users#get-a-user');
  }
  const createdAt = '2024-01-01T00:00:00Z';
  return json(200, {
    ...userPayload(context.state.baseUrl, appBotLogin),
    type: 'Bot',
    name: null,
    company: null,
    blog: '',
    location: null,
    email: null,
    hireable: null,
    bio: null,
    twitter_username: null,
    public_repos: 0,
    public_gists: 0,
    followers: 0,
    following: 0,
    created_at: createdAt,
    updated_at: createdAt,
  });
}

export const appRoutes: Route<FakeState>[] = [
  { method: 'GET', pattern: '/app', auth: 'app', handle: getApp },
  { method: 'GET', pattern: '/users/:username', auth: 'installation', handle: getUser },
];
