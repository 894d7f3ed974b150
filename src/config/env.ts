import { createPrivateKey, type KeyObject } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { defaultRetryPolicy, maxGenerateDurationMs } from '../llm/retry.ts';
import { BoundedFileError, readBoundedFileSync } from './bounded-file.ts';
import { describeDatabaseUrlProblem } from './database-url.ts';
import { formatCount } from '../text/plural.ts';
import { shortenText } from '../text/quote-value.ts';
import { findSchemeRunStart, isAsciiLetter } from '../text/url-scheme.ts';
import { describeLoginProblem } from '../users/github-login.ts';

/** Raised when an environment variable is missing or invalid. The message names the variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const optionalText = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();

const url = (hint: string) =>
  z
    .string()
    .trim()
    .superRefine((value, ctx) => {
      if (!URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol)) {
        ctx.addIssue({ code: 'custom', message: `must be an absolute http:// or https:// URL, ${hint}` });
        return;
      }
      // The sign-in redirect sends GITHUB_URL to browsers, PUBLIC_URL goes into links, and the
      // sign-in error page names GITHUB_API_URL, so a password here would reach their readers.
      // fetch also rejects a URL with credentials, so such a value could not work anyway.
      const { username, password } = new URL(value);
      if (username !== '' || password !== '') {
        ctx.addIssue({
          code: 'custom',
          message:
            'must not contain a user name or password, because the URL can appear in ' +
            'redirects, links and messages; remove them',
        });
      }
    })
    // URL parsing lowers the scheme and host, so `HTTPS://` still counts as https for cookies.
    .transform((value) => new URL(value).href.replace(/\/+$/, ''));

/** Turns text other than decimal digits into NaN, so forms Number() reads, such as 0x10 or 1e3, fail. */
const decimalText = (value: unknown) =>
  typeof value === 'string' && !/^\s*-?\d+\s*$/.test(value) ? Number.NaN : value;

const integer = (min: number, max: number) =>
  z.preprocess(
    decimalText,
    z.coerce
      .number({ message: 'must be a whole number' })
      .int({ message: 'must be a whole number' })
      .min(min, { message: `must be at least ${min}` })
      .max(max, { message: `must be at most ${max}` }),
  );

const flag = z
  .string()
  .trim()
  .pipe(z.enum(['true', 'false'], { message: 'must be true or false' }))
  .default('false')
  .transform((value) => value === 'true');

/**
 * Comma-separated GitHub logins, compared without case. Empty entries are skipped. A value with
 * no login at all, such as ",", is rejected, because an unset list makes the first account to
 * sign in an admin, which such a value is unlikely to mean.
 */
const loginList = optionalText
  .superRefine((value, context) => {
    if (value === undefined || value.split(',').some((entry) => entry.trim() !== '')) return;
    context.addIssue({
      code: 'custom',
      message:
        'contains no login. Set GitHub logins separated by commas, such as "octocat,hubot", or ' +
        'unset it to make the first account to sign in the admin',
    });
  })
  .transform((value) =>
    (value ?? '')
      .split(',')
      .map((login) => login.trim())
      .filter((login) => login !== ''),
  )
  .superRefine((logins, context) => {
    for (const login of logins) {
      const problem = describeLoginProblem(login);
      if (problem) context.addIssue({ code: 'custom', message: `${JSON.stringify(login)}: ${problem}` });
    }
  })
  .transform((logins) => logins.map((login) => login.toLowerCase()));

const planLimit = z.preprocess(
  decimalText,
  z.coerce
    .number({ message: 'must be a whole number of tokens, or -1 for unlimited' })
    .int({ message: 'must be a whole number of tokens, or -1 for unlimited' })
    .min(-1, { message: 'must be -1 (unlimited) or a number of tokens' }),
);

/** Versioned 32-byte key that encrypts users' provider keys at rest. */
export interface MasterKeyMaterial {
  version: number;
  key: Uint8Array;
}

const masterKeyBytes = 32;
const masterKeyHint = 'generate one with: openssl rand -base64 32';

/** Decodes standard or URL-safe base64 into 32 bytes; returns an error sentence otherwise. */
export function decodeMasterKey(text: string): Uint8Array | string {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) && !/^[A-Za-z0-9_-]+$/.test(text)) {
    return `must be ${masterKeyBytes} random bytes in base64, but it contains characters outside the base64 alphabet; ${masterKeyHint}`;
  }
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== masterKeyBytes) {
    return `must be ${masterKeyBytes} random bytes in base64, but it decodes to ${bytes.length} bytes; ${masterKeyHint}`;
  }
  return new Uint8Array(bytes);
}

