import { findQuotedAssignmentSteps, unquotedEnvAssignmentSteps } from './assignment-search.ts';
import { findSteps, matchAllSteps, mayMatch, steppedPattern } from './line-search.ts';
import { runSteps, sortSteps, StepMeter, type Steps } from './steps.ts';
import { findAllTokenSteps, type TokenKind } from './token-secrets.ts';

export type SecretKind =
  | 'aws-access-key-id'
  | 'hardcoded-credential'
  | 'private-key'
  | 'connection-url-password'
  | TokenKind;

/** The position of a secret value inside a line: `text.slice(start, end)` is the secret. */
export interface SecretSpan {
  kind: SecretKind;
  start: number;
  end: number;
}

const AWS_ACCESS_KEY_ID = /\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b/g;
export const AWS_ACCESS_KEY_ID_SEARCH = steppedPattern(
  AWS_ACCESS_KEY_ID,
  /(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}/,
  20,
);

// AWS documentation writes its sample keys with this suffix, as in AKIAIOSFODNN7EXAMPLE.
const AWS_SAMPLE_SUFFIX = 'EXAMPLE';

export const PRIVATE_KEY_BEGIN =
  /-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----/;

// The marker pattern has no lookaround and matches at most 43 characters, so it serves as its
// own candidate pattern.
export const PRIVATE_KEY_BEGIN_SEARCH = steppedPattern(
  PRIVATE_KEY_BEGIN,
  PRIVATE_KEY_BEGIN,
  '-----BEGIN ENCRYPTED PRIVATE KEY BLOCK-----'.length,
);

// Matched against the name after camelCase and separators become `_`, so `clientSecret`,
// `DB_PASSWORD`, `x-api-key` and `config.accessToken` all end in a listed name.
const CREDENTIAL_NAME =
  /(?:^|_)(?:api_?key|secret(?:_key|_access_key)?|token|password|passwd|pwd)$/;

const MIN_CREDENTIAL_LENGTH = 8;

