import { describe, expect, it } from 'vitest';
import { buildExcerpt, MAX_EXCERPT_LENGTH } from '../../src/analysis/excerpt.ts';
import {
  findAwsAccessKeyIds,
  findHardcodedCredentials,
  maskSecret,
  maskSecrets,
} from '../../src/analysis/secrets.ts';

function credentialValues(text: string, path = 'src/config.ts'): string[] {
  return findHardcodedCredentials(text, path).map((span) => text.slice(span.start, span.end));
}

describe('findHardcodedCredentials', () => {
  it.each([
    [`const apiKey = 'sk_live_4eC39HqLyjWDarjtT1zd';`, 'sk_live_4eC39HqLyjWDarjtT1zd'],
    ['  password: "hunter2hunter2",', 'hunter2hunter2'],
    ['"client_secret": "9f8e7d6c5b4a3210",', '9f8e7d6c5b4a3210'],
    ["'api-key': 'k3y-v4lu3-0001'", 'k3y-v4lu3-0001'],
    ['DB_PASSWORD="s3cr3tPassw0rd"', 's3cr3tPassw0rd'],
    ['export GITHUB_TOKEN="ghp_abcdefghij0123456789"', 'ghp_abcdefghij0123456789'],
    ['const token: string = "tok_0123456789";', 'tok_0123456789'],
    ["config['auth_token'] = 'abcd1234efgh';", 'abcd1234efgh'],
    ['this.accessToken = `at_9988776655`;', 'at_9988776655'],
    ['AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG"', 'wJalrXUtnFEMI/K7MDENG'],
    ['db = connect(passwd="tr0ub4dor&3")', 'tr0ub4dor&3'],
    ['pwd := "qwerty123456"', 'qwerty123456'],
    ["$password = 'abcdefgh123';", 'abcdefgh123'],
    ["  :client_secret => 'cs_live_0001'", 'cs_live_0001'],
    ['  Authorization token: "Bearer abcdefgh12345678"', 'Bearer abcdefgh12345678'],
  ])('flags %s', (text, value) => {
    expect(credentialValues(text)).toEqual([value]);
  });

  it.each([
    ['token = "${GITHUB_TOKEN}"'],
    ['  apiKey: process.env.API_KEY,'],
    ['password = os.environ["DB_PASSWORD"]'],
    ['password: "<your password here>"'],
    ['API_KEY="your_api_key_here"'],
    ['API_KEY="YOUR_API_KEY"'],
    ['secret: "example-secret-value"'],
    ['password = "changeme123"'],
    ['token: "xxx-xxx-xxx"'],
    ['password: "********"'],
    ['password: "aaaaaaaaaaaa"'],
    ['password: "{{ .Values.db.password }}"'],
    ['password = other_variable_name'],
    ['password = f"{prefix}-{suffix}"'],
    ['password: "short"'],
    ['password: ""'],
    ['"password": "Enter your password"'],
    ['"password": "Password"'],
    ['passwordHint = "the usual one"'],
    ['tokenizer = "wordpiece-tokenizer"'],
    ['config.accessToken = "accessToken"'],
    ['HTTPToken = "http_token"'],
    ['accessToken = "--Access--Token--"'],
    ['dbPassword: "DB.PASSWORD!!"'],
    ['if (password === "hunter2hunter2") {'],
    ['if password != "hunter2hunter2":'],
  ])('ignores %s', (text) => {
    expect(credentialValues(text)).toEqual([]);
  });

  it('reads a long value with more letters than the name', () => {
    const value = 'Ab1-'.repeat(250_000);

    expect(credentialValues(`password = "${value}"`)).toEqual([value]);
    expect(credentialValues(`password = "${value.slice(0, 12)}"`)).toEqual(['Ab1-Ab1-Ab1-']);
  });

  it('ignores one character repeated millions of times', () => {
    // A regular expression with a backreference threw a stack overflow at about 5.6 million.
    const value = 'a'.repeat(6_000_000);

    expect(credentialValues(`password = "${value}"`)).toEqual([]);
    expect(credentialValues(`password = "${value}b"`)).toEqual([`${value}b`]);
  });

  it('compares repeated values by UTF-16 code unit', () => {
    // A repeated emoji alternates two surrogates, so it is not one code unit repeated.
    expect(credentialValues(`password = "${'\u{1F600}'.repeat(8)}"`)).toEqual(['\u{1F600}'.repeat(8)]);
    expect(credentialValues(`password = "${'\uD800'.repeat(8)}"`)).toEqual([]);
  });

  it('reads unquoted values only in dotenv files', () => {
    const line = 'API_KEY=abcdef123456';
    expect(credentialValues(line, '.env')).toEqual(['abcdef123456']);
    expect(credentialValues(line, 'deploy/.env.production')).toEqual(['abcdef123456']);
    expect(credentialValues(line, 'config/prod.env')).toEqual(['abcdef123456']);
    expect(credentialValues(`export ${line}`, '.envrc')).toEqual(['abcdef123456']);
    expect(credentialValues(line, 'scripts/deploy.sh')).toEqual([]);
  });

  it('ignores variable references in dotenv files', () => {
    expect(credentialValues('SECRET_KEY=$OTHER_SECRET', '.env')).toEqual([]);
    expect(credentialValues('SECRET_KEY=${OTHER_SECRET}', '.env')).toEqual([]);
    expect(credentialValues('PASSWORD=short', '.env')).toEqual([]);
  });

  it('checks long uppercase runs in linear time', () => {
    // The name and value were split into words with a pattern that backtracked over each
    // uppercase run: an 80 KB value took 30 s on 2 CPU cores.
    const value = 'QZ'.repeat(100_000);
    const lines = [
      { text: `TOKEN = "${value}"`, path: 'src/config.ts' },
      { text: `${'A'.repeat(200_000)}_TOKEN = "${value}"`, path: 'src/config.ts' },
      { text: `TOKEN=${value}`, path: '.env' },
    ];
    for (const { text, path } of lines) {
      const startedAt = performance.now();
      const values = credentialValues(text, path);
      const elapsedMs = performance.now() - startedAt;

      expect(values).toEqual([value]);
      // Linear matching takes a few milliseconds; the bound leaves room for slow machines.
      expect(elapsedMs).toBeLessThan(2_000);
    }
  });

  it('finds every credential on a line', () => {
    const line = '{ "token": "tok_1111222233", "password": "pw_44445555666" }';
    expect(credentialValues(line)).toEqual(['tok_1111222233', 'pw_44445555666']);
  });
});