const masterKey = z.string().transform((text, ctx) => {
  const decoded = decodeMasterKey(text);
  if (typeof decoded === 'string') {
    ctx.addIssue({ code: 'custom', message: decoded });
    return z.NEVER;
  }
  return decoded;
});

/**
 * Highest master key version. `user_api_keys.master_key_version` is a PostgreSQL integer, whose
 * maximum is 2^31 - 1.
 */
export const maxMasterKeyVersion = 2_147_483_647;

/** MASTER_KEYS: comma-separated VERSION:BASE64 entries; the highest version encrypts. */
const versionedMasterKeys = z.string().transform((text, ctx) => {
  const keys: MasterKeyMaterial[] = [];
  const entries = text.split(',').map((entry) => entry.trim());
  for (const [index, entry] of entries.entries()) {
    const position = `entry ${index + 1}`;
    const match = /^(\d+):(.*)$/.exec(entry);
    const version = Number(match?.[1]);
    if (!match || version < 1) {
      ctx.addIssue({
        code: 'custom',
        message: `${position} must be VERSION:BASE64 with VERSION a whole number from 1, as in "2:<new key>,1:<old key>"`,
      });
      return z.NEVER;
    }
    if (version > maxMasterKeyVersion) {
      ctx.addIssue({
        code: 'custom',
        message:
          `${position} has version ${shortenText(match[1]!, 20)}, but versions must be from 1 ` +
          `to ${maxMasterKeyVersion}, the range of the stored version column; give that key ` +
          'a smaller version, as in "2:<new key>,1:<old key>"',
      });
      return z.NEVER;
    }
    if (keys.some((key) => key.version === version)) {
      ctx.addIssue({
        code: 'custom',
        message: `version ${version} appears twice; give each key its own version`,
      });
      return z.NEVER;
    }
    const decoded = decodeMasterKey(match[2]!.trim());
    if (typeof decoded === 'string') {
      ctx.addIssue({ code: 'custom', message: `the key of version ${version} ${decoded}` });
      return z.NEVER;
    }
    keys.push({ version, key: decoded });
  }
  return keys;
});

/** Variables whose value an error message must not repeat. */
const secretVariables = new Set([
  'MASTER_KEY',
  'MASTER_KEYS',
  'PRIVATE_KEY',
  'WEBHOOK_SECRET',
  'GITHUB_CLIENT_SECRET',
  'GROQ_API_KEY',
  'GEMINI_API_KEY',
]);

/**
 * Replaces with "***" the password of every `scheme://user:password@` URL in `text`, and the
 * value of its `password` and `sslpassword` query parameters. A URL here runs to the next URL or
 * the end of the line, and its password ends at the "@" that findPasswordEnd returns. So a
 * password with an unencoded "@", "/", "://" or space is masked whole, whether or not the URL
 * parses.
 * NOTE: when a path or query contains "@" and no "/@" comes before it, as in
 * `https://u:pw@host/users/a@b.org`, the host before it is masked as well.
 * NOTE: only a URL with "scheme://" is found in text. Mask a value that is meant to be a URL
 * with maskUrlValue, which also finds the password after a mistyped or missing scheme.
 */
export function maskUrlPassword(text: string): string {
  return text
    .split(/(\r?\n)/)
    .map((line) => {
      const starts = urlStarts(line);
      if (starts.length === 0) return line;
      let masked = line.slice(0, starts[0]);
      for (const [index, start] of starts.entries()) {
        masked += maskOneUrl(line.slice(start, starts[index + 1] ?? line.length));
      }
      return masked;
    })
    .join('');
}

/**
 * Finds where the URLs in `line` start: at the first letter of the scheme characters before
 * each "://". A "scheme://" after the user name and ":" of the URL before it, with no "@" in
 * between, is part of that URL's password and starts no URL. Every step reads the text after
 * the URL before it, so the search takes linear time.
 */
