import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sslModes } from '../../src/config/database-url.ts';
import { ConfigError, loadConfig, missingSettings } from '../../src/config/env.ts';

function errorFor(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('loadConfig accepted the environment');
}

describe('loadConfig errors', () => {
  it('reports every invalid variable at once', () => {
    expect(errorFor({ DATABASE_URL: ' ', PORT: 'abc', LOG_LEVEL: 'loud' }).split('\n')).toEqual([
      'Invalid DATABASE_URL: it is set but empty. Remove the variable to use the bundled ' +
        'PostgreSQL, or set it to postgres://USER:PASSWORD@HOST:PORT/DATABASE.',
      'Invalid LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace or silent (got "loud").',
      'Invalid PORT: must be a whole number (got "abc").',
    ]);
  });

  it('reports every invalid combination at once', () => {
    const lines = errorFor({
      PRIVATE_KEY_PATH: '/nonexistent/fixwright-app.pem',
      GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: '6',
      REPORT_RATE_LIMIT_MAX_WAIT_SECONDS: '5',
      RESERVATION_TTL_SECONDS: '10',
    }).split('\n');

    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^Invalid RESERVATION_TTL_SECONDS: a token hold must last until /);
    expect(lines[1]).toBe(
      'Invalid PRIVATE_KEY_PATH: cannot read "/nonexistent/fixwright-app.pem" (ENOENT); set it ' +
        'to the .pem file downloaded from the GitHub App settings.',
    );
    expect(lines[2]).toBe(
      'Missing APP_ID: a private key is set, so set APP_ID to the GitHub App id shown on its settings page.',
    );
    expect(lines[3]).toBe(
      'Invalid REPORT_RATE_LIMIT_MAX_WAIT_SECONDS: it is the deprecated name of ' +
        'GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS, which is set to 6, another value (got 5). Remove ' +
        'REPORT_RATE_LIMIT_MAX_WAIT_SECONDS.',
    );
  });

  it('names no missing key for an invalid one', () => {
    const message = errorFor({ APP_ID: '12', PRIVATE_KEY_PATH: '/nonexistent/fixwright-app.pem' });
    expect(message).toMatch(/^Invalid PRIVATE_KEY_PATH: cannot read /);
    expect(message).not.toContain('Missing PRIVATE_KEY');
  });

  it('masks the password of an invalid DATABASE_URL', () => {
    const message = errorFor({ DATABASE_URL: 'mysql://admin:Sup3rS3cret@db.internal/app' });
    expect(message).toContain('Invalid DATABASE_URL: must start with postgres://');
    expect(message).toContain('mysql://admin:***@db.internal/app');
    expect(message).not.toContain('Sup3rS3cret');
  });

  it('never shows a secret variable value', () => {
    const message = errorFor({ APP_ID: '12', PRIVATE_KEY: 'not-a-pem-but-secret' });
    expect(message).toContain('PRIVATE_KEY');
    expect(message).not.toContain('not-a-pem-but-secret');
  });

  it('rejects a BUNDLED_POSTGRES_PORT below 1024', () => {
    const expected = (value: string) =>
      'Invalid BUNDLED_POSTGRES_PORT: must be 0 (any free port) or a port from 1024 to 65535, ' +
      'because the bundled PostgreSQL never runs as root, and ports below 1024 need root on ' +
      `most systems (got "${value}").`;
    expect(errorFor({ BUNDLED_POSTGRES_PORT: '22' })).toBe(expected('22'));
    expect(errorFor({ BUNDLED_POSTGRES_PORT: '1023' })).toBe(expected('1023'));
    expect(loadConfig({ BUNDLED_POSTGRES_PORT: '1024' }).BUNDLED_POSTGRES_PORT).toBe(1024);
    expect(loadConfig({ BUNDLED_POSTGRES_PORT: '0' }).BUNDLED_POSTGRES_PORT).toBe(0);
  });

  it('names the variable and the expected form', () => {
    expect(errorFor({ PORT: '70000' })).toBe('Invalid PORT: must be at most 65535 (got "70000").');
    expect(errorFor({ BILLING_PERIOD: 'weekly' })).toContain('must be "monthly" or a number of days');
    expect(errorFor({ BILLING_PERIOD: '1000d' })).toBe(
      'Invalid BILLING_PERIOD: must be "monthly" or a number of days from 1 to 999 followed by ' +
        '"d", such as "30d" (got "1000d").',
    );
    expect(errorFor({ REQUEST_TIMEOUT_SECONDS: '0' })).toBe(
      'Invalid REQUEST_TIMEOUT_SECONDS: must be at least 1 (got "0").',
    );
    expect(errorFor({ WEBHOOK_BODY_TIMEOUT_MS: '0' })).toBe(
      'Invalid WEBHOOK_BODY_TIMEOUT_MS: must be at least 1 (got "0").',
    );
    expect(errorFor({ WEBHOOK_BODY_TIMEOUT_MS: '30001' })).toBe(
      'Invalid WEBHOOK_BODY_TIMEOUT_MS: must be at most 30000 (got "30001").',
    );
    expect(errorFor({ WEBHOOK_BODY_TIMEOUT_MS: '10s' })).toBe(
      'Invalid WEBHOOK_BODY_TIMEOUT_MS: must be a whole number (got "10s").',
    );
  });
});