describe('findAwsAccessKeyIds', () => {
  it.each(['AKIA', 'ASIA', 'AGPA', 'AIDA', 'AROA', 'ANPA', 'ANVA', 'AIPA'])(
    'finds keys with prefix %s',
    (prefix) => {
      const key = `${prefix}Z7QW3ERT5YUI8OPA`;
      const text = `aws_access_key_id = ${key}`;
      const spans = findAwsAccessKeyIds(text);
      expect(spans).toHaveLength(1);
      expect(text.slice(spans[0]!.start, spans[0]!.end)).toBe(key);
    },
  );

  it.each([
    ['lowercase tail', 'AKIAz7qw3ert5yui8opa'],
    ['too short', 'AKIAZ7QW3ERT5YUI8OP'],
    ['no word boundary', 'XAKIAZ7QW3ERT5YUI8OPA'],
    ['too long', 'AKIAZ7QW3ERT5YUI8OPAB'],
    ['unknown prefix', 'ABCDZ7QW3ERT5YUI8OPA'],
    ['AWS documentation sample', 'AKIAIOSFODNN7EXAMPLE'],
  ])('ignores %s', (_case, text) => {
    expect(findAwsAccessKeyIds(text)).toEqual([]);
  });
});

describe('maskSecret', () => {
  it('keeps four characters at each end of a long secret', () => {
    expect(maskSecret('AKIAZ7QW3ERT5YUI8OPA')).toBe('AKIA************8OPA');
  });

  it('shows at most half of a short secret', () => {
    expect(maskSecret('hunter22')).toBe('hu****22');
    expect(maskSecret('abcdefghijkl')).toBe('abc******jkl');
  });

  it('hides a very short secret fully', () => {
    expect(maskSecret('abc')).toBe('***');
  });
});