function urlStarts(line: string): number[] {
  const starts: number[] = [];
  const findAt = atFinder(line);
  let lastPassword: PasswordBounds | undefined;
  for (let colon = line.indexOf('://'); colon !== -1; colon = line.indexOf('://', colon + 1)) {
    const start = findFirstLetter(line, findSchemeRunStart(line, colon), colon);
    if (start === -1) continue;
    if (lastPassword && lastPassword.colon < start && lastPassword.end >= start) continue;
    starts.push(start);
    lastPassword = findPasswordBounds(line, colon, findAt);
  }
  return starts;
}

/**
 * Returns a function that finds the first "@" in `text` from an index on, or text.length. The
 * indexes it is called with must not decrease. It keeps the last "@" found, so a line of many
 * URLs without "@" is read once and not once for each URL.
 */
function atFinder(text: string): (from: number) => number {
  let at = -1;
  return (from) => {
    if (at < from) {
      const found = text.indexOf('@', from);
      at = found === -1 ? text.length : found;
    }
    return at;
  };
}

/** Finds the index of the first ASCII letter in `text` from `start` to before `end`, or -1. */
function findFirstLetter(text: string, start: number, end: number): number {
  for (let index = start; index < end; index += 1) {
    if (isAsciiLetter(text.charCodeAt(index))) return index;
  }
  return -1;
}

/** The ":" before a URL's password and the first "@" after it, or the line's length. */
interface PasswordBounds {
  colon: number;
  end: number;
}

/**
 * Finds the ":" before the password of the URL whose "://" starts at `schemeColon` in `line`,
 * and the first "@" after it with `findAt`. It returns undefined when a "/" or "@" ends the user name before
 * a ":", so the URL has no password.
 */
function findPasswordBounds(
  line: string,
  schemeColon: number,
  findAt: (from: number) => number,
): PasswordBounds | undefined {
  const userEnd = /[:/@]/g;
  userEnd.lastIndex = schemeColon + '://'.length;
  const passwordColon = userEnd.exec(line);
  if (passwordColon?.[0] !== ':') return undefined;
  return { colon: passwordColon.index, end: findAt(passwordColon.index + 1) };
}

/** Text from a URL's scheme to past the ":" after its user name. */
const userBeforePassword = /^[^:]+:\/\/[^:/@]*:/;

