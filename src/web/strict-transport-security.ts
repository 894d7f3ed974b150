import type { IncomingMessage } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import type { Config } from '../config/env.ts';

/** The value that hono's secureHeaders sends by default: 180 days, subdomains included. */
export const strictTransportSecurityValue = 'max-age=15552000; includeSubDomains';

/**
 * Returns whether the request reached Fixwright over HTTPS: on a TLS socket, or with
 * TRUST_PROXY=true when the last X-Forwarded-Proto entry, which the nearest proxy set, is
 * https. The request URL is not used, because a client can send an absolute https:// request
 * target over plain HTTP and @hono/node-server 2.1 then takes the URL from it.
 */
export function arrivedOverHttps(c: Context, config: Config): boolean {
  // In-process requests (app.request in tests) have no Node.js request behind them.
  const socket = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket;
  if (socket && 'encrypted' in socket && socket.encrypted === true) return true;
  if (!config.TRUST_PROXY) return false;
  const forwarded = c.req.header('x-forwarded-proto')?.split(',').at(-1)?.trim().toLowerCase();
  return forwarded === 'https';
}

/**
 * Adds Strict-Transport-Security to responses of requests that arrived over HTTPS. RFC 6797
 * forbids the header on responses over plain HTTP (section 7.2), and browsers ignore it there
 * (section 8.1).
 */
export function strictTransportSecurity(config: Config): MiddlewareHandler {
  return async (c, next) => {
    await next();
    if (arrivedOverHttps(c, config)) c.header('Strict-Transport-Security', strictTransportSecurityValue);
  };
}