describe('loadConfig number and login forms', () => {
  it('rejects numbers that are not decimal digits', () => {
    expect(errorFor({ PORT: '3e4' })).toBe('Invalid PORT: must be a whole number (got "3e4").');
    expect(errorFor({ LLM_TIMEOUT_MS: '0x10' })).toBe(
      'Invalid LLM_TIMEOUT_MS: must be a whole number (got "0x10").',
    );
    expect(errorFor({ PLAN_FREE_TOKENS: '1e3' })).toBe(
      'Invalid PLAN_FREE_TOKENS: must be a whole number of tokens, or -1 for unlimited (got "1e3").',
    );
  });

  it('accepts decimal digits with spaces around', () => {
    const config = loadConfig({ PORT: ' 8080 ', PLAN_FREE_TOKENS: '-1' });
    expect(config.PORT).toBe(8080);
    expect(config.PLAN_FREE_TOKENS).toBe(-1);
  });

  it('rejects an ADMIN_LOGINS entry GitHub cannot have', () => {
    expect(errorFor({ ADMIN_LOGINS: '@alice, bob' })).toBe(
      'Invalid ADMIN_LOGINS: "@alice": GitHub logins are letters, digits and hyphens, starting ' +
        'with a letter or digit (got "@alice, bob").',
    );
    expect(errorFor({ ADMIN_LOGINS: 'good,bad login' })).toContain('"bad login": GitHub logins are');
    expect(errorFor({ ADMIN_LOGINS: 'good,bad app[bot]' })).toContain(
      '"bad app[bot]": an app\'s login is its GitHub App slug followed by "[bot]"',
    );
  });

  it('quotes a single bad ADMIN_LOGINS entry once', () => {
    expect(errorFor({ ADMIN_LOGINS: 'bad_login!' })).toBe(
      'Invalid ADMIN_LOGINS: "bad_login!": GitHub logins are letters, digits and hyphens, ' +
        'starting with a letter or digit.',
    );
  });

  it('rejects ADMIN_LOGINS without a login', () => {
    const message =
      'Invalid ADMIN_LOGINS: contains no login. Set GitHub logins separated by commas, such as ' +
      '"octocat,hubot", or unset it to make the first account to sign in the admin';
    expect(errorFor({ ADMIN_LOGINS: ',' })).toBe(`${message} (got ",").`);
    expect(errorFor({ ADMIN_LOGINS: ' , ,' })).toBe(`${message} (got " , ,").`);
    expect(loadConfig({ ADMIN_LOGINS: 'alice,' }).ADMIN_LOGINS).toEqual(['alice']);
  });

  it('rejects APP_ID 0', () => {
    expect(errorFor({ APP_ID: '0' })).toBe(
      "Invalid APP_ID: must be the GitHub App's numeric id, a whole number from 1, as its " +
        'settings page shows it (got "0").',
    );
    expect(errorFor({ APP_ID: '007' })).toContain('Invalid APP_ID');
  });

  it('ignores spaces around every value', () => {
    const config = loadConfig({
      PORT: ' 3001',
      PLAN_SELF_SERVICE: ' true ',
      TRUST_PROXY: 'false ',
      NODE_ENV: ' production',
      BILLING_PERIOD: ' 30d ',
    });
    expect(config.PORT).toBe(3001);
    expect(config.PLAN_SELF_SERVICE).toBe(true);
    expect(config.TRUST_PROXY).toBe(false);
    expect(config.NODE_ENV).toBe('production');
    expect(config.BILLING_PERIOD).toBe('30d');
  });

  it('reads ADMIN_LOGINS in lower case', () => {
    expect(loadConfig({ ADMIN_LOGINS: 'Alice,,bob-2' }).ADMIN_LOGINS).toEqual(['alice', 'bob-2']);
  });
});