/** Masks the passwords of `url`, which starts with its scheme and may be followed by other text. */
function maskOneUrl(url: string): string {
  const passwordStart = userBeforePassword.exec(url)?.[0].length ?? 0;
  const masked = passwordStart > 0 ? maskPassword(url, passwordStart) : url;
  return masked.replace(/([?&](?:ssl)?password=)[^&#]*/gi, '$1***');
}

/**
 * Finds the "@" that ends the password starting at `passwordStart` in `value`, or returns -1.
 * It is the last "@" before the first "/@" after the password's start, because a path segment
 * may start with "@", as an npm scope does in `https://u:pw@host/@scope/pkg@1.0.0`. When no "@"
 * comes before that "/@", the password contains it, and it ends at the last "@" of `value`.
 * That prefers a masked host to a password in clear, because `u:p@ss/w0rd@db/app` and
 * `u:pw@host/users/a@b.org` have the same form.
 */
function findPasswordEnd(value: string, passwordStart: number): number {
  const pathSegment = value.indexOf('/@', passwordStart);
  if (pathSegment !== -1) {
    const end = value.lastIndexOf('@', pathSegment);
    if (end >= passwordStart) return end;
  }
  const end = value.lastIndexOf('@');
  return end >= passwordStart ? end : -1;
}

/** Replaces with "***" the password that starts at `passwordStart` in `value`, if one ends there. */
function maskPassword(value: string, passwordStart: number): string {
  const passwordEnd = findPasswordEnd(value, passwordStart);
  if (passwordEnd === -1) return value;
  return `${value.slice(0, passwordStart)}***${value.slice(passwordEnd)}`;
}

/** Scheme and slashes at the start of a value, also when its ":" or a "/" is missing. */
const valueUrlPrefix = /^[a-z][a-z0-9+.-]*:?\/+/i;

/**
 * `password=` and `sslpassword=` parameters in a query or in libpq's key=value form, with the
 * value up to the next "&". Unlike in maskOneUrl, a "#" does not end the value.
 */
const passwordParameter = /((?:^|[?&;\s])(?:ssl)?password=)[^&]*/gi;

/**
 * Replaces with "***" the password in `value`, one value that is meant to be a URL, and the
 * value of its `password` and `sslpassword` parameters. The user name runs from after the scheme
 * and its slashes to the first ":", and the password from there to the "@" that findPasswordEnd
 * finds. So a mistyped or missing scheme (`postgres:/u:pw@h`, `postgres//u:pw@h`, `u:pw@h`) and
 * a password with "@", "/" or "://" are masked too.
 * NOTE: more than the password is masked when a path or query contains "@" with no "/@" before
 * it, or when no slash follows the scheme (`postgres:u:pw@h` becomes `postgres:***@h`).
 */
export function maskUrlValue(value: string): string {
  const userStart = valueUrlPrefix.exec(value)?.[0].length ?? 0;
  const passwordStart = value.indexOf(':', userStart) + 1;
  const masked = passwordStart > 0 ? maskPassword(value, passwordStart) : value;
  return masked.replace(passwordParameter, '$1***');
}

/** Shows a value in an error message with any password in it replaced by "***". */
function displayValue(name: string, value: string): string {
  if (secretVariables.has(name)) return `${value.length} characters, not shown`;
  return JSON.stringify(maskUrlValue(value));
}

const envSchema = z.object({
  NODE_ENV: z
    .string()
    .trim()
    .pipe(z.enum(['development', 'production', 'test'], { message: 'must be development, production or test' }))
    .default('development'),
  LOG_LEVEL: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(
      z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
        message: 'must be one of fatal, error, warn, info, debug, trace or silent',
      }),
    )
    .default('info'),
  HOST: z.string().trim().min(1).default('127.0.0.1'),
  PORT: integer(0, 65535).default(3000),
  PUBLIC_URL: url('for example https://fixwright.example.com').optional(),
  REQUEST_TIMEOUT_SECONDS: integer(1, 3600).default(30),

  DATABASE_URL: optionalText.pipe(
    z
      .string()
      .superRefine((value, ctx) => {
        const problem = describeDatabaseUrlProblem(value);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
  ),
  DATA_DIR: z.string().trim().min(1).default('./data'),
  // PostgreSQL refuses to run as root, and by default Linux lets only root (or a process with
  // CAP_NET_BIND_SERVICE) listen below 1024. Such a port would fail only after initdb, with
  // PostgreSQL's own output.
  BUNDLED_POSTGRES_PORT: integer(0, 65535)
    .refine((port) => port === 0 || port >= 1024, {
      message:
        'must be 0 (any free port) or a port from 1024 to 65535, because the bundled ' +
        'PostgreSQL never runs as root, and ports below 1024 need root on most systems',
    })
    .default(0),

  APP_ID: optionalText.pipe(
    z
      .string()
      .regex(/^[1-9]\d*$/, {
        message: "must be the GitHub App's numeric id, a whole number from 1, as its settings page shows it",
      })
      .optional(),
  ),
  PRIVATE_KEY: optionalText,
  PRIVATE_KEY_PATH: optionalText,
  WEBHOOK_SECRET: optionalText,
  WEBHOOK_MAX_CONCURRENT: integer(1, 10_000).default(8),
  WEBHOOK_MAX_WAITING: integer(0, 10_000).default(100),
  // github.com counts a delivery without a response within 10 s as failed, and GitHub
  // Enterprise Server within 30 s, so a longer wait could only turn a 503 into a timeout.
  WEBHOOK_MAX_WAIT_MS: integer(0, 30_000).default(5000),
  // github.com gives up on a delivery after 10 s, so a body still arriving after that comes
  // from a client that is not delivering for GitHub.
  WEBHOOK_BODY_TIMEOUT_MS: integer(1, 30_000).default(10_000),
  GITHUB_CLIENT_ID: optionalText,
  GITHUB_CLIENT_SECRET: optionalText,
  GITHUB_API_URL: url('for example https://api.github.com').default('https://api.github.com'),
  GITHUB_URL: url('for example https://github.com').default('https://github.com'),
  GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS: integer(1, 3600).default(60),

  ADMIN_LOGINS: loginList,
  PLAN_SELF_SERVICE: flag,
  SESSION_TTL_HOURS: integer(1, 8760).default(168),
  SIGN_IN_RATE_LIMIT: integer(1, 10_000).default(20),
  KEY_CHECK_RATE_LIMIT: integer(1, 10_000).default(10),
  TRUST_PROXY: flag,

  GROQ_API_KEY: optionalText,
  GROQ_BASE_URL: url('the host root, for example https://api.groq.com').default(
    'https://api.groq.com',
  ),
  GROQ_MODEL: z.string().trim().min(1).default('llama-3.3-70b-versatile'),
  GEMINI_API_KEY: optionalText,
  GEMINI_BASE_URL: url('for example https://generativelanguage.googleapis.com').default(
    'https://generativelanguage.googleapis.com',
  ),
  GEMINI_MODEL: z.string().trim().min(1).default('gemini-2.5-flash'),
  LLM_MAX_RETRIES: integer(0, 10).default(2),
  LLM_TIMEOUT_MS: integer(1000, 600_000).default(120_000),
  LLM_MAX_OUTPUT_TOKENS: integer(256, 1_000_000).default(8192),
  PLATFORM_KEY_RECHECK_SECONDS: integer(10, 86_400).default(600),
  PREVIEW_FILE_CONCURRENCY: integer(1, 32).default(3),
  PREVIEW_MAX_FILE_BYTES: integer(1024, 10_000_000).default(200_000),

  PLAN_FREE_TOKENS: planLimit.default(1000),
  PLAN_PRO_TOKENS: planLimit.default(100_000),
  PLAN_ENTERPRISE_TOKENS: planLimit.default(-1),
  RESERVATION_TTL_SECONDS: integer(5, 86_400).default(900),
  PREVIEW_JOB_TIMEOUT_SECONDS: integer(5, 86_400).default(1800),
  JOB_MAINTENANCE_INTERVAL_SECONDS: integer(1, 3600).default(120),
  JOB_RECOVERY_SECONDS: integer(1, 3600).default(60),
  SHUTDOWN_TIMEOUT_SECONDS: integer(1, 3600).default(20),
  GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: integer(0, 86_400).optional(),
  /** Deprecated name of GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS, read when that is unset. */
  REPORT_RATE_LIMIT_MAX_WAIT_SECONDS: integer(0, 86_400).optional(),
  BILLING_PERIOD: z
    .string()
    .trim()
    .regex(/^(monthly|[1-9]\d{0,2}d)$/, {
      message: 'must be "monthly" or a number of days from 1 to 999 followed by "d", such as "30d"',
    })
    .default('monthly'),

  MASTER_KEY: optionalText.pipe(masterKey.optional()),
  MASTER_KEYS: optionalText.pipe(versionedMasterKeys.optional()),
});

export type Env = z.infer<typeof envSchema>;

/** Names of the environment variables that the configuration reads. */
export const settingNames: readonly string[] = Object.keys(envSchema.shape);

export interface Config
  extends Omit<
    Env,
    | 'PRIVATE_KEY'
    | 'PRIVATE_KEY_PATH'
    | 'MASTER_KEY'
    | 'MASTER_KEYS'
    | 'GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS'
    | 'REPORT_RATE_LIMIT_MAX_WAIT_SECONDS'
  > {
  /**
   * Seconds a job may wait for GitHub rate limits, counted from its first rate-limited
   * response; 0 turns the wait off.
   */
  GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: number;
  /** One warning per deprecated variable that is set, for the start-up log. */
  deprecatedSettings: string[];
  /** PEM text of the GitHub App key, read from PRIVATE_KEY or PRIVATE_KEY_PATH. */
  privateKey: string | undefined;
  /** Absolute path of the data folder (bundled PostgreSQL, generated master key). */
  dataDir: string;
  /** True when APP_ID and a private key are set, so the app can call GitHub. */
  githubAppConfigured: boolean;
  /**
   * Master keys from MASTER_KEY (version 1) and MASTER_KEYS, newest version first; empty when
   * neither is set.
   */
  masterKeys: MasterKeyMaterial[];
  /** Variables that set the master keys, so that messages name only the variables in use. */
  masterKeySettings: MasterKeySettings;
  /**
   * Whether GROQ_BASE_URL and GEMINI_BASE_URL are set, so that connection errors name the
   * setting only when it chose the address.
   */
  baseUrlsSet: { groq: boolean; gemini: boolean };
}

/** The versions that MASTER_KEYS lists, and whether MASTER_KEY, which is version 1, is set. */
export interface MasterKeySettings {
  masterKeysVersions: number[];
  masterKeySet: boolean;
}

/**
 * Parses the environment into the configuration. Throws ConfigError whose message is one line
 * per invalid variable, naming it and what to set. The checks that need the parsed values, such
 * as of the private key and RESERVATION_TTL_SECONDS, run only once every variable parsed, so
 * their lines come in a second start after the first lines are fixed.
 */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  // An empty DATABASE_URL is more likely a secret that failed to fill in than a wish for the
  // bundled PostgreSQL, which would then quietly hold the data instead.
  if (source.DATABASE_URL !== undefined && source.DATABASE_URL.trim() === '') {
    problems.push(
      'Invalid DATABASE_URL: it is set but empty. Remove the variable to use the bundled ' +
        'PostgreSQL, or set it to postgres://USER:PASSWORD@HOST:PORT/DATABASE.',
    );
  }
  // A variable set to nothing (`PORT=` in an env file) counts as unset, so it gets its default.
  // zod would otherwise coerce "" to the number 0, a valid token limit and port.
  const set = Object.fromEntries(
    Object.entries(source).filter(([, value]) => value === undefined || value.trim() !== ''),
  );
  const parsed = envSchema.safeParse(set);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? 'environment');
      const value = source[name] ?? '';
      const got = displayValue(name, value);
      // A message that already quotes the whole value, such as a list's only entry, ends there.
      if (issue.message.includes(got)) return `Invalid ${name}: ${issue.message}.`;
      return `Invalid ${name}: ${issue.message} (got ${got}).`;
    });
    throw new ConfigError([...problems, ...lines].join('\n'));
  }
  const env = parsed.data;
  const shortHold = describeShortReservationTtl(env, source.RESERVATION_TTL_SECONDS);
  if (shortHold) problems.push(shortHold);

  /** Runs `read` and returns its result, or records its ConfigError and returns undefined. */
  const collect = <T>(read: () => T): T | undefined => {
    try {
      return read();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(error.message);
      return undefined;
    }
  };
  const privateKeyProblems = problems.length;
  const privateKey = collect(() => readPrivateKey(env.PRIVATE_KEY, env.PRIVATE_KEY_PATH));
  // A key that is set but invalid has its own line, so APP_ID is not called the missing part.
  const privateKeyInvalid = problems.length > privateKeyProblems;
  if (env.APP_ID && !privateKey && !privateKeyInvalid) {
    problems.push(
      'Missing PRIVATE_KEY: APP_ID is set, so set PRIVATE_KEY to the GitHub App private key ' +
        '(PEM) or PRIVATE_KEY_PATH to the file that contains it.',
    );
  }
  if ((privateKey || privateKeyInvalid) && !env.APP_ID) {
    problems.push(
      'Missing APP_ID: a private key is set, so set APP_ID to the GitHub App id shown on its settings page.',
    );
  }

  const {
    PRIVATE_KEY: _key,
    PRIVATE_KEY_PATH: _keyPath,
    MASTER_KEY: single,
    MASTER_KEYS: versioned,
    GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: maxWait,
    REPORT_RATE_LIMIT_MAX_WAIT_SECONDS: oldMaxWait,
    ...rest
  } = env;
  const rateLimitMaxWait = collect(() => readRateLimitMaxWait(maxWait, oldMaxWait));
  const masterKeys = collect(() => mergeMasterKeys(single, versioned ?? []));
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return {
    ...rest,
    ...rateLimitMaxWait!,
    privateKey,
    dataDir: path.resolve(env.DATA_DIR),
    githubAppConfigured: Boolean(env.APP_ID && privateKey),
    masterKeys: masterKeys!,
    masterKeySettings: {
      masterKeysVersions: (versioned ?? []).map((entry) => entry.version),
      masterKeySet: single !== undefined,
    },
    baseUrlsSet: { groq: set.GROQ_BASE_URL !== undefined, gemini: set.GEMINI_BASE_URL !== undefined },
  };
}

