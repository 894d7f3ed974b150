/**
 * Returns `next` when it is a path on this site, else "/". Rejects absolute and
 * scheme-relative URLs ("//host", "/\\host"), so the redirect after sign-in stays on this site.
 */
export function safeReturnPath(next: string | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  if (/[\u0000-\u001f\u007f]/.test(next)) return '/';
  if (next.startsWith('/sign-in') || next.startsWith('/auth/')) return '/';
  return next.slice(0, 2000);
}
