import { toSafeError, type SafeError } from '../errors/safe-error.ts';

/**
 * The error that a failed job hands to pg-boss, which stores it as the job's `output` in
 * `pgboss.job`. pg-boss 10.4 stores a thrown error through serialize-error 8, which copies
 * every enumerable field. An Octokit RequestError would then store its request headers and
 * response body, and a DrizzleQueryError its query parameters. This error has only the fields
 * that a log line's `err` has (see toSafeError): `message`, `type`, `stack`, and where known
 * `code`, `status`, `request` (method and path of the failed GitHub request) and `cause`.
 */
export class JobError extends Error {
  override name = 'JobError';
  /** The name of the error that failed the job, such as `HttpError`. */
  declare readonly type: string;
  declare readonly code?: string;
  declare readonly status?: number;
  /** Method and decoded URL path of the failed GitHub request, without its query string. */
  declare readonly request?: string;

  constructor(safe: SafeError) {
    super(safe.message);
    const { message: _message, stack, ...fields } = safe;
    // Set as own enumerable fields, so that serialize-error stores them, and only those present.
    Object.assign(this, fields);
    if (stack !== undefined) this.stack = stack;
  }
}

/** Converts what a job handler threw into the JobError that pg-boss stores. A JobError is kept. */
export function toJobError(error: unknown): JobError {
  return error instanceof JobError ? error : new JobError(toSafeError(error));
}