/**
 * Seconds that a token hold gets beyond its model call, for the reserve statement before the
 * call and the settle statement after it.
 * NOTE: an estimate. Both statements wait for the user's row lock, and a settle that waits
 * longer than this after a call of the maximum duration may find its hold released.
 */
const holdMarginSeconds = 5;

/**
 * Returns the error for a RESERVATION_TTL_SECONDS shorter than one metered model call can
 * last, or null. Each provider's `generate` reserves its own hold (see meterClient), so the
 * fallback to the next provider starts a new hold and does not count here. A hold that expires
 * first is released by the sweeper while the call runs, so other calls can reserve its tokens,
 * and the settle then charges at most what the allowance has left.
 */
function describeShortReservationTtl(env: Env, sourceValue: string | undefined): string | null {
  const retries = env.LLM_MAX_RETRIES;
  const callMs = maxGenerateDurationMs({ maxRetries: retries, timeoutMs: env.LLM_TIMEOUT_MS });
  const neededSeconds = Math.ceil(callMs / 1000) + holdMarginSeconds;
  if (env.RESERVATION_TTL_SECONDS >= neededSeconds) return null;

  const retryDelaySeconds = Math.max(
    defaultRetryPolicy.maxRetryAfterSeconds,
    defaultRetryPolicy.maxDelayMs / 1000,
  );
  const requests = formatCount(retries + 1, 'request');
  const waits =
    retries === 0
      ? ''
      : ` and up to ${retryDelaySeconds} s before each of ${formatCount(retries, 'retry', 'retries')}`;
  const got =
    sourceValue === undefined || sourceValue.trim() === ''
      ? `${env.RESERVATION_TTL_SECONDS}, the default`
      : JSON.stringify(sourceValue);
  return (
    `Invalid RESERVATION_TTL_SECONDS: a token hold must last until its model call is settled. ` +
    `With LLM_TIMEOUT_MS=${env.LLM_TIMEOUT_MS} and LLM_MAX_RETRIES=${retries}, one call can ` +
    `take ${Math.ceil(callMs / 1000)} s (${requests} of up to ${env.LLM_TIMEOUT_MS} ms${waits}), ` +
    `and the hold needs ${holdMarginSeconds} s more to reserve and settle. Set ` +
    `RESERVATION_TTL_SECONDS to at least ${neededSeconds}, or lower LLM_TIMEOUT_MS or ` +
    `LLM_MAX_RETRIES (got ${got}).`
  );
}

