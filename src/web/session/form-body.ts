import type { Context } from 'hono';
import { AppError } from '../errors.ts';

/**
 * Parses a form body before any step reads it, so a body that is not valid form data, such as
 * a multipart body without its boundary, gets 400 and not the parser's TypeError as a 500.
 * Hono caches the parsed form, so later parseBody calls reuse it. Hono reads no body of
 * another content type here.
 */
export async function requireValidFormBody(c: Context): Promise<void> {
  try {
    await c.req.parseBody();
  } catch (error) {
    // A body over the size limit fails with the limit's own error, which keeps its 413.
    if (!(error instanceof TypeError)) throw error;
    throw new AppError(
      'bad_request',
      'Invalid form body: it does not parse as the form data its Content-Type names; reload ' +
        'the page and submit the form again.',
    );
  }
}