describe('loadConfig DATABASE_URL', () => {
  const encodeHint =
    'must be a URL such as postgres://USER:PASSWORD@HOST:5432/DATABASE, with "@", "/", ":", ' +
    '"?", "#" and spaces in the user name and password percent-encoded ("@" as %40)';
  const cases: [string, string][] = [
    [
      'postgres://u:pw@127.0.0.1:99999/db',
      'Invalid DATABASE_URL: has port 99999; set the port of the PostgreSQL server, from 1 to ' +
        '65535 (got "postgres://u:***@127.0.0.1:99999/db").',
    ],
    [
      'postgres://u:pw@127.0.0.1:0/db',
      'Invalid DATABASE_URL: has port 0; set the port of the PostgreSQL server, from 1 to ' +
        '65535 (got "postgres://u:***@127.0.0.1:0/db").',
    ],
    [
      'postgres://u:top/secret@127.0.0.1:1/db',
      `Invalid DATABASE_URL: ${encodeHint} (got "postgres://u:***@127.0.0.1:1/db").`,
    ],
    [
      'postgres://u:pw@[::1:1/db',
      `Invalid DATABASE_URL: ${encodeHint} (got "postgres://u:***@[::1:1/db").`,
    ],
  ];

  it.each(cases)('rejects %j', (value, expected) => {
    const message = errorFor({ DATABASE_URL: value });
    expect(message).toBe(expected);
    expect(message).not.toContain('secret');
    expect(message).not.toContain(':pw@');
  });

  const schemeHint = 'must start with postgres:// or postgresql://';
  const mistyped: [string, string][] = [
    [
      'postgres:/fixwright:Sup3rSecret@127.0.0.1:5432/fixwright',
      `Invalid DATABASE_URL: ${schemeHint} (got "postgres:/fixwright:***@127.0.0.1:5432/fixwright").`,
    ],
    [
      'postgres//fixwright:Sup3rSecret@127.0.0.1:5432/fixwright',
      `Invalid DATABASE_URL: ${schemeHint} (got "postgres//fixwright:***@127.0.0.1:5432/fixwright").`,
    ],
    [
      'fixwright:Sup3rSecret@127.0.0.1:5432/fixwright',
      `Invalid DATABASE_URL: ${schemeHint} (got "fixwright:***@127.0.0.1:5432/fixwright").`,
    ],
    [
      'postgres://fixwright:Sup3r://Secret@127.0.0.1/db',
      `Invalid DATABASE_URL: ${encodeHint} (got "postgres://fixwright:***@127.0.0.1/db").`,
    ],
  ];

  it.each(mistyped)('masks the password of %j', (value, expected) => {
    const message = errorFor({ DATABASE_URL: value });
    expect(message).toBe(expected);
    expect(message).not.toContain('Sup3r');
    expect(message).not.toContain('Secret');
  });

  /** Builds the error for invalid percent-encoding in `parts`, showing the masked value `got`. */
  function percentError(parts: string, got: string): string {
    return (
      `Invalid DATABASE_URL: has invalid percent-encoding in the ${parts}; percent-encode ` +
      `special characters as UTF-8, such as "%" as %25 and "@" as %40 (got "${got}").`
    );
  }
  const badPercent: [string, string][] = [
    [
      'postgres://user:Sup3r%zzSecret@127.0.0.1:5432/db',
      percentError('password', 'postgres://user:***@127.0.0.1:5432/db'),
    ],
    [
      'postgres://user:Sup3rSecret%@127.0.0.1:5432/db',
      percentError('password', 'postgres://user:***@127.0.0.1:5432/db'),
    ],
    [
      'postgres://user:Sup3r%ffSecret@127.0.0.1:5432/db',
      percentError('password', 'postgres://user:***@127.0.0.1:5432/db'),
    ],
    [
      'postgres://us%zzer:Sup3rSecret@127.0.0.1:5432/db',
      percentError('user name', 'postgres://us%zzer:***@127.0.0.1:5432/db'),
    ],
    [
      'postgres://user:Sup3rSecret@db%zz.internal:5432/db',
      percentError('host', 'postgres://user:***@db%zz.internal:5432/db'),
    ],
    [
      'postgres://user:Sup3rSecret@127.0.0.1:5432/d%zzb',
      percentError('database name', 'postgres://user:***@127.0.0.1:5432/d%zzb'),
    ],
    [
      'postgres://us%zz:Sup3r%Secret@h%zz/d%zz',
      percentError(
        'user name, password, host and database name',
        'postgres://us%zz:***@h%zz/d%zz',
      ),
    ],
  ];

  it.each(badPercent)('rejects invalid percent-encoding in %j', (value, expected) => {
    const message = errorFor({ DATABASE_URL: value });
    expect(message).toBe(expected);
    expect(message).not.toContain('Sup3r');
  });

  it('accepts PostgreSQL URLs', () => {
    for (const value of [
      'postgres://u:pw@127.0.0.1:5432/db',
      'postgresql://u:p%40ss@[::1]:65535/db?sslmode=disable',
      'postgres://127.0.0.1/db',
      'postgres://u:s3cr@t@127.0.0.1:1/db',
      'postgres://u:100%25%C3%A9@127.0.0.1:1/d%C3%A9',
      'postgres://u@127.0.0.1:1/db?application_name=100%zz',
      // Both clients read the space through new URL() and decodeURIComponent().
      'postgres://u:pass word@127.0.0.1:1/db',
      ...sslModes.map((mode) => `postgres://u:pw@127.0.0.1:1/db?sslmode=${mode}`),
    ]) {
      expect(loadConfig({ DATABASE_URL: value }).DATABASE_URL, value).toBe(value);
    }
  });

  const sslModeError = (mode: string, got: string) =>
    `Invalid DATABASE_URL: has sslmode "${mode}", which is not an sslmode value; set sslmode ` +
    `to disable, allow, prefer, require, verify-ca or verify-full (got "${got}").`;
  const badSslModes: [string, string][] = [
    [
      'postgres://u:pass word@127.0.0.1:5432/db?sslmode=bogus',
      sslModeError('bogus', 'postgres://u:***@127.0.0.1:5432/db?sslmode=bogus'),
    ],
    [
      'postgres://u:pw@127.0.0.1:5432/db?sslmode=Require',
      sslModeError('Require', 'postgres://u:***@127.0.0.1:5432/db?sslmode=Require'),
    ],
    [
      'postgres://u:pw@127.0.0.1:5432/db?sslmode=require&sslmode=no-verify',
      sslModeError('no-verify', 'postgres://u:***@127.0.0.1:5432/db?sslmode=require&sslmode=no-verify'),
    ],
    ['postgres://u:pw@127.0.0.1:5432/db?sslmode=', sslModeError('', 'postgres://u:***@127.0.0.1:5432/db?sslmode=')],
  ];

  it.each(badSslModes)('rejects the sslmode of %j', (value, expected) => {
    const message = errorFor({ DATABASE_URL: value });
    expect(message).toBe(expected);
    expect(message).not.toContain('word');
  });
});