const defaultRateLimitMaxWaitSeconds = 3600;

/**
 * Reads the maximum rate limit wait from GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS, or from its
 * deprecated name REPORT_RATE_LIMIT_MAX_WAIT_SECONDS when only that is set, with a warning
 * for the start-up log. Both set to different values is an error, because either could be the
 * intended one.
 */
function readRateLimitMaxWait(
  value: number | undefined,
  oldValue: number | undefined,
): Pick<Config, 'GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS' | 'deprecatedSettings'> {
  if (oldValue === undefined) {
    return {
      GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: value ?? defaultRateLimitMaxWaitSeconds,
      deprecatedSettings: [],
    };
  }
  if (value !== undefined && value !== oldValue) {
    throw new ConfigError(
      `Invalid REPORT_RATE_LIMIT_MAX_WAIT_SECONDS: it is the deprecated name of ` +
        `GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS, which is set to ${value}, another value ` +
        `(got ${oldValue}). Remove REPORT_RATE_LIMIT_MAX_WAIT_SECONDS.`,
    );
  }
  return {
    GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: oldValue,
    deprecatedSettings: [
      'REPORT_RATE_LIMIT_MAX_WAIT_SECONDS is deprecated and now applies to every job that ' +
        'calls GitHub; rename it to GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS.',
    ],
  };
}

