import { randomBytes } from 'node:crypto';
import type { FakeGitHub } from './github.ts';

/**
 * GitHub's OAuth web flow on the fake GitHub server: `/login/oauth/authorize` redirects back at
 * once with a code (no consent screen), `/login/oauth/access_token` trades the code for a user
 * token, and `/user` returns the account of that token. Errors use GitHub's shapes: the token
 * endpoint returns status 200 with an `error` field.
 */

export interface FakeOAuthUser {
  id: number;
  login: string;
  name?: string | null;
}

export interface FakeOAuth {
  clientId: string;
  clientSecret: string;
  /** Sets the account that later authorize requests sign in as. */
  signInAs(user: FakeOAuthUser): void;
  /** Makes the next authorize request redirect back with `error=access_denied`. */
  denyNext(): void;
  /** User access tokens issued so far. */
  readonly issuedTokens: string[];
}

interface IssuedCode {
  user: FakeOAuthUser;
  clientId: string;
  redirectUri: string;
  expiresAt: number;
}

const codeLifetimeMs = 10 * 60_000;

function oauthError(error: string, description: string) {
  return {
    status: 200,
    body: { error, error_description: description, error_uri: 'https://docs.github.com/apps' },
  };
}

export function addFakeOAuth(
  github: FakeGitHub,
  options: { clientId: string; clientSecret: string },
): FakeOAuth {
  let current: FakeOAuthUser | undefined;
  let denyNext = false;
  const codes = new Map<string, IssuedCode>();
  const tokens = new Map<string, FakeOAuthUser>();

  github.addRoute({
    method: 'GET',
    pattern: '/login/oauth/authorize',
    auth: 'none',
    handle({ url }) {
      const clientId = url.searchParams.get('client_id');
      const redirectUri = url.searchParams.get('redirect_uri');
      const state = url.searchParams.get('state') ?? '';
      if (clientId !== options.clientId || !redirectUri) {
        return { status: 404, body: 'Not Found' };
      }
      const back = new URL(redirectUri);
      if (denyNext || !current) {
        denyNext = false;
        back.searchParams.set('error', 'access_denied');
        back.searchParams.set('state', state);
        return { status: 302, headers: { location: back.toString() } };
      }
      const code = randomBytes(10).toString('hex');
      codes.set(code, { user: current, clientId, redirectUri, expiresAt: Date.now() + codeLifetimeMs });
      back.searchParams.set('code', code);
      back.searchParams.set('state', state);
      return { status: 302, headers: { location: back.toString() } };
    },
  });

  github.addRoute({
    method: 'POST',
    pattern: '/login/oauth/access_token',
    auth: 'none',
    handle({ request }) {
      const fields =
        typeof request.body === 'string'
          ? Object.fromEntries(new URLSearchParams(request.body))
          : ((request.body ?? {}) as Record<string, string>);
      if (fields.client_id !== options.clientId || fields.client_secret !== options.clientSecret) {
        return oauthError('incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.');
      }
      const issued = codes.get(fields.code ?? '');
      codes.delete(fields.code ?? '');
      if (!issued || issued.expiresAt < Date.now() || issued.clientId !== fields.client_id) {
        return oauthError('bad_verification_code', 'The code passed is incorrect or expired.');
      }
      if (fields.redirect_uri !== undefined && fields.redirect_uri !== issued.redirectUri) {
        return oauthError('redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.');
      }
      const token = `ghu_${randomBytes(18).toString('base64url')}`;
      tokens.set(token, issued.user);
      return { status: 200, body: { access_token: token, token_type: 'bearer', scope: '' } };
    },
  });

  github.addRoute({
    method: 'GET',
    pattern: '/user',
    auth: 'none',
    handle({ request }) {
      const token = /^(?:bearer|token)\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
      const user = token ? tokens.get(token) : undefined;
      if (!user) {
        return { status: 401, body: { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' } };
      }
      return {
        status: 200,
        body: { login: user.login, id: user.id, name: user.name ?? null, type: 'User', site_admin: false },
      };
    },
  });

  return {
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    signInAs(user) {
      current = user;
    },
    denyNext() {
      denyNext = true;
    },
    get issuedTokens() {
      return [...tokens.keys()];
    },
  };
}