describe('loadConfig with blank values', () => {
  it('treats a blank variable as unset', () => {
    const config = loadConfig({
      PORT: '',
      PLAN_FREE_TOKENS: '',
      PLAN_PRO_TOKENS: '  ',
      LLM_MAX_RETRIES: '',
      HOST: '',
      DATA_DIR: ' ',
    });
    expect(config.PORT).toBe(3000);
    expect(config.PLAN_FREE_TOKENS).toBe(1000);
    expect(config.PLAN_PRO_TOKENS).toBe(100_000);
    expect(config.LLM_MAX_RETRIES).toBe(2);
    expect(config.HOST).toBe('127.0.0.1');
    expect(config.DATA_DIR).toBe(loadConfig({}).DATA_DIR);
  });

  it('rejects an empty DATABASE_URL instead of using the bundled server', () => {
    expect(errorFor({ DATABASE_URL: ' ' })).toBe(
      'Invalid DATABASE_URL: it is set but empty. Remove the variable to use the bundled ' +
        'PostgreSQL, or set it to postgres://USER:PASSWORD@HOST:PORT/DATABASE.',
    );
  });

  it('still rejects a value that is not blank', () => {
    expect(errorFor({ PLAN_FREE_TOKENS: 'lots' })).toContain('Invalid PLAN_FREE_TOKENS');
  });
});