/** Adds MASTER_KEY as version 1 to MASTER_KEYS and sorts newest first. */
function mergeMasterKeys(
  single: Uint8Array | undefined,
  versioned: MasterKeyMaterial[],
): MasterKeyMaterial[] {
  const keys = [...versioned];
  if (single) {
    const clash = keys.find((entry) => entry.version === 1);
    if (clash && !Buffer.from(clash.key).equals(Buffer.from(single))) {
      throw new ConfigError(
        'Invalid MASTER_KEYS: it sets version 1 to a different key than MASTER_KEY, which is ' +
          'version 1 too; unset MASTER_KEY or give its key version 1 in MASTER_KEYS.',
      );
    }
    if (!clash) keys.push({ version: 1, key: single });
  }
  return keys.sort((a, b) => b.version - a.version);
}

/**
 * Largest PRIVATE_KEY_PATH file read, in bytes. The PEM of a 2048-bit RSA key, the kind GitHub
 * generates for an App, is about 1.7 KB, and of an 8192-bit one about 6.4 KB (Node 20, PKCS#1).
 */
const maxPrivateKeyFileBytes = 32 * 1024;

function readPrivateKey(inline: string | undefined, file: string | undefined): string | undefined {
  if (inline) {
    // Platforms that keep one-line variables store the PEM with literal "\n" sequences.
    const pem = inline.includes('\\n') ? inline.replaceAll('\\n', '\n') : inline;
    if (!pem.includes('-----BEGIN')) {
      throw new ConfigError(
        'Invalid PRIVATE_KEY: expected a PEM block starting with -----BEGIN; paste the whole ' +
          'key file GitHub gave you, or set PRIVATE_KEY_PATH to its path.',
      );
    }
    checkAppPrivateKey(pem, 'PRIVATE_KEY: the key');
    return pem;
  }
  if (!file) return undefined;
  let pem: string;
  try {
    pem = readBoundedFileSync(file, maxPrivateKeyFileBytes).toString('utf8');
  } catch (error) {
    if (error instanceof BoundedFileError) {
      throw new ConfigError(
        `Invalid PRIVATE_KEY_PATH: ${error.message}. Set it to the .pem file downloaded from ` +
          'the GitHub App settings.',
      );
    }
    const reason = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(
      `Invalid PRIVATE_KEY_PATH: cannot read ${JSON.stringify(file)} (${reason}); ` +
        'set it to the .pem file downloaded from the GitHub App settings.',
    );
  }
  if (!pem.includes('-----BEGIN')) {
    throw new ConfigError(
      `Invalid PRIVATE_KEY_PATH: ${JSON.stringify(file)} contains no PEM block; ` +
        'set it to the .pem file downloaded from the GitHub App settings.',
    );
  }
  checkAppPrivateKey(pem, `PRIVATE_KEY_PATH: the key in ${JSON.stringify(file)}`);
  return pem;
}

