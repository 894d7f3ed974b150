import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { CookieOptions } from 'hono/utils/cookie';
import type { Config } from '../../config/env.ts';
import { oauthStateTtlMs } from './session-store.ts';

/** True when PUBLIC_URL is https, so cookies get the Secure flag and the __Host- prefix. */
export function usesSecureCookies(config: Config): boolean {
  return config.PUBLIC_URL?.startsWith('https://') ?? false;
}

// Browsers accept a __Host- cookie only with Secure, Path=/ and no Domain, which pins it to
// this host; plain http (local use) gets the bare names.
function cookieName(config: Config, base: string): string {
  return usesSecureCookies(config) ? `__Host-${base}` : base;
}

function options(config: Config, maxAgeSeconds: number): CookieOptions {
  return {
    path: '/',
    httpOnly: true,
    sameSite: 'Lax',
    secure: usesSecureCookies(config),
    maxAge: maxAgeSeconds,
  };
}

export function readSessionCookie(c: Context, config: Config): string | undefined {
  return getCookie(c, cookieName(config, 'fixwright_session'));
}

export function writeSessionCookie(c: Context, config: Config, token: string, expiresAt: Date) {
  const maxAge = Math.max(Math.floor((expiresAt.getTime() - Date.now()) / 1000), 0);
  setCookie(c, cookieName(config, 'fixwright_session'), token, options(config, maxAge));
}

export function clearSessionCookie(c: Context, config: Config) {
  deleteCookie(c, cookieName(config, 'fixwright_session'), options(config, 0));
}

/** The OAuth state also goes into a cookie, so a callback only completes in the browser that started it. */
export function readStateCookie(c: Context, config: Config): string | undefined {
  return getCookie(c, cookieName(config, 'fixwright_oauth_state'));
}

export function writeStateCookie(c: Context, config: Config, state: string) {
  setCookie(
    c,
    cookieName(config, 'fixwright_oauth_state'),
    state,
    options(config, oauthStateTtlMs / 1000),
  );
}

export function clearStateCookie(c: Context, config: Config) {
  deleteCookie(c, cookieName(config, 'fixwright_oauth_state'), options(config, 0));
}
