import { describe, expect, it } from 'vitest';
import { buildExcerpt, MAX_EXCERPT_LENGTH } from '../../src/analysis/excerpt.ts';
import {
  findAwsAccessKeyIds,
  findConnectionUrlPasswordSteps,
  findHardcodedCredentials,
  findSecretSpans,
  maskSecret,
  maskSecrets,
} from '../../src/analysis/secrets.ts';
import { runSteps } from '../../src/analysis/steps.ts';
import { findAllTokenSteps } from '../../src/analysis/token-secrets.ts';
import { fakeSecrets } from '../helpers/fake-secrets.ts';

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

describe('bearer tokens', () => {
  const token = 'a8Fk29dLq83mZpQ7';

  it.each([
    `headers: { Authorization: "Bearer ${token}" },`,
    `headers = {'Authorization': 'Bearer ${token}'}`,
    `curl -H "Authorization: Bearer ${token}" https://api.internal/v1`,
    `Authorization: Bearer ${token}`,
    `const header = 'bearer ${token}';`,
    `"Authorization: Bearer ${token}\r\n"`,
    `fetch(url, { headers: ["Bearer ${token}", other] })`,
    `const header = "Bearer ${token} ";`,
    `log('Bearer ${token} is the token')`,
  ])('flags %s', (text) => {
    expect(credentialValues(text)).toEqual([token]);
  });

  it('flags a token that ends in = padding', () => {
    expect(credentialValues('auth("Bearer dGVzdDEyMzQ1Njc4==")')).toEqual(['dGVzdDEyMzQ1Njc4==']);
  });

  it('reads the whole value of a credential that holds a bearer token', () => {
    expect(credentialValues(`token: "Bearer ${token}"`)).toEqual([`Bearer ${token}`]);
  });

  it.each([
    'const header = `Bearer ${token}`;',
    'const header = "Bearer " + token;',
    "const header = 'Bearer ' . $token;",
    'const header = "Bearer %s" % token',
    'const header = f"Bearer {token}"',
    'const header = "Bearer <token>";',
    'const header = "Bearer {{token}}";',
    'const header = "Bearer $TOKEN";',
    'const header = "Bearer ACCESS_TOKEN";',
    'const header = "Bearer accessToken";',
    'throw new Error("Bearer authentication failed");',
    'const header = "Bearer YOUR_TOKEN_1";',
    'const header = "Bearer xxxxxxxx1";',
    'const header = "Bearer 1234567";',
    'const header = "Bearer ********1";',
    `const header = "Bearer ${token}x${'$'}{suffix}";`,
    `const scheme = "Bearer"; const value = ${token}1;`,
    `// send a Bearer ${token} header`,
  ])('ignores %s', (text) => {
    expect(credentialValues(text)).toEqual([]);
  });
});