describe('loadConfig values', () => {
  it('rejects a PUBLIC_URL that is not http or https', () => {
    expect(errorFor({ PUBLIC_URL: 'ftp://fixwright.example.com' })).toBe(
      'Invalid PUBLIC_URL: must be an absolute http:// or https:// URL, for example ' +
        'https://fixwright.example.com (got "ftp://fixwright.example.com").',
    );
  });

  it('normalizes the case of URL schemes and hosts', () => {
    const config = loadConfig({
      PUBLIC_URL: 'HTTPS://Fixwright.Example.com/',
      GITHUB_API_URL: 'Https://GHE.Example.com/api/v3',
    });
    expect(config.PUBLIC_URL).toBe('https://fixwright.example.com');
    expect(config.GITHUB_API_URL).toBe('https://ghe.example.com/api/v3');
  });

  it('rejects a user name or password in URL settings', () => {
    // GITHUB_URL goes to browsers in the sign-in redirect, so its password would reach them.
    const message = errorFor({ GITHUB_URL: 'https://proxy-user:S3cretPw@github.example.com' });
    expect(message).toBe(
      'Invalid GITHUB_URL: must not contain a user name or password, because the URL can ' +
        'appear in redirects, links and messages; remove them ' +
        '(got "https://proxy-user:***@github.example.com").',
    );
    expect(message).not.toContain('S3cretPw');
    expect(errorFor({ GROQ_BASE_URL: 'https://only-user@groq.example.com' })).toContain(
      'Invalid GROQ_BASE_URL: must not contain a user name or password',
    );
  });

  it('names the values of NODE_ENV', () => {
    expect(errorFor({ NODE_ENV: 'prod' })).toBe(
      'Invalid NODE_ENV: must be development, production or test (got "prod").',
    );
  });

  it('reads LOG_LEVEL in any case and names the levels', () => {
    expect(loadConfig({ LOG_LEVEL: 'DEBUG' }).LOG_LEVEL).toBe('debug');
    expect(errorFor({ LOG_LEVEL: 'loud' })).toBe(
      'Invalid LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace or silent (got "loud").',
    );
  });

  it('names the OAuth variable that is missing', () => {
    const lines = missingSettings(loadConfig({ GITHUB_CLIENT_ID: 'Iv1.0123456789abcdef' }));
    expect(lines).toContain(
      "GITHUB_CLIENT_SECRET: the GitHub App's OAuth client; dashboard sign-in is disabled until " +
        'both GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET are set.',
    );
  });

  it('leaves HTTP settings out for a worker', () => {
    const config = loadConfig({});
    const worker = missingSettings(config, { http: false });
    expect(worker.some((line) => line.startsWith('WEBHOOK_SECRET:'))).toBe(false);
    expect(worker.some((line) => line.startsWith('GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET:'))).toBe(false);
    expect(worker.some((line) => line.startsWith('APP_ID and PRIVATE_KEY'))).toBe(true);
    expect(worker.some((line) => line.startsWith('GROQ_API_KEY or GEMINI_API_KEY:'))).toBe(true);

    const web = missingSettings(config);
    expect(web.some((line) => line.startsWith('WEBHOOK_SECRET:'))).toBe(true);
    expect(web.some((line) => line.startsWith('GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET:'))).toBe(true);
  });
});