/**
 * Raises ConfigError unless `pem` is an RSA private key, the kind that GitHub generates for an
 * App and that its RS256 tokens need. `subject` starts the message with the variable and the
 * key it names, and the message never contains the key.
 */
function checkAppPrivateKey(pem: string, subject: string): void {
  const fix = 'use the .pem file generated under "Private keys" on the GitHub App settings page.';
  if (pem.includes('ENCRYPTED')) {
    throw new ConfigError(`Invalid ${subject} is encrypted with a passphrase, which Fixwright cannot use; ${fix}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`Invalid ${subject} is not a readable private key (${reason}); ${fix}`);
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new ConfigError(
      `Invalid ${subject} has key type ${key.asymmetricKeyType ?? 'unknown'}, but GitHub App ` +
        `tokens are signed with RSA (RS256); ${fix}`,
    );
  }
}

/**
 * Lists what is still missing for the whole flow to work, for the home page and the logs.
 * With `http: false` (a worker process) it leaves out the webhook secret and the OAuth client,
 * which only the HTTP server uses.
 */
export function missingSettings(config: Config, options: { http?: boolean } = {}): string[] {
  const http = options.http ?? true;
  const missing: string[] = [];
  if (http && !config.WEBHOOK_SECRET) {
    missing.push('WEBHOOK_SECRET: the webhook secret set on the GitHub App; webhooks are rejected until it is set.');
  }
  if (!config.githubAppConfigured) {
    missing.push('APP_ID and PRIVATE_KEY (or PRIVATE_KEY_PATH): needed to read pull requests.');
  }
  const oauthMissing = [
    ...(config.GITHUB_CLIENT_ID ? [] : ['GITHUB_CLIENT_ID']),
    ...(config.GITHUB_CLIENT_SECRET ? [] : ['GITHUB_CLIENT_SECRET']),
  ];
  if (http && oauthMissing.length > 0) {
    missing.push(
      `${oauthMissing.join(' and ')}: the GitHub App's OAuth client; dashboard sign-in is ` +
        'disabled until both GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET are set.',
    );
  }
  if (!config.GROQ_API_KEY && !config.GEMINI_API_KEY) {
    missing.push('GROQ_API_KEY or GEMINI_API_KEY: platform keys for fix previews of users without their own key.');
  }
  if (config.DATABASE_URL && config.masterKeys.length === 0) {
    missing.push('MASTER_KEY: 32 random bytes in base64 (openssl rand -base64 32); users cannot store their own provider keys until it is set.');
  }
  return missing;
}
