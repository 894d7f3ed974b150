/** Maximum length of a return path; a longer one is replaced by "/" instead of cut. */
const maxReturnPathLength = 2000;

/**
 * Returns `next` when it is a path on this site, else "/". Rejects absolute and
 * scheme-relative URLs ("//host", "/\\host"), so the redirect after sign-in stays on this site.
 * A path over 2,000 characters also gets "/", because a cut path leads to another page, and a
 * cut through a surrogate pair makes encoding the Location header throw.
 */
export function safeReturnPath(next: string | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  if (/[\u0000-\u001f\u007f]/.test(next)) return '/';
  if (next.startsWith('/sign-in') || next.startsWith('/auth/')) return '/';
  if (next.length > maxReturnPathLength) return '/';
  return next;
}
