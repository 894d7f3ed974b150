const redacted = '[redacted]';

/**
 * Patterns of credentials that may appear in error messages, stack traces, URLs, response
 * bodies and header dumps, each with its replacement. A parameter name, header name or
 * authorization scheme stays, so a reader sees what was removed.
 */
const credentialPatterns: { pattern: RegExp; replace: (...groups: string[]) => string }[] = [
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
  { pattern: /\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g, replace: () => redacted },
  {
    pattern: /\b(token)\s+[A-Za-z0-9._~+/=-]{20,}/gi,
    replace: (_match, scheme) => `${scheme} ${redacted}`,
  },
  // Slack tokens, such as a bot token `xoxb-…`.
  { pattern: /\bxox[abeprs]-[A-Za-z0-9-]{10,}/g, replace: () => redacted },
  // The password of a connection URL such as DATABASE_URL; the scheme, user and host stay. As
  // in excerpts (src/analysis/secrets.ts), the password runs to the last `@` that a host
  // character follows, before whitespace, the next `://` or a `/@` after an `@`, so it may
  // contain an unencoded `@`, `:`, `/`, `?` or `#`. Unlike excerpts it may contain quotes, because a log
  // line that is redacted too far loses only context. Digits alone before a `/`, `?` or `#` are a port, as
  // in `http://host:8080/a@b`.
  {
    pattern: new RegExp(
      String.raw`\b([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*:)(?!\d*[/?#])` +
        String.raw`(?:(?:(?!:\/\/|\/@)\S)+|(?:(?!:\/\/)[^\s@])*\/@(?:(?!:\/\/|\/@)\S)*)` +
        String.raw`@(?=[^\s@/?#])`,
      'gi',
    ),
    replace: (_match, prefix) => `${prefix}${redacted}@`,
  },
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
  for (const { pattern, replace } of credentialPatterns) {
    result = result.replace(pattern, (...args: unknown[]) => {
      // String.replace passes the match and the groups, then the offset and the input.
      const groups = args.slice(0, -2).map((value) => (typeof value === 'string' ? value : ''));
      return replace(...groups);
    });
  }
  return result;
}
