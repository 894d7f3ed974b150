import { joinWithAnd, joinWithOr } from '../text/plural.ts';

/**
 * Returns why `value` is not a PostgreSQL URL that the database clients can use, as the clause
 * after "Invalid DATABASE_URL:", or undefined when it is one. postgres.js 3.4 and
 * pg-connection-string 2.14 (pg-boss's client) parse it with `new URL()`, which throws for a
 * value that `URL.canParse()` rejects. Invalid percent-encoding is rejected too, because
 * postgres.js then throws "URI malformed" at connect time.
 */
export function describeDatabaseUrlProblem(value: string): string | undefined {
  if (!/^postgres(ql)?:\/\//.test(value)) return 'must start with postgres:// or postgresql://';
  const port = portOf(value);
  if (port !== undefined && (port < 1 || port > 65_535)) {
    return `has port ${port}; set the port of the PostgreSQL server, from 1 to 65535`;
  }
  if (!URL.canParse(value)) {
    return (
      'must be a URL such as postgres://USER:PASSWORD@HOST:5432/DATABASE, with "@", "/", ":", ' +
      '"?", "#" and spaces in the user name and password percent-encoded ("@" as %40)'
    );
  }
  const malformed = partsWithInvalidPercentEncoding(new URL(value));
  if (malformed.length > 0) {
    return (
      `has invalid percent-encoding in the ${joinWithAnd(malformed)}; percent-encode special ` +
      'characters as UTF-8, such as "%" as %25 and "@" as %40'
    );
  }
  const unknownSslModes = new URL(value).searchParams
    .getAll('sslmode')
    .filter((mode) => !(sslModes as readonly string[]).includes(mode));
  if (unknownSslModes.length > 0) {
    return (
      `has sslmode ${JSON.stringify(unknownSslModes[0])}, which is not an sslmode value; set ` +
      `sslmode to ${joinWithOr([...sslModes])}`
    );
  }
  return undefined;
}

/**
 * The sslmode values of libpq, which both database clients read. Neither rejects another
 * value: postgres.js 3.4 then connects with TLS and verifies the certificate as for
 * verify-full, and so does pg-connection-string 2.14, so a typo would change the connection
 * without a word.
 */
export const sslModes = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

/**
 * Names the parts of `url` that `decodeURIComponent()` rejects: a "%" not followed by two hex
 * digits, or bytes that are not UTF-8. postgres.js 3.4 decodes the user name, password and host
 * this way and throws for them. pg-connection-string 2.14 keeps a "%" without two hex digits as
 * it is, but throws for bytes that are not UTF-8 in any of the four parts.
 */
function partsWithInvalidPercentEncoding(url: URL): string[] {
  const parts: [string, string][] = [
    ['user name', url.username],
    ['password', url.password],
    ['host', url.hostname],
    ['database name', url.pathname.slice(1)],
  ];
  return parts.filter(([, text]) => !isValidPercentEncoding(text)).map(([name]) => name);
}

function isValidPercentEncoding(text: string): boolean {
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads the port from the text of `url`, which may not parse: the digits after the last ":" of
 * the host part, which follows the last "@" before the path, query or fragment.
 */
function portOf(url: string): number | undefined {
  const authority = url.slice(url.indexOf('://') + 3).split(/[/?#]/)[0]!;
  const hostAndPort = authority.slice(authority.lastIndexOf('@') + 1);
  const match = /:(\d+)$/.exec(hostAndPort);
  return match ? Number(match[1]) : undefined;
}