describe('loadConfig GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS', () => {
  it('defaults to an hour', () => {
    const config = loadConfig({});
    expect(config.GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS).toBe(3600);
    expect(config.deprecatedSettings).toEqual([]);
  });

  it('reads the deprecated name with a warning', () => {
    const config = loadConfig({ REPORT_RATE_LIMIT_MAX_WAIT_SECONDS: '600' });
    expect(config.GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS).toBe(600);
    expect(config.deprecatedSettings).toHaveLength(1);
    expect(config.deprecatedSettings[0]).toContain('rename it to GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS');
  });

  it('accepts both names with one value', () => {
    const config = loadConfig({
      GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: '0',
      REPORT_RATE_LIMIT_MAX_WAIT_SECONDS: '0',
    });
    expect(config.GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS).toBe(0);
    expect(config.deprecatedSettings).toHaveLength(1);
  });

  it('rejects both names with different values', () => {
    const message = errorFor({
      GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS: '1800',
      REPORT_RATE_LIMIT_MAX_WAIT_SECONDS: '3600',
    });
    expect(message).toBe(
      'Invalid REPORT_RATE_LIMIT_MAX_WAIT_SECONDS: it is the deprecated name of ' +
        'GITHUB_RATE_LIMIT_MAX_WAIT_SECONDS, which is set to 1800, another value (got 3600). ' +
        'Remove REPORT_RATE_LIMIT_MAX_WAIT_SECONDS.',
    );
  });
});

describe('loadConfig RESERVATION_TTL_SECONDS', () => {
  it('rejects a hold shorter than a call', () => {
    expect(errorFor({ RESERVATION_TTL_SECONDS: '300' })).toBe(
      'Invalid RESERVATION_TTL_SECONDS: a token hold must last until its model call is settled. ' +
        'With LLM_TIMEOUT_MS=120000 and LLM_MAX_RETRIES=2, one call can take 380 s (3 requests ' +
        'of up to 120000 ms and up to 10 s before each of 2 retries), and the hold needs 5 s ' +
        'more to reserve and settle. Set RESERVATION_TTL_SECONDS to at least 385, or lower ' +
        'LLM_TIMEOUT_MS or LLM_MAX_RETRIES (got "300").',
    );
  });

  it('names the default when the TTL is unset', () => {
    expect(errorFor({ LLM_TIMEOUT_MS: '600000', LLM_MAX_RETRIES: '1' })).toBe(
      'Invalid RESERVATION_TTL_SECONDS: a token hold must last until its model call is settled. ' +
        'With LLM_TIMEOUT_MS=600000 and LLM_MAX_RETRIES=1, one call can take 1210 s (2 requests ' +
        'of up to 600000 ms and up to 10 s before each of 1 retry), and the hold needs 5 s more ' +
        'to reserve and settle. Set RESERVATION_TTL_SECONDS to at least 1215, or lower ' +
        'LLM_TIMEOUT_MS or LLM_MAX_RETRIES (got 900, the default).',
    );
  });

  it('counts a call without retries', () => {
    expect(
      errorFor({ LLM_TIMEOUT_MS: '1500', LLM_MAX_RETRIES: '0', RESERVATION_TTL_SECONDS: '6' }),
    ).toBe(
      'Invalid RESERVATION_TTL_SECONDS: a token hold must last until its model call is settled. ' +
        'With LLM_TIMEOUT_MS=1500 and LLM_MAX_RETRIES=0, one call can take 2 s (1 request of up ' +
        'to 1500 ms), and the hold needs 5 s more to reserve and settle. Set ' +
        'RESERVATION_TTL_SECONDS to at least 7, or lower LLM_TIMEOUT_MS or LLM_MAX_RETRIES ' +
        '(got "6").',
    );
  });

  it('accepts a hold that outlasts the call', () => {
    expect(loadConfig({ RESERVATION_TTL_SECONDS: '385' }).RESERVATION_TTL_SECONDS).toBe(385);
    expect(loadConfig({}).RESERVATION_TTL_SECONDS).toBe(900);
    const short = loadConfig({ LLM_TIMEOUT_MS: '1500', LLM_MAX_RETRIES: '0', RESERVATION_TTL_SECONDS: '7' });
    expect(short.RESERVATION_TTL_SECONDS).toBe(7);
  });
});

