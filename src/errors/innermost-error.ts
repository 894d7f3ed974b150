/**
 * Describes the innermost cause of `error`: its message, the messages of an AggregateError's
 * errors, or its code. Node's fetch (undici) raises `TypeError: fetch failed`, and the socket's
 * own error, such as `connect ECONNREFUSED 127.0.0.1:9`, is its cause.
 */
export function describeInnermostError(error: unknown): string {
  let innermost = error;
  while (innermost instanceof Error && innermost.cause instanceof Error) innermost = innermost.cause;
  if (!(innermost instanceof Error)) return String(innermost);
  if (innermost.message !== '') return innermost.message;
  // Connecting to a name with several addresses raises an AggregateError without a message, whose
  // errors are those of each address.
  if (innermost instanceof AggregateError) {
    return innermost.errors.map((each) => (each instanceof Error ? each.message : String(each))).join('; ');
  }
  const code = (innermost as { code?: unknown }).code;
  return typeof code === 'string' ? code : innermost.name;
}