const PLACEHOLDER_VALUE =
  /\$\{|\{\{|process\.env|os\.environ|<[^<>]+>|your[_-]|example|changeme|xxx|\*\*\*/i;

// Authorization header values are the one common credential that contains a space.
const AUTHORIZATION_VALUE = /^(?:Bearer|Basic|Token)\s+\S+$/i;

/**
 * Converts `clientSecret`, `APIKey` and `x-api-key` to `client_secret`, `api_key`, `x_api_key`.
 * Every pattern takes linear time, because the value can be a line of hundreds of kilobytes.
 * `([A-Z]+)([A-Z][a-z])` backtracked over each uppercase run: 80 KB took 30 s on 2 CPU cores.
 */
function toSnakeCase(name: string): string {
  return name
    .replace(/([a-z\d])([A-Z])/g, '$1_$2')
    .replace(/([A-Z])(?=[A-Z][a-z])/g, '$1_')
    .toLowerCase()
    .replace(/[^a-z\d]+/g, '_')
    .replace(/^_|_$/g, '');
}

/**
 * Tells whether a value is a placeholder, a template or prose rather than a real credential.
 * Values with spaces read as labels or messages, as in `"password": "Enter your password"`. A
 * value that repeats the name or its end, as in `dbPassword: "Password"`, is a label too.
 */
function isPlaceholderValue(value: string, name: string): boolean {
  if (isOneRepeatedCodeUnit(value) || PLACEHOLDER_VALUE.test(value)) {
    return true;
  }
  if (/\s/.test(value) && !AUTHORIZATION_VALUE.test(value)) {
    return true;
  }
  const snakeName = toSnakeCase(name);
  // Every ASCII letter and digit of the value stays in its snake case, so a value with more of
  // them than the name has characters cannot repeat the name. This skips the conversion of a
  // long value, which took seconds for 5 MB.
  if (countAsciiAlphanumerics(value, snakeName.length + 1) > snakeName.length) {
    return false;
  }
  const snakeValue = toSnakeCase(value);
  return snakeValue === snakeName || snakeName.endsWith(`_${snakeValue}`);
}

/**
 * Tells whether `text` is one UTF-16 code unit repeated, such as `********`. A loop replaces
 * `/^(.)\1*$/s`, which threw `RangeError: Maximum call stack size exceeded` on about 5.6 million
 * characters in Node 20.
 */
function isOneRepeatedCodeUnit(text: string): boolean {
  if (text === '') return false;
  const first = text.charCodeAt(0);
  for (let index = 1; index < text.length; index += 1) {
    if (text.charCodeAt(index) !== first) return false;
  }
  return true;
}

/** Counts the ASCII letters and digits in `text`, stopping at `limit`. */
function countAsciiAlphanumerics(text: string, limit: number): number {
  let count = 0;
  for (let index = 0; index < text.length && count < limit; index += 1) {
    const code = text.charCodeAt(index);
    const isDigit = code >= 48 && code <= 57;
    const isLetter = (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
    if (isDigit || isLetter) {
      count += 1;
    }
  }
  return count;
}

function isCredentialName(name: string): boolean {
  return CREDENTIAL_NAME.test(toSnakeCase(name));
}

function isCredentialValue(value: string, name: string): boolean {
  return value.length >= MIN_CREDENTIAL_LENGTH && !isPlaceholderValue(value, name);
}

/** Tells whether the path names a dotenv file: `.env`, `.env.local`, `prod.env` or `.envrc`. */
export function isEnvFile(path: string): boolean {
  const basename = path.slice(path.lastIndexOf('/') + 1);
  return /^\.env(?:\..+)?$/.test(basename) || basename.endsWith('.env') || basename === '.envrc';
}

/** Finds AWS access key IDs, skipping the sample keys from the AWS documentation. */
export function findAwsAccessKeyIds(text: string): SecretSpan[] {
  return runSteps(findAwsAccessKeyIdSteps(text));
}

/** Finds AWS access key IDs as `findAwsAccessKeyIds` does, in steps. */
export function* findAwsAccessKeyIdSteps(text: string): Steps<SecretSpan[]> {
  const spans: SecretSpan[] = [];
  for (const match of yield* matchAllSteps(text, AWS_ACCESS_KEY_ID_SEARCH)) {
    if (!match[0].endsWith(AWS_SAMPLE_SUFFIX)) {
      const end = match.index + match[0].length;
      spans.push({ kind: 'aws-access-key-id', start: match.index, end });
    }
  }
  return spans;
}

/**
 * Finds credential values that are not placeholders: quoted values assigned to a credential name,
 * in dotenv files also unquoted values, bearer tokens and credentials in a URL query.
 */
export function findHardcodedCredentials(text: string, path: string): SecretSpan[] {
  return runSteps(findHardcodedCredentialSteps(text, path));
}

/**
 * Finds credential values as `findHardcodedCredentials` does, in steps.
 *
 * NOTE: one try of an assignment's head reads its name and runs of spaces in one piece, and a
 * value is checked for placeholders in one piece. For 5 MB each took tens of milliseconds.
 */
export function findHardcodedCredentialSteps(text: string, path: string): Steps<SecretSpan[]> {
  return findCredentialSteps(text, path, MIN_CREDENTIAL_LENGTH);
}

/**
 * Finds credential values as `findHardcodedCredentialSteps` does, but takes query parameter
 * values from `minQueryValueLength` characters on.
 */
function* findCredentialSteps(
  text: string,
  path: string,
  minQueryValueLength: number,
): Steps<SecretSpan[]> {
  const spans: SecretSpan[] = [];
  const meter = new StepMeter();
  for (const { name, value, end: matchEnd } of yield* findQuotedAssignmentSteps(text, meter)) {
    if (isCredentialName(name) && isCredentialValue(value, name)) {
      // The value ends one character before the closing quote, which ends the match.
      const end = matchEnd - 1;
      spans.push({ kind: 'hardcoded-credential', start: end - value.length, end });
    }
    if (meter.count(value.length)) {
      yield;
    }
  }
  const assigned = spans.length;

  const unquoted = isEnvFile(path) ? yield* unquotedEnvAssignmentSteps(text, meter) : undefined;
  if (unquoted) {
    const { name, value, start } = unquoted;
    if (isCredentialName(name) && isCredentialValue(value, name)) {
      spans.push({ kind: 'hardcoded-credential', start, end: start + value.length });
    }
  }

  // The quoted values come in order of their start, so one walk finds the quoted credential
  // that contains a bearer token, as in `token: "Bearer …"`. That whole value is the credential.
  const bearerTokens = mayMatch(text, BEARER_TOKEN_SEARCH)
    ? yield* findBearerTokenSteps(text, meter)
    : [];
  let holder = 0;
  for (const token of bearerTokens) {
    while (holder < assigned && spans[holder]!.end < token.end) {
      holder += 1;
    }
    const inside = holder < assigned && spans[holder]!.start <= token.start;
    if (!inside) {
      spans.push(token);
    }
  }

  if (mayMatch(text, QUERY_CREDENTIAL_SEARCH)) {
    for (const span of yield* findQueryCredentialSteps(text, meter)) {
      if (span.end - span.start >= minQueryValueLength) {
        spans.push(span);
      }
    }
  }
  return spans;
}

/**
 * A bearer token in an authorization value: `Bearer` and the token, either in quotes
 * (`"Bearer …"`) or after `Authorization:` or `Authorization=` (`-H "Authorization: Bearer …"`,
 * an HTTP request file). The token is RFC 6750's b64token. In quotes it must end at the closing
 * quote, a `\`, a space or a tab, so `` `Bearer abc${token}` `` and `"Bearer %s"` are no token.
 * findBearerTokenSteps separates a token that words follow from prose such as `"Bearer
 * token123 missing"`. After `Authorization` it ends at any character outside b64token, as in
 * `{Authorization: Bearer …}` or `Authorization:Bearer …|jq`, except `$`, `%` and `{`, which
 * start a template. Group 1 is the quoted token, group 2 the one after `Authorization`.
 */
export const BEARER_TOKEN_SEARCH = steppedPattern(
  // Each lookbehind follows `bearer`, because at the start of the pattern it slowed the search
  // of every line (see token-secrets.ts). They come before the spaces, so a failed try reads
  // each run of spaces at most twice.
  new RegExp(
    String.raw`bearer(?:(?<=["'\x60]bearer)[ \t]+([\w.~+/-]+=*)(?=["'\x60\\ \t])|` +
      String.raw`(?<=authorization["']?[ \t]*[:=][ \t]*["']?bearer)[ \t]+([\w.~+/-]+=*)` +
      String.raw`(?![\w.~+/=$%{-]))`,
    'i',
  ),
  /bearer/i,
  'bearer'.length,
);

/** A word and a number, such as `token123` or `user_42`. */
const WORD_AND_NUMBER = /^[A-Za-z]+[_-]?\d+$/;

/**
 * Finds bearer tokens that are not placeholders, in steps. A quoted token that a space or a tab
 * follows must contain a letter and must not be a word and a number, because prose such as
 * `"Bearer token123 missing"` names a token there.
 */
function* findBearerTokenSteps(text: string, meter: StepMeter): Steps<SecretSpan[]> {
  const spans: SecretSpan[] = [];
  for (const match of yield* matchAllSteps(text, BEARER_TOKEN_SEARCH, meter)) {
    const token = match[1] ?? match[2]!;
    const end = match.index + match[0].length;
    const wordsFollow = match[1] !== undefined && /[ \t]/.test(text.charAt(end));
    const prose = wordsFollow && (!/[A-Za-z]/.test(token) || WORD_AND_NUMBER.test(token));
    // A value without a digit reads as a name, as in `"Bearer ACCESS_TOKEN"` or `"Bearer
    // accessToken"`, or as prose such as `"Bearer authentication failed"`.
    if (!prose && /\d/.test(token) && isCredentialValue(token, 'token')) {
      spans.push({ kind: 'hardcoded-credential', start: end - token.length, end });
    }
  }
  return spans;
}

/**
 * A credential parameter of a URL query, a form body or a `;`-separated connection string:
 * `?password=…`, `&token=…`, `;Pwd=…`, `?key=…` of Google APIs. The name is one of a fixed list,
 * in any case and with `_` or `-`, because names such as `page_token` or `csrf_token` hold no
 * secret. The value ends at `&`, `#`, `;`, whitespace, a quote, `<`, `>` or `\`.
 */
const QUERY_CREDENTIAL_HEAD =
  String.raw`[?&;](password|passwd|pwd|token|(?:access|refresh|id)[_-]token|api[_-]?key|` +
  String.raw`secret|client[_-]secret|auth|key)=`;
export const QUERY_CREDENTIAL_SEARCH = steppedPattern(
  new RegExp(String.raw`${QUERY_CREDENTIAL_HEAD}([^\s&#;"'\x60<>\\]+)`, 'i'),
  new RegExp(QUERY_CREDENTIAL_HEAD, 'i'),
  '&refresh_token='.length,
);

/**
 * Finds the values of credential query parameters that are not placeholders, of any length, in
 * steps. Placeholders are those of a URL password, and a value that repeats the parameter name.
 */
function* findQueryCredentialSteps(text: string, meter: StepMeter): Steps<SecretSpan[]> {
  const spans: SecretSpan[] = [];
  for (const match of yield* matchAllSteps(text, QUERY_CREDENTIAL_SEARCH, meter)) {
    const name = match[1]!;
    const value = match[2]!;
    if (!isPlaceholderValue(value, name) && !URL_PASSWORD_PLACEHOLDER.test(value)) {
      const end = match.index + match[0].length;
      spans.push({ kind: 'hardcoded-credential', start: end - value.length, end });
    }
  }
  return spans;
}

/**
 * The user information of a URL, such as `://app:PASSWORD@` in `postgres://app:PASSWORD@db/app`:
 * the user and the password, from the `:` after the scheme to the `@` before the host. Group 1
 * is the user and group 2 the password.
 *
 * The password runs to the last `@` that a host character follows, before whitespace, a quote,
 * the next `://` or a `/@`, because passwords often contain an unencoded `@`, `:`, `/`, `?` or
 * `#`, as in `postgres://u:p@ss/w:rd@db/app`. A `/@` starts a path segment such as the npm scope
 * in `https://u:pw@registry/@scope/pkg`. A `/@` with no `@` before it is part of the password,
 * which then runs to the last such `@` before the next `/@`, as in `u:ab/@cd@host`. It must not
 * start with digits alone before a `/`, `?` or `#`, because `http://host:8080/users/a@b.org` is
 * a port and a path.
 * NOTE: a path or query with an `@` after a URL with a password, as in
 * `https://u:pw@host/users/a@b.org`, is masked up to that `@`, host included.
 */
export const CONNECTION_URL_USERINFO_SEARCH = steppedPattern(
  // The lookbehind for the scheme's last character follows `://`, because a lookbehind at the
  // start of a pattern slowed the search of every line (see token-secrets.ts). The password
  // stops at the `://` of the next URL, so a line of many URLs is read about once.
  new RegExp(
    String.raw`:\/\/(?<=[A-Za-z0-9]:\/\/)([^\s:/?#@"'\x60]*):(?!\d*[/?#])` +
      String.raw`((?:(?!:\/\/|\/@)[^\s"'\x60])+|` +
      String.raw`(?:(?!:\/\/)[^\s"'\x60@])*\/@(?:(?!:\/\/|\/@)[^\s"'\x60])*)` +
      String.raw`@(?=[^\s@/?#"'\x60])`,
  ),
  /:\/\//,
  '://'.length,
);

// Samples and docs write a variable reference, a format slot or a word such as `PASSWORD` or
// `db_password` in place of the password.
const URL_PASSWORD_PLACEHOLDER =
  /^(?:\$\w+|\$\(\w+\)|%[-+#0-9.]*[A-Za-z]|%\(\w+\)s|\{\w*\}|[A-Za-z_]*pass(?:word|wd)?)$/i;

/**
 * Tells whether the password of a URL is a secret rather than a placeholder. It takes the
 * checks of a hard-coded password, with `minLength` in place of its minimum length, and it skips
 * a password equal to the user name, the default of local containers such as
 * `postgres://postgres:postgres@localhost`.
 */
function isUrlPassword(password: string, user: string, minLength: number): boolean {
  return (
    password !== user &&
    !URL_PASSWORD_PLACEHOLDER.test(password) &&
    password.length >= minLength &&
    !isPlaceholderValue(password, 'password')
  );
}

/**
 * Finds the passwords in URLs with user information, for any scheme, such as `postgres`,
 * `mongodb+srv`, `redis` or `amqp`, skipping placeholders and passwords shorter than
 * `minLength`. The span is the password alone.
 */
export function* findConnectionUrlPasswordSteps(
  text: string,
  meter = new StepMeter(),
  minLength = MIN_CREDENTIAL_LENGTH,
): Steps<SecretSpan[]> {
  const spans: SecretSpan[] = [];
  for (const match of yield* matchAllSteps(text, CONNECTION_URL_USERINFO_SEARCH, meter)) {
    const user = match[1] ?? '';
    const password = match[2] ?? '';
    if (isUrlPassword(password, user, minLength)) {
      const start = match.index + '://'.length + user.length + ':'.length;
      spans.push({ kind: 'connection-url-password', start, end: start + password.length });
    }
  }
  return spans;
}

/**
 * Finds key material that shares a line with its BEGIN marker, as in the `private_key` field of
 * a JSON service account file. The secret runs to the matching END marker or to the end of the
 * line.
 */
function* findInlinePrivateKeySteps(text: string): Steps<SecretSpan[]> {
  const begin = yield* findSteps(text, PRIVATE_KEY_BEGIN_SEARCH);
  if (!begin) {
    return [];
  }
  const start = begin.index + begin[0].length;
  const endMarker = text.indexOf(`-----END ${begin[1]}-----`, start);
  const end = endMarker === -1 ? text.length : endMarker;
  if (text.slice(start, end).trim() === '') {
    return [];
  }
  return [{ kind: 'private-key', start, end }];
}

/**
 * Finds the secrets on one line that their own format gives away, whatever name they are
 * assigned to: AWS access key IDs, tokens, connection URL passwords of at least
 * `minUrlPasswordLength` characters and key material after a BEGIN marker. In no particular
 * order.
 */
export function* findFormattedSecretSteps(
  text: string,
  minUrlPasswordLength = MIN_CREDENTIAL_LENGTH,
): Steps<SecretSpan[]> {
  const meter = new StepMeter();
  const spans = yield* findAwsAccessKeyIdSteps(text);
  yield* appendSteps(spans, yield* findAllTokenSteps(text, meter), meter);
  const urlPasswords = yield* findConnectionUrlPasswordSteps(text, meter, minUrlPasswordLength);
  yield* appendSteps(spans, urlPasswords, meter);
  yield* appendSteps(spans, yield* findInlinePrivateKeySteps(text), meter);
  return spans;
}

function* appendSteps(spans: SecretSpan[], more: readonly SecretSpan[], meter: StepMeter) {
  for (const span of more) {
    spans.push(span);
    if (meter.count(0)) {
      yield;
    }
  }
}

/**
 * Finds every secret value on one line of the file at `path`, in no particular order: the
 * matches of every secret rule, so masking them leaves no reported secret in clear.
 */
export function findSecretSpans(text: string, path: string): SecretSpan[] {
  return runSteps(findSecretSpanSteps(text, path));
}

/**
 * Finds the secrets that `maskSecrets` masks: those of every secret rule, and the values of
 * credential query parameters and URL passwords too short for their rule, such as
 * `?password=hunter2` and `redis://:hunter2@cache`. A short value is too often a sample to
 * report, but masking one that is not costs only a few characters of the excerpt.
 */
function* findSecretSpanSteps(text: string, path: string): Steps<SecretSpan[]> {
  const spans = yield* findFormattedSecretSteps(text, 1);
  yield* appendSteps(spans, yield* findCredentialSteps(text, path, 1), new StepMeter());
  return spans;
}

/**
 * Replaces all but the first and last few characters of a secret with `*`, keeping the length.
 * At most 4 characters show at each end, and at most half of a short secret shows in total.
 */
export function maskSecret(secret: string): string {
  const visiblePerEnd = Math.min(4, Math.floor(secret.length / 4));
  const hiddenLength = secret.length - 2 * visiblePerEnd;
  const head = secret.slice(0, visiblePerEnd);
  const tail = secret.slice(secret.length - visiblePerEnd);
  return head + '*'.repeat(hiddenLength) + tail;
}

/**
 * Masks every secret on the line. The result has the same length, so indexes stay valid. A
 * secret that overlaps one masked before is masked again over the first one's output.
 */
export function maskSecrets(text: string, path: string): string {
  return runSteps(maskSecretsSteps(text, path));
}

/**
 * Masks every secret on the line as `maskSecrets` does, in steps. `maskSecret` keeps the ends
 * of a secret as they are and writes `*` over its middle. So masking the secrets one after
 * another writes `*` over the union of their middles, and the line is copied once from that.
 */
export function* maskSecretsSteps(text: string, path: string): Steps<string> {
  const spans = yield* findSecretSpanSteps(text, path);
  if (spans.length === 0) return text;
  const meter = new StepMeter();
  const middles: { start: number; end: number }[] = [];
  for (const span of spans) {
    const visiblePerEnd = Math.min(4, Math.floor((span.end - span.start) / 4));
    middles.push({ start: span.start + visiblePerEnd, end: span.end - visiblePerEnd });
    if (meter.count(0)) {
      yield;
    }
  }
  // The parts of each step are joined in that step, so the last join has few parts.
  const joined: string[] = [];
  let parts: string[] = [];
  let copied = 0;
  for (const middle of yield* sortSteps(middles, (left, right) => left.start - right.start)) {
    if (middle.end > copied) {
      const start = Math.max(middle.start, copied);
      parts.push(text.slice(copied, start), '*'.repeat(middle.end - start));
      copied = middle.end;
    }
    if (meter.count(0)) {
      joined.push(parts.join(''));
      parts = [];
      yield;
    }
  }
  parts.push(text.slice(copied));
  joined.push(parts.join(''));
  return joined.join('');
}
