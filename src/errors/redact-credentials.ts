
const redacted = '[redacted]';

/** A pattern and its replacement, or a function that replaces what one pattern would match. */
type CredentialPattern =
  | { pattern: RegExp; replace: (...groups: string[]) => string }
  | { redact: (text: string) => string };

/**
 * Patterns of credentials that may appear in error messages, stack traces, URLs, response
 * bodies and header dumps, each with its replacement. A parameter name, header name or
 * authorization scheme stays, so a reader sees what was removed.
 */
const credentialPatterns: CredentialPattern[] = [
  // Query and form parameters, such as Gemini's `?key=…` or `access_token=…`.
  {
    pattern:
      /\b(key|api[_-]?key|access[_-]?token|refresh[_-]?token|id[_-]?token|token|client[_-]?secret|secret|auth|password|passwd|pwd)=[^&\s"'#<>]+/gi,
    replace: (_match, name) => `${name}=${redacted}`,
  },
  // An Authorization header or field, with or without a scheme such as `token` or `Bearer`.
  {
    pattern: /\b(authorization["']?\s*[:=]\s*["']?)(?:(bearer|token|basic)\s+)?[^\s"',;}]+/gi,
    replace: (_match, name, scheme) => `${name}${scheme ? `${scheme} ` : ''}${redacted}`,
  },
  { pattern: /\bBearer\s+[^\s"',;}]+/gi, replace: () => `Bearer ${redacted}` },
  {
    pattern: /\b(x-goog-api-key["']?\s*[:=]\s*["']?)[^\s"',;}]+/gi,
    replace: (_match, name) => `${name}${redacted}`,
  },
  // GitHub's installation, personal, OAuth, user-to-server and refresh tokens (ghs_, ghp_,
  // gho_, ghu_, ghr_), fine-grained personal access tokens and JWTs.
  { pattern: /\bgh[pousr]_[A-Za-z0-9_]+/g, replace: () => redacted },
  { pattern: /\bgithub_pat_[A-Za-z0-9_]+/g, replace: () => redacted },
  // The pattern takes the whole run after `eyJ` even when no JWT follows it, so a run such as
  // `eyJ-eyJ-…` is read once and not again from each later `eyJ` in it.
  {
    pattern: /\beyJ[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)?/g,
    replace: (match, payloadAndSignature) => (payloadAndSignature ? redacted : match),
  },
  {
    pattern: /\b(token)\s+[A-Za-z0-9._~+/=-]{20,}/gi,
    replace: (_match, scheme) => `${scheme} ${redacted}`,
  },
  // Slack tokens, such as a bot token `xoxb-…`.
  { pattern: /\bxox[abeprs]-[A-Za-z0-9-]{10,}/g, replace: () => redacted },
  { redact: redactUrlPasswords },
  // Groq keys start with `gsk_`, Google API keys with `AIza`.
  { pattern: /\bgsk_[A-Za-z0-9]{8,}/g, replace: () => redacted },
  { pattern: /\bAIza[0-9A-Za-z_-]{20,}/g, replace: () => redacted },
];

/**
 * Replaces every credential that `credentialPatterns` matches in `text` with `[redacted]`:
 * key, token, secret and password query parameters, Authorization and `x-goog-api-key`
 * values, Bearer tokens, GitHub tokens and JWTs, Slack tokens, connection URL passwords, Groq keys and Google API keys.
 */
export function redactCredentials(text: string): string {
  let result = text;
  for (const credentialPattern of credentialPatterns) {
    if ('redact' in credentialPattern) {
      result = credentialPattern.redact(result);
      continue;
    }
    const { pattern, replace } = credentialPattern;
    result = result.replace(pattern, (...args: unknown[]) => {
      // String.replace passes the match and the groups, then the offset and the input.
      const groups = args.slice(0, -2).map((value) => (typeof value === 'string' ? value : ''));
      return replace(...groups);
    });
  }
  return result;
}

/**
 * The user information and password of a connection URL such as DATABASE_URL, from the "://"
 * after the scheme to the "@" before the host. Group 1 is the "://", the user and its ":". As
 * in excerpts (src/analysis/secrets.ts), the password runs to the last `@` that a host
 * character follows, before whitespace, the next `://` or a `/@` after an `@`, so it may
 * contain an unencoded `@`, `:`, `/`, `?` or `#`. Unlike excerpts it may contain quotes,
 * because a log line that is redacted too far loses only context. Digits alone before a `/`,
 * `?` or `#` are a port, as in `http://host:8080/a@b`.
 */
const urlUserinfo = new RegExp(
  String.raw`(:\/\/[^\s:/?#@]*:)(?!\d*[/?#])` +
    String.raw`(?:(?:(?!:\/\/|\/@)\S)+|(?:(?!:\/\/)[^\s@])*\/@(?:(?!:\/\/|\/@)\S)*)` +
    String.raw`@(?=[^\s@/?#])`,
  'y',
);

/**
 * Replaces the password of every connection URL in `text`, keeping the scheme, user and host.
 * Any "://" starts one, whatever comes before it, so a URL after a word such as `user_db` or
 * without a scheme is redacted too. Each "://" is found with indexOf, because a pattern that
 * starts at the scheme is tried at every letter of a long run of letters, which takes quadratic
 * time. The password ends before the next "://", so each part of the text is read a few times.
 */
function redactUrlPasswords(text: string): string {
  const parts: string[] = [];
  let copied = 0;
  for (let colon = text.indexOf('://'); colon !== -1; colon = text.indexOf('://', colon + 1)) {
    if (colon < copied) continue;
    urlUserinfo.lastIndex = colon;
    const match = urlUserinfo.exec(text);
    if (!match) continue;
    parts.push(text.slice(copied, colon), `${match[1]}${redacted}@`);
    copied = urlUserinfo.lastIndex;
  }
  parts.push(text.slice(copied));
  return parts.join('');
}
