import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import type { Config } from '../../config/env.ts';

/**
 * Returns the client's IP address: the socket's peer, or with TRUST_PROXY=true the last
 * X-Forwarded-For entry, which the nearest proxy appended. Returns "unknown" when neither
 * exists, as for in-process test requests.
 */
export function clientAddress(c: Context, config: Config): string {
  if (config.TRUST_PROXY) {
    const forwarded = c.req.header('x-forwarded-for')?.split(',').at(-1)?.trim();
    if (forwarded) return forwarded;
  }
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