describe('credentials in a URL query', () => {
  it.each([
    ['fetch("https://api.internal/v1?user=a&password=s3cr3tPassw0rd")', 's3cr3tPassw0rd'],
    ['https://api.internal/x?token=a8Fk29dLq83mZ&page=2', 'a8Fk29dLq83mZ'],
    ['https://api.internal/x?ACCESS_TOKEN=a8Fk29dLq83mZ#top', 'a8Fk29dLq83mZ'],
    ["url = 'https://h/x?apikey=a8Fk29dLq83mZ'", 'a8Fk29dLq83mZ'],
    ['https://h/x?api_key=a8Fk29dLq83mZ', 'a8Fk29dLq83mZ'],
    ['https://h/oauth?client_id=app&client_secret=a8Fk29dLq83mZ', 'a8Fk29dLq83mZ'],
    ['https://h/x?secret=a8Fk29dLq83mZ', 'a8Fk29dLq83mZ'],
    ['https://h/x?passwd=a8Fk29dLq83mZ', 'a8Fk29dLq83mZ'],
    ['Server=db;Uid=app;Pwd=a8Fk29dLq83mZ;', 'a8Fk29dLq83mZ'],
    ['body: "grant_type=password&username=a&password=a8Fk29dLq83mZ"', 'a8Fk29dLq83mZ'],
  ])('flags %s', (text, value) => {
    expect(credentialValues(text)).toEqual([value]);
  });

  it.each([
    'https://h/x?user=a&password=hunter2',
    'fetch("https://h/x?token=" + token)',
    'fetch(`https://h/x?token=${token}`)',
    'url = "https://h/x?api_key={api_key}"',
    'url = "https://h/x?password=%s" % password',
    'url = "https://h/x?password=%(password)s"',
    'curl "https://h/x?token=$TOKEN"',
    'url = "https://h/x?token=<token>"',
    'url = "https://h/x?token=YOUR_TOKEN_HERE"',
    'url = "https://h/x?password=PASSWORD"',
    'url = "https://h/x?token=TOKEN"',
    'url = "https://h/x?password=changeme123"',
    'url = "https://h/x?token=xxxxxxxxxxxx"',
    'url = "https://h/x?page_token=a8Fk29dLq83mZ"',
    'url = "https://h/x?csrf_token=a8Fk29dLq83mZ"',
    'url = "https://h/x?tokens=a8Fk29dLq83mZ"',
    'url = "https://h/reset-password=a8Fk29dLq83mZ"',
  ])('ignores %s', (text) => {
    expect(credentialValues(text)).toEqual([]);
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

function tokenValues(text: string): [string, string][] {
  return runSteps(findAllTokenSteps(text)).map((span) => [
    span.kind,
    text.slice(span.start, span.end),
  ]);
}

describe('findAllTokenSteps', () => {
  const {
    githubToken,
    githubFineGrainedToken,
    stripeSecretKey,
    slackBotToken,
    slackWebhookPath,
    jwt,
  } = fakeSecrets;

  it.each([
    [`const b = "${githubToken}";`, 'github-token', githubToken],
    [`git clone https://x-access-token:${githubToken}@github.com/o/r`, 'github-token', githubToken],
    [`token: ${githubFineGrainedToken}`, 'github-token', githubFineGrainedToken],
    ['ghs_Q8Wm3Zr7TxLv2NcY5pKb9HsD_4fGh1JkL0mN', 'github-token', 'ghs_Q8Wm3Zr7TxLv2NcY5pKb9HsD_4fGh1JkL0mN'],
    [`other: "${stripeSecretKey}"`, 'stripe-secret-key', stripeSecretKey],
    ['key = "rk_live_51NzQ8rHv2Lk7TmWc3XpJd9Ye"', 'stripe-secret-key', 'rk_live_51NzQ8rHv2Lk7TmWc3XpJd9Ye'],
    [`SLACK=${slackBotToken}`, 'slack-token', slackBotToken],
    [
      'user: "xoxp-2418653027-2419934857-5907214836152-8f3e1c7a9b2d4e6f0a1b3c5d7e9f1a2b"',
      'slack-token',
      'xoxp-2418653027-2419934857-5907214836152-8f3e1c7a9b2d4e6f0a1b3c5d7e9f1a2b',
    ],
    ['app: xoxa-2-2418653027-Qh7TmZr2LwVx9NcK', 'slack-token', 'xoxa-2-2418653027-Qh7TmZr2LwVx9NcK'],
    ['refresh: xoxr-1-Qh7TmZr2LwVx9NcK', 'slack-token', 'xoxr-1-Qh7TmZr2LwVx9NcK'],
    ['legacy: xoxs-2418653027-2419934857-8f3e1c7a9b', 'slack-token', 'xoxs-2418653027-2419934857-8f3e1c7a9b'],
    [
      `url = "https://hooks.slack.com/services/${slackWebhookPath}"`,
      'slack-webhook-url',
      slackWebhookPath,
    ],
    [
      'https://hooks.slack.com/workflows/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',
      'slack-webhook-url',
      'T03KQ8ZP2/A05FGHJ2K9L/498127461203846/q8Wm3Zr7TxLv2NcY5pKb9HsD',
    ],
    [`Authorization: Bearer ${jwt}`, 'jwt', jwt],
    [`id_token=${jwt}&state=1`, 'jwt', jwt],
  ])('flags %s', (text, kind, value) => {
    expect(tokenValues(text)).toEqual([[kind, value]]);
  });

  it.each([
    ['GitHub token one character short', githubToken.slice(0, -1)],
    ['GitHub token inside a longer name', `my${githubToken}`],
    ['GitHub sample token', 'ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'],
    ['Stripe test key', 'sk_test_51NzQ8rHv2Lk7TmWc3XpJd9Ye'],
    ['Stripe publishable key', 'pk_live_51NzQ8rHv2Lk7TmWc3XpJd9Ye'],
    ['Stripe key too short', 'sk_live_51NzQ8rHv2Lk7TmWc3Xp'],
    ['Slack sample token', 'SLACK_BOT_TOKEN=xoxb-your-bot-token'],
    ['Slack token with placeholder', 'xoxb-0000000000-XXXXXXXXXXXXXXXXXXXXXXXX'],
    ['Slack token without its secret part', 'xoxb-2418653027-59072'],
    ['Slack sample webhook', 'https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX'],
    ['Slack webhook without its secret', 'https://hooks.slack.com/services/T03KQ8ZP2/B05FGHJ2K9L'],
    ['JWT without a signature', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyXzhmMTRlNDVmIn0.'],
    ['JWT with a short signature', `${jwt.slice(0, jwt.lastIndexOf('.'))}.CHqLlPINoVur`],
    ['base64 JSON without segments', 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9'],
    ['JWT inside a longer base64 run', `QUJD${jwt}`],
  ])('ignores %s', (_case, text) => {
    expect(tokenValues(text)).toEqual([]);
  });

  it('finds every token on a line in order of kind', () => {
    const line = `a = "${jwt}"; b = "${githubToken}"; c = "${jwt}"`;
    expect(tokenValues(line)).toEqual([
      ['github-token', githubToken],
      ['jwt', jwt],
      ['jwt', jwt],
    ]);
  });
});

function urlPasswords(text: string): string[] {
  return runSteps(findConnectionUrlPasswordSteps(text)).map((span) =>
    text.slice(span.start, span.end),
  );
}

describe('findConnectionUrlPasswordSteps', () => {
  const password = fakeSecrets.databasePassword;

  it.each([
    `postgres://admin:${password}@db.internal/orders`,
    `DATABASE_URL="postgresql://admin:${password}@db.internal:5432/orders?sslmode=require"`,
    `mysql://root:${password}@127.0.0.1:3306/app`,
    `jdbc:mysql://app:${password}@db/app`,
    `mongodb://app:${password}@mongo-0,mongo-1/app?replicaSet=rs0`,
    `MONGO_URL=mongodb+srv://app:${password}@cluster0.ab1cd.mongodb.net/app`,
    `REDIS_URL=redis://:${password}@cache:6379/0`,
    `rediss://default:${password}@cache.example.net:6380`,
    `amqp://worker:${password}@rabbit:5672/%2f`,
    `fetch('https://deploy:${password}@registry.internal/v2/')`,
  ])('flags the password of %s', (text) => {
    expect(urlPasswords(text)).toEqual([password]);
  });

  it('reads a password with @ up to the last @ before the host', () => {
    expect(urlPasswords('postgres://app:p@ss@w0rd-9@db/app')).toEqual(['p@ss@w0rd-9']);
    expect(urlPasswords('postgres://app:pw:with:colons@db/app')).toEqual(['pw:with:colons']);
  });

  it.each([
    ['postgres://u:pa/ss?w#rd@db:5432/app', 'pa/ss?w#rd'],
    ['DATABASE_URL="postgres://app:Xk29/dLq8@db/app"', 'Xk29/dLq8'],
    ['redis://:Xk29dLq8#1@cache:6379/0', 'Xk29dLq8#1'],
    ['mongodb://app:Xk29?dLq8@db/app?authSource=admin', 'Xk29?dLq8'],
    ['https://deploy:Xk2/9dLq8@registry.internal/@scope/pkg', 'Xk2/9dLq8'],
  ])('reads a password with an unencoded /, ? or # in %s', (text, value) => {
    expect(urlPasswords(text)).toEqual([value]);
  });

  it('prefers a password without / before the host to one with /', () => {
    const text = 'https://deploy:Xk29dLq8@registry.internal/@scope/pkg@1.0.0';
    expect(urlPasswords(text)).toEqual(['Xk29dLq8']);
  });

  it.each([
    ['postgres://app:p@ss/w0rd-long@db/app', 'p@ss/w0rd-long'],
    ['DATABASE_URL=postgres://app:p@ss/w:rd9999secret@db/app', 'p@ss/w:rd9999secret'],
    ['postgres://app:s3cr/et:x99999@db/app', 's3cr/et:x99999'],
    ['postgres://app:s3cr#et@ab9999@db/app', 's3cr#et@ab9999'],
  ])('reads a password with @ and / or : up to the last @ in %s', (text, value) => {
    expect(urlPasswords(text)).toEqual([value]);
  });

  it('masks a path with @ after a URL password up to that @', () => {
    // NOTE: such a path looks the same as a password with `@` and `/`.
    expect(urlPasswords('https://u:pw123456@host/users/a@b.org')).toEqual([
      'pw123456@host/users/a',
    ]);
  });

  it.each([
    'http://localhost:3000/users/a@b.org',
    'see mailto:a@b.org or https://x.org/u/a@b.org',
    'https://x.org/u/@me?from=a@b.org',
  ])('reads no password in %s', (text) => {
    expect(urlPasswords(text)).toEqual([]);
  });

  it('flags each URL of a line', () => {
    const line = 'from postgres://a:Xk29dLq83mZ@h1/db to postgres://b:Qv71pRt40nW@h2/db';
    expect(urlPasswords(line)).toEqual(['Xk29dLq83mZ', 'Qv71pRt40nW']);
  });

  it.each([
    'postgres://user:password@localhost/db',
    'postgres://USER:PASSWORD@HOST:5432/DATABASE',
    'postgres://app:db_password@localhost/db',
    'postgres://app:pass@localhost/db',
    'postgres://app:${DB_PASSWORD}@localhost/db',
    'postgres://app:$DB_PASSWORD@localhost/db',
    'postgres://app:$(DB_PASSWORD)@localhost/db',
    'postgres://app:{password}@localhost/db',
    'postgres://app:%(password)s@localhost/db',
    'postgres://app:{{ db_password }}@localhost/db',
    'mongodb+srv://<username>:<password>@cluster0.mongodb.net/app',
    'postgres://app:changeme@localhost/db',
    'postgres://app:your_password_here@localhost/db',
    'postgres://app:********@localhost/db',
    'postgres://postgres:postgres@localhost:5432/postgres',
    'amqp://guest:guest@localhost:5672',
    'redis://:short@cache',
    'postgres://app@localhost/db',
    'postgres://app:@localhost/db',
    'http://example.com:8080/users/@me',
    'ssh://git@github.com:22/owner/repo.git',
    'git@github.com:owner/repo.git',
    'see https://docs.example.com/a:b@c for more',
    'http://localhost:3000/users/someone@example.org',
    'https://registry.internal:443/@scope/pkg',
    'http://host:8080?next=/a@b',
    'postgres://app:${DB_PASSWORD}/x@localhost/db',
    'see http://a:b/c@d and http://e:f/g@h',
  ])('ignores %s', (text) => {
    expect(urlPasswords(text)).toEqual([]);
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

/** Returns `count` spans from `start` to `end`, each `period` characters after the one before. */
function repeatedSpans(count: number, period: number, start: number, end: number): number[][] {
  return Array.from({ length: count }, (_, index) => [start + index * period, end + index * period]);
}

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

  it('masks every secret of every kind on a line', () => {
    const { githubToken, stripeSecretKey, slackBotToken, jwt, databasePassword } = fakeSecrets;
    const cases: [string, string][] = [
      [
        `const a = "AKIAIOSFODNN7EXAMPLQ"; const b = "${githubToken}";`,
        'const a = "AKIA************MPLQ"; const b = "ghp_********************************ynca";',
      ],
      [
        `{ api_key: "${stripeSecretKey}", other: "${stripeSecretKey.replace('51N', '62P')}" }`,
        '{ api_key: "sk_l*************************d9Ye", other: "sk_l*************************d9Ye" }',
      ],
      [
        `notify(${slackBotToken}, "postgres://admin:${databasePassword}@db/app")`,
        'notify(xoxb**********************************************6EsJ, ' +
          '"postgres://admin:S3c*********rd!@db/app")',
      ],
      [`auth = "Bearer ${jwt}"`, `auth = "Bearer eyJh${'*'.repeat(jwt.length - 8)}R8GI"`],
      [
        `hook("https://hooks.slack.com/services/${fakeSecrets.slackWebhookPath}")`,
        `hook("https://hooks.slack.com/services/T03K${'*'.repeat(38)}9HsD")`,
      ],
    ];
    for (const [line, masked] of cases) {
      expect(maskSecrets(line, 'src/config.ts')).toBe(masked);
    }
  });

  it.each([
    ['eyJ', 'eyJ'.repeat(350_000), []],
    ['JWT segments', 'eyJhbGciOi.'.repeat(100_000), []],
    // `_` belongs to GitHub tokens, so the first `ghp_` starts a token that runs to the end.
    ['GitHub prefixes', 'ghp_'.repeat(260_000), [[0, 1_040_000]]],
    ['GitHub prefixes after letters', 'aghp_'.repeat(210_000), []],
    // The pattern reads `xoxb-1-` and the rest of the line as one token.
    ['Slack prefixes', 'xoxb-1-'.repeat(150_000), [[0, 1_050_000]]],
    ['Slack webhook prefixes', 'hooks.slack.com/services/T'.repeat(40_000), []],
    ['URL schemes', 'a://'.repeat(260_000), []],
    // Each URL but the last has a short password, `c@`, that only the excerpt masks.
    ['URL user information', 'a://b:c@@'.repeat(115_000), repeatedSpans(115_000 - 1, 9, 6, 8)],
    ['URL password without @', `postgres://app:${'p:'.repeat(520_000)}`, []],
    ['URL passwords with / and no @', 'a://b:c/d'.repeat(115_000), []],
    ['a URL password with / and no @', `a://b:c/${'d'.repeat(1_040_000)}`, []],
    ['short URL passwords with /', 'a://b:c/d@'.repeat(104_000), repeatedSpans(104_000 - 1, 10, 6, 9)],
    ['URL passwords with /@ and no host', 'a://b:c/@'.repeat(115_000), []],
    ['a URL password with /@ and no host', `a://b:c${'/@'.repeat(520_000)}`, []],
    ['quoted bearer prefixes', '"Bearer '.repeat(130_000), []],
    ['spaces after a bearer prefix', `"Bearer${' '.repeat(1_040_000)}$`, []],
    ['spaces before a bearer prefix', `Authorization:${' '.repeat(1_040_000)}Bearer a1$`, []],
    ['short bearer tokens', '"Bearer a1'.repeat(104_000), []],
    ['a bearer token before a template', `"Bearer ${'a1'.repeat(520_000)}$`, []],
    ['query credential prefixes', '&passwor'.repeat(130_000), []],
    ['query credential names', '?api_key'.repeat(130_000), []],
    ['placeholder query values', '&token=$T'.repeat(115_000), []],
    ['authorization bearer tokens before a template', 'Authorization:Bearer a1$'.repeat(44_000), []],
    ['a long bearer token before a template', `Authorization: Bearer ${'a1'.repeat(520_000)}{`, []],
    ['URL passwords with : and no @', 'a://b:c:d/'.repeat(104_000), []],
    ['a URL password of many @', `a://b:${'c@'.repeat(520_000)}`, [[6, 1_040_003]]],
  ])('scans a 1 MB line of %s in linear time', (_case, line, expected) => {
    const startedAt = performance.now();
    const spans = findSecretSpans(line, 'src/data.ts');
    const elapsedMs = performance.now() - startedAt;

    expect(spans.map((span) => [span.start, span.end])).toEqual(expected);
    // Linear matching takes well under a second; the bound leaves room for slow machines.
    expect(elapsedMs).toBeLessThan(5_000);
  });

  it('masks bearer tokens, query credentials and URL passwords with /', () => {
    const cases: [string, string][] = [
      [
        'headers: { Authorization: "Bearer a8Fk29dLq83mZpQ7" },',
        'headers: { Authorization: "Bearer a8Fk********ZpQ7" },',
      ],
      [
        'curl -H "Authorization: Bearer a8Fk29dLq83mZpQ7" https://api.internal',
        'curl -H "Authorization: Bearer a8Fk********ZpQ7" https://api.internal',
      ],
      [
        'fetch("https://h/x?user=a&password=hunter2")',
        'fetch("https://h/x?user=a&password=h*****2")',
      ],
      ['https://h/x?token=abc&page=2', 'https://h/x?token=***&page=2'],
      [
        'https://h/oauth?client_id=app&client_secret=a8Fk29dLq83mZ#top',
        'https://h/oauth?client_id=app&client_secret=a8F*******3mZ#top',
      ],
      ['Server=db;Uid=app;Pwd=a8Fk29dLq83mZ;', 'Server=db;Uid=app;Pwd=a8F*******3mZ;'],
      [
        'DATABASE_URL="postgres://u:pa/ss?w#rd@db:5432/app"',
        'DATABASE_URL="postgres://u:pa******rd@db:5432/app"',
      ],
      ['token: "Bearer a8Fk29dLq83mZpQ7"', 'token: "Bear***************ZpQ7"'],
    ];
    for (const [line, masked] of cases) {
      expect(maskSecrets(line, 'src/config.ts')).toBe(masked);
    }
  });

  // A line and the same line with its secrets masked.
  type MaskCase = [string, string];

  function expectMasked(cases: readonly MaskCase[]): void {
    for (const [line, masked] of cases) {
      expect(maskSecrets(line, 'src/config.ts')).toBe(masked);
    }
  }

  it('masks bearer tokens that end at any character outside b64token', () => {
    const cases: MaskCase[] = [
      [
        'headers: {Authorization: Bearer ghx9f8e7d6c5b4a3z2y1x0w}  # TODO rotate this',
        'headers: {Authorization: Bearer ghx9***************1x0w}  # TODO rotate this',
      ],
      [
        'print("curl -H Authorization:Bearer ghx9f8e7d6c5b4a3z2y1x0w|jq")',
        'print("curl -H Authorization:Bearer ghx9***************1x0w|jq")',
      ],
      [
        'Authorization=Bearer abc123def456ghi789&x=1',
        'Authorization=Bearer abc1**********i789&x=1',
      ],
      [
        '[Authorization: Bearer abc123def456ghi789]',
        '[Authorization: Bearer abc1**********i789]',
      ],
      ['Authorization: Bearer abc123def456ghi789>', 'Authorization: Bearer abc1**********i789>'],
      ['Authorization: Bearer abc123def456ghi789:', 'Authorization: Bearer abc1**********i789:'],
    ];
    expectMasked(cases);
  });

  it('masks URL passwords with @ and / or :', () => {
    const cases: MaskCase[] = [
      [
        'DATABASE_URL=postgres://app:p@ss/w:rd9999secret@db/app',
        'DATABASE_URL=postgres://app:p@ss***********cret@db/app',
      ],
      ['postgres://app:s3cr/et:x99999@db/app', 'postgres://app:s3c********999@db/app'],
      ['postgres://app:s3cr#et@ab9999@db/app', 'postgres://app:s3c********999@db/app'],
    ];
    expectMasked(cases);
  });

  it('masks more credential query parameters', () => {
    const cases: MaskCase[] = [
      [
        'https://maps.googleapis.com/api?key=AIzaSyA1234567890abcdefghijkl&x=1',
        'https://maps.googleapis.com/api?key=AIza*********************ijkl&x=1',
      ],
      ['/cb?refresh_token=r9Xk29dLq8', '/cb?refresh_token=r9******q8'],
      ['/cb?id_token=r9Xk29dLq8', '/cb?id_token=r9******q8'],
      ['/cb?access-token=r9Xk29dLq8', '/cb?access-token=r9******q8'],
      ['/cb?api-key=r9Xk29dLq8', '/cb?api-key=r9******q8'],
      ['/cb?client-secret=r9Xk29dLq8', '/cb?client-secret=r9******q8'],
      ['/cb?user=a&auth=r9Xk29dLq8', '/cb?user=a&auth=r9******q8'],
    ];
    expectMasked(cases);
  });

  it('masks short URL passwords that no finding reports', () => {
    const cases: MaskCase[] = [
      [
        'https://user:pa55@host.example/path/@scope/pkg?x=a@b',
        'https://user:p**5@host.example/path/@scope/pkg?x=a@b',
      ],
      ['https://u:p/a@ss@host.example/', 'https://u:p****s@host.example/'],
      ['redis://:hunter2@cache:6379/0', 'redis://:h*****2@cache:6379/0'],
    ];
    expectMasked(cases);
    expect(findSecretSpans('https://u:p/a@ss@host.example/', 'src/config.ts')).toHaveLength(1);
    expect(urlPasswords('https://u:p/a@ss@host.example/')).toEqual([]);
  });

  it('masks a URL password before a path with @', () => {
    const cases: MaskCase[] = [
      [
        'https://user:pa55word@host.example/path/@scope/pkg?x=a@b',
        'https://user:pa****rd@host.example/path/@scope/pkg?x=a@b',
      ],
      [
        'https://u:p/a@ss1234@host.example/@scope/pkg@1.0.0',
        'https://u:p/******34@host.example/@scope/pkg@1.0.0',
      ],
    ];
    expectMasked(cases);
  });

  it('masks a URL password that contains /@', () => {
    const cases: MaskCase[] = [
      ['https://u:ab/@cd1234@host.internal/', 'https://u:ab******34@host.internal/'],
      ['https://u:ab/@cd@host.internal/', 'https://u:a****d@host.internal/'],
    ];
    expectMasked(cases);
  });

  it('masks quoted bearer tokens that words follow', () => {
    const cases: MaskCase[] = [
      [
        '"Authorization: Bearer abc123def456 extra"',
        '"Authorization: Bearer abc******456 extra"',
      ],
      ["'Bearer abc123def456' is the token", "'Bearer abc******456' is the token"],
      ["x = 'Bearer abc123def456 is the token'", "x = 'Bearer abc******456 is the token'"],
      ['log("Bearer a8Fk29dLq83mZpQ7 sent")', 'log("Bearer a8Fk********ZpQ7 sent")'],
    ];
    expectMasked(cases);
  });

  it('masks a query value in a regular expression literal', () => {
    // NOTE: `/a?token=b/` has the form of a URL path and query, so its value stays masked.
    expect(maskSecrets('const re = /a?token=b/;', 'src/config.ts')).toBe('const re = /a?token=**;');
  });

  it('leaves placeholders in bearer values and queries unchanged', () => {
    const lines = [
      'const header = `Bearer ${token}`;',
      'const header = "Bearer ACCESS_TOKEN";',
      'fetch(`https://h/x?token=${token}&password={password}`)',
      'url = "https://h/x?password=PASSWORD&token=TOKEN&secret=xxx"',
      'url = "https://h/x?page_token=abc123"',
      'http://localhost:3000/users/someone@example.org',
      'url = "https://h/x?page_token=abc123&csrf_token=def456"',
      'printf("?secret=%d&token=%-8s")',
      'throw new Error("Bearer token123 missing");',
      'throw new Error("Bearer token_12345678 expired");',
      '// Bearer token123 is used',
      'Authorization: Bearer ${token}',
      'Authorization: Bearer %s',
      'Authorization: Bearer a1b2c3d4e5{token}',
    ];
    for (const line of lines) {
      expect(maskSecrets(line, 'src/config.ts')).toBe(line);
    }
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
