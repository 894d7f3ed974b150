import type { MiddlewareHandler } from 'hono';
import { quoteValue } from '../text/quote-value.ts';
import { AppError } from './errors.ts';

/**
 * Rejects with 400 a query string whose decoded names or values contain NUL (`%00`). No route
 * expects one, and PostgreSQL fails on NUL in a text parameter.
 */
export const rejectNulInQuery: MiddlewareHandler = async (c, next) => {
  if (c.req.url.includes('%00')) {
    for (const [name, values] of Object.entries(c.req.queries())) {
      if (name.includes('\0') || values.some((value) => value.includes('\0'))) {
        throw new AppError(
          'bad_request',
          `Invalid query parameter ${quoteValue(name, 80)}: it contains a NUL character ` +
            '(%00); remove it.',
        );
      }
    }
  }
  await next();
};
