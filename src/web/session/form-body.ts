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

/** A form as `c.req.parseBody({ all: true })` returns it: a repeated field is an array. */
export type FormFields = Record<string, unknown>;

/**
 * A form field sent as a file upload or more than once, which gets 400. Pages that show form
 * errors next to the form catch it and show its message there.
 */
export class FormFieldError extends AppError {
  override name = 'FormFieldError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super('bad_request', message, { fields: [field] });
  }
}

/**
 * Returns the values of the form field `name` in the order sent, none when the form lacks it.
 * A file part among them raises FormFieldError, because the dashboard's forms send text only,
 * and dropping the part would read a field that was sent as absent. `retry` is the next step
 * that the message gives, such as "reload the page and submit the form again."
 */
export function readTextValues(form: FormFields, name: string, retry: string): string[] {
  const field = form[name];
  if (field === undefined) return [];
  const values: unknown[] = Array.isArray(field) ? field : [field];
  const texts = values.filter((value): value is string => typeof value === 'string');
  if (texts.length < values.length) {
    throw new FormFieldError(
      name,
      `Invalid field "${name}": the form sent it as a file upload, but expected a text field; ${retry}`,
    );
  }
  return texts;
}

/**
 * Returns the text of the form field `name`, or undefined when the form lacks it. A file part
 * or a repeated field raises FormFieldError naming the field, as in readTextValues. Every
 * dashboard form reads its single-valued fields with this, because `parseBody()` without
 * `all` keeps only the last of repeated fields and returns a file part as a File.
 */
export function readOptionalTextField(form: FormFields, name: string, retry: string): string | undefined {
  const values = readTextValues(form, name, retry);
  if (values.length > 1) {
    throw new FormFieldError(
      name,
      `Invalid field "${name}": the form sent it ${values.length} times, but expected it once; ${retry}`,
    );
  }
  return values[0];
}