describe('maskSecrets', () => {
  it('masks every secret and keeps the length', () => {
    const line = 'key=AKIAZ7QW3ERT5YUI8OPA password="hunter2hunter2"';
    const masked = maskSecrets(line, 'app.py');
    expect(masked).toBe('key=AKIA************8OPA password="hun********er2"');
    expect(masked).toHaveLength(line.length);
  });

  it('masks key material on a BEGIN line', () => {
    const body = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC';
    const pemInJson = `-----BEGIN PRIVATE KEY-----\\n${body}\\n-----END PRIVATE KEY-----\\n`;
    const line = `  "private_key": "${pemInJson}",`;
    const masked = maskSecrets(line, 'service-account.json');
    expect(masked).not.toContain(body);
    expect(masked).toContain('-----BEGIN PRIVATE KEY-----\\nMI');
    expect(masked).toContain('\\n-----END PRIVATE KEY-----');
  });

  it('masks an AWS key inside a credential', () => {
    const line = 'aws_secret_key = "AKIAZ7QW3ERT5YUI8OPA"';
    expect(maskSecrets(line, 'a.py')).toBe('aws_secret_key = "AKIA************8OPA"');
  });

  it('masks many secrets on a line in linear time', () => {
    // The line was copied once per secret: 20,000 credentials on a 560 KB line took 40 s
    // on 2 CPU cores.
    const line = '{"token": "tok_1111222233", '.repeat(20_000);

    const startedAt = performance.now();
    const masked = maskSecrets(line, 'a.json');
    const elapsedMs = performance.now() - startedAt;

    expect(masked).toBe('{"token": "tok********233", '.repeat(20_000));
    // Linear work takes well under a second; the bound leaves room for slow machines.
    expect(elapsedMs).toBeLessThan(5_000);
  });

  it('leaves lines without secrets unchanged', () => {
    const line = 'const total = items.length;';
    expect(maskSecrets(line, 'a.ts')).toBe(line);
  });
});

describe('buildExcerpt', () => {
  it('trims and masks the line', () => {
    expect(buildExcerpt('    token: "tok_1111222233"  ', 'a.yml')).toBe('token: "tok********233"');
  });

  it('cuts a long line around the match', () => {
    const key = 'AKIAZ7QW3ERT5YUI8OPA';
    const line = `${'a'.repeat(300)} ${key} ${'b'.repeat(300)}`;
    const excerpt = buildExcerpt(line, 'data.txt', line.indexOf(key));
    expect(excerpt).toHaveLength(MAX_EXCERPT_LENGTH);
    expect(excerpt.startsWith('…')).toBe(true);
    expect(excerpt.endsWith('…')).toBe(true);
    expect(excerpt).toContain('AKIA************8OPA');
    expect(excerpt).not.toContain(key);
  });

  it('cuts a long line at the end when the match is early', () => {
    const line = `console.log(${'x'.repeat(300)})`;
    const excerpt = buildExcerpt(line, 'a.js', 0);
    expect(excerpt).toHaveLength(MAX_EXCERPT_LENGTH);
    expect(excerpt.startsWith('console.log(')).toBe(true);
    expect(excerpt.endsWith('…')).toBe(true);
  });

  it('keeps the line end when the match is late', () => {
    const line = `${'x'.repeat(300)} // TODO: split`;
    const excerpt = buildExcerpt(line, 'a.js', line.indexOf('TODO'));
    expect(excerpt).toHaveLength(MAX_EXCERPT_LENGTH);
    expect(excerpt.startsWith('…')).toBe(true);
    expect(excerpt.endsWith('// TODO: split')).toBe(true);
  });
});