describe('loadConfig GitHub App private key', () => {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'fixwright-app-key-'));
  const pkcs8 = { type: 'pkcs8', format: 'pem' } as const;
  const spki = { type: 'spki', format: 'pem' } as const;
  const rsaPem = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: spki,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  }).privateKey;
  const ed25519Pem = generateKeyPairSync('ed25519', { publicKeyEncoding: spki, privateKeyEncoding: pkcs8 })
    .privateKey;
  const encryptedPem = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: spki,
    privateKeyEncoding: { ...pkcs8, cipher: 'aes-256-cbc', passphrase: 'secret-passphrase' },
  }).privateKey;
  const garbledPem = '-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n';

  function keyFile(name: string, pem: string): string {
    const file = path.join(folder, name);
    writeFileSync(file, pem);
    return file;
  }

  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it('accepts an RSA key', () => {
    expect(loadConfig({ APP_ID: '12', PRIVATE_KEY: rsaPem }).privateKey).toBe(rsaPem.trim());
    expect(loadConfig({ APP_ID: '12', PRIVATE_KEY_PATH: keyFile('rsa.pem', rsaPem) }).privateKey).toBe(rsaPem);
  });

  it('rejects a key of another type', () => {
    const file = keyFile('ed25519.pem', ed25519Pem);
    expect(errorFor({ APP_ID: '12', PRIVATE_KEY_PATH: file })).toBe(
      `Invalid PRIVATE_KEY_PATH: the key in ${JSON.stringify(file)} has key type ed25519, but ` +
        'GitHub App tokens are signed with RSA (RS256); use the .pem file generated under ' +
        '"Private keys" on the GitHub App settings page.',
    );
    const inline = errorFor({ APP_ID: '12', PRIVATE_KEY: ed25519Pem });
    expect(inline).toMatch(/^Invalid PRIVATE_KEY: the key has key type ed25519/);
  });

  it('rejects an unreadable PEM block', () => {
    const message = errorFor({ APP_ID: '12', PRIVATE_KEY: garbledPem });
    expect(message).toMatch(/^Invalid PRIVATE_KEY: the key is not a readable private key \(ERR_/);
    expect(message).not.toContain('bm90IGEga2V5');
  });

  it('rejects a key path that is not a file', () => {
    expect(errorFor({ APP_ID: '12', PRIVATE_KEY_PATH: '/dev/zero' })).toBe(
      'Invalid PRIVATE_KEY_PATH: "/dev/zero" is a character device, not a regular file. Set it to ' +
        'the .pem file downloaded from the GitHub App settings.',
    );
    const fifo = path.join(folder, 'key-pipe');
    execFileSync('mkfifo', [fifo]);
    expect(errorFor({ APP_ID: '12', PRIVATE_KEY_PATH: fifo })).toContain(
      `${JSON.stringify(fifo)} is a FIFO (named pipe), not a regular file.`,
    );
  });

  it('rejects a key file over 32 KiB', () => {
    const file = keyFile('large.pem', rsaPem.padEnd(32 * 1024 + 1, '\n'));
    expect(errorFor({ APP_ID: '12', PRIVATE_KEY_PATH: file })).toBe(
      `Invalid PRIVATE_KEY_PATH: ${JSON.stringify(file)} is 32769 bytes, over the limit of 32768 ` +
        'bytes. Set it to the .pem file downloaded from the GitHub App settings.',
    );
  });

  it('rejects an encrypted key', () => {
    const message = errorFor({ APP_ID: '12', PRIVATE_KEY_PATH: keyFile('encrypted.pem', encryptedPem) });
    expect(message).toContain('is encrypted with a passphrase, which Fixwright cannot use');
  });
});
