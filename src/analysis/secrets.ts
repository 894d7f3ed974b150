/** The position of a secret value inside a line: `text.slice(start, end)` is the secret. */
export interface SecretSpan {
  kind: 'aws-access-key-id' | 'hardcoded-credential' | 'private-key';
  start: number;
  end: number;
}

const AWS_ACCESS_KEY_ID = /\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b/g;

// AWS documentation writes its sample keys with this suffix, as in AKIAIOSFODNN7EXAMPLE.
const AWS_SAMPLE_SUFFIX = 'EXAMPLE';

export const PRIVATE_KEY_BEGIN =
  /-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----/;

const TYPE_NAME = String.raw`[A-Za-z_][\w.<>[\]]*`;

/**
 * A name, an assignment or key/value operator, and a quoted value. The name may be quoted
 * (`"password": "..."`) or indexed (`config['token'] = "..."`), may carry a type annotation
 * (`apiKey: string = "..."`), and the value may have a Python r/b/u prefix. An `f` prefix is left
 * out because an f-string builds its value from other variables.
 */
const QUOTED_ASSIGNMENT = new RegExp(
  [
    String.raw`(?<![\w$@.-])(["'\x60]?)([\w$@.-]+)\1\]?`,
    String.raw`(?:\s*:\s*${TYPE_NAME}(?:\s*\|\s*${TYPE_NAME})*)?`,
    String.raw`\s*(?::=|=>|=(?!=)|:(?!:))\s*`,
    String.raw`[rRbBuU]?(["'\x60])((?:\\.|(?!\3)[^\\])*)\3`,
  ].join(''),
  'g',
);

/** `NAME=value` without quotes, as `.env` files and direnv's `.envrc` write it. */
const UNQUOTED_ENV_ASSIGNMENT = /^(\s*(?:export\s+)?([A-Za-z_][\w.-]*)\s*=\s*)([^\s"'`#$]\S*)/;

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
  if (/^(.)\1*$/s.test(value) || PLACEHOLDER_VALUE.test(value)) {
    return true;
  }
  if (/\s/.test(value) && !AUTHORIZATION_VALUE.test(value)) {
    return true;
  }
  const snakeValue = toSnakeCase(value);
  const snakeName = toSnakeCase(name);
  return snakeValue === snakeName || snakeName.endsWith(`_${snakeValue}`);
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
  const spans: SecretSpan[] = [];
  for (const match of text.matchAll(AWS_ACCESS_KEY_ID)) {
    if (!match[0].endsWith(AWS_SAMPLE_SUFFIX)) {
      const end = match.index + match[0].length;
      spans.push({ kind: 'aws-access-key-id', start: match.index, end });
    }
  }
  return spans;
}

/**
 * Finds credential values that are not placeholders: quoted values assigned to a credential name,
 * and in dotenv files also unquoted values.
 */
export function findHardcodedCredentials(text: string, path: string): SecretSpan[] {
  const spans: SecretSpan[] = [];
  for (const match of text.matchAll(QUOTED_ASSIGNMENT)) {
    const name = match[2] ?? '';
    const value = match[4] ?? '';
    if (isCredentialName(name) && isCredentialValue(value, name)) {
      // The value ends one character before the closing quote, which ends the match.
      const end = match.index + match[0].length - 1;
      spans.push({ kind: 'hardcoded-credential', start: end - value.length, end });
    }
  }

  const unquoted = isEnvFile(path) ? UNQUOTED_ENV_ASSIGNMENT.exec(text) : null;
  if (unquoted) {
    const name = unquoted[2] ?? '';
    const value = unquoted[3] ?? '';
    if (isCredentialName(name) && isCredentialValue(value, name)) {
      const start = (unquoted[1] ?? '').length;
      spans.push({ kind: 'hardcoded-credential', start, end: start + value.length });
    }
  }
  return spans;
}

/**
 * Finds key material that shares a line with its BEGIN marker, as in the `private_key` field of
 * a JSON service account file. The secret runs to the matching END marker or to the end of the
 * line.
 */
function findInlinePrivateKey(text: string): SecretSpan[] {
  const begin = PRIVATE_KEY_BEGIN.exec(text);
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

/** Finds every secret value on one line of the file at `path`, in no particular order. */
export function findSecretSpans(text: string, path: string): SecretSpan[] {
  return [
    ...findAwsAccessKeyIds(text),
    ...findHardcodedCredentials(text, path),
    ...findInlinePrivateKey(text),
  ];
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
 * secret that overlaps one masked before is masked again over the first one's output. The
 * line is copied once, not once per secret, because a long line can hold thousands of them.
 */
export function maskSecrets(text: string, path: string): string {
  const spans = findSecretSpans(text, path);
  if (spans.length === 0) return text;
  const units = text.split('');
  for (const span of spans) {
    const masked = maskSecret(units.slice(span.start, span.end).join(''));
    for (let offset = 0; offset < masked.length; offset += 1) {
      units[span.start + offset] = masked[offset]!;
    }
  }
  return units.join('');
}
