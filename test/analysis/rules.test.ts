import { describe, expect, it } from 'vitest';
import type { AddedLine } from '../../src/analysis/patch.ts';
import { rules, runRules, type RuleId } from '../../src/analysis/rules.ts';
import { findSecretSpans } from '../../src/analysis/secrets.ts';
import { findingKind } from '../../src/llm/prompt.ts';
import { fakeSecrets } from '../helpers/fake-secrets.ts';

/** Numbers the texts as consecutive added lines, starting at `firstLine`. */
function addedFrom(firstLine: number, texts: string[]): AddedLine[] {
  return texts.map((text, index) => ({ line: firstLine + index, text }));
}

function findingsOf(ruleId: RuleId, path: string, lines: AddedLine[]) {
  return runRules(path, lines).filter((finding) => finding.ruleId === ruleId);
}

function flaggedLines(ruleId: RuleId, path: string, texts: string[]): number[] {
  return findingsOf(ruleId, path, addedFrom(1, texts)).map((finding) => finding.startLine);
}

const AWS_KEY = 'AKIAZ7QW3ERT5YUI8OPA';

describe('rules', () => {
  it('lists every rule id with its severity', () => {
    expect(Object.fromEntries(rules.map((rule) => [rule.id, rule.severity]))).toEqual({
      'secret/aws-access-key-id': 'error',
      'secret/github-token': 'error',
      'secret/stripe-secret-key': 'error',
      'secret/slack-token': 'error',
      'secret/slack-webhook-url': 'error',
      'secret/jwt': 'error',
      'secret/connection-url-password': 'error',
      'secret/private-key': 'error',
      'secret/hardcoded-credential': 'error',
      'debug/console-log': 'warning',
      'debug/debugger': 'warning',
      'debug/python-print': 'warning',
      'merge-conflict-marker': 'error',
      'todo-comment': 'notice',
    });
  });

  it('gives every secret rule the secret fix guidance', () => {
    for (const rule of rules.filter((rule) => rule.id.startsWith('secret/'))) {
      expect(findingKind(rule.id), rule.id).toBe('secret');
    }
  });
});

/** Returns the single finding of `ruleId` on `text`, added as line 4 of `path`. */
function onlyFinding(ruleId: RuleId, path: string, text: string) {
  const findings = findingsOf(ruleId, path, addedFrom(4, [text]));
  expect(findings).toHaveLength(1);
  return findings[0]!;
}

describe('secrets found by their format', () => {
  const { githubToken, stripeSecretKey, slackBotToken, slackWebhookPath, jwt } = fakeSecrets;
  const { databasePassword } = fakeSecrets;

  it.each([
    [
      'secret/github-token',
      `const b = "${githubToken}";`,
      'const b = "ghp_********************************ynca";',
      'GitHub token',
    ],
    [
      'secret/stripe-secret-key',
      `stripe.setKey("${stripeSecretKey}")`,
      'stripe.setKey("sk_l*************************d9Ye")',
      'Stripe live secret key',
    ],
    [
      'secret/slack-token',
      `  bot: ${slackBotToken}`,
      'bot: xoxb**********************************************6EsJ',
      'Slack token',
    ],
    [
      'secret/slack-webhook-url',
      `post("https://hooks.slack.com/services/${slackWebhookPath}", body)`,
      `post("https://hooks.slack.com/services/T03K${'*'.repeat(38)}9HsD", body)`,
      'Slack webhook URL',
    ],
    [
      'secret/jwt',
      `headers.Authorization = "Bearer ${jwt}";`,
      `headers.Authorization = "Bearer eyJh${'*'.repeat(jwt.length - 8)}R8GI";`,
      'JSON Web Token',
    ],
    [
      'secret/connection-url-password',
      `const url = "postgres://admin:${databasePassword}@host/db";`,
      'const url = "postgres://admin:S3c*********rd!@host/db";',
      'contains a password',
    ],
  ] as const)('%s reports the line with the secret masked', (ruleId, line, excerpt, named) => {
    const finding = onlyFinding(ruleId, 'src/notify.ts', line);

    expect(finding).toEqual({
      ruleId,
      severity: 'error',
      message: expect.stringContaining(named),
      startLine: 4,
      endLine: 4,
      excerpt,
    });
    expect(finding.message).toMatch(/, so .* instead\.$/);
  });

  it('reports secrets in .env files and YAML', () => {
    const texts = [
      `SLACK_WEBHOOK_URL=https://hooks.slack.com/services/${slackWebhookPath}`,
      `  url: mongodb+srv://app:${databasePassword}@cluster0.ab1cd.mongodb.net/app`,
    ];
    expect(flaggedLines('secret/slack-webhook-url', '.env', texts)).toEqual([1]);
    expect(flaggedLines('secret/connection-url-password', 'deploy/values.yml', texts)).toEqual([2]);
  });

  it('reports a credential once, under the rule of its format', () => {
    const texts = [
      `GITHUB_TOKEN="${githubToken}"`,
      `token: "Bearer ${jwt}"`,
      `aws_secret_key = "${AWS_KEY}"`,
      `curl -H "Authorization: Bearer ${githubToken}"`,
      `URL=https://api.internal/v1?access_token=${jwt}`,
    ];
    const findings = runRules('.env', addedFrom(1, texts));
    expect(findings.map((finding) => [finding.startLine, finding.ruleId])).toEqual([
      [3, 'secret/aws-access-key-id'],
      [1, 'secret/github-token'],
      [4, 'secret/github-token'],
      [2, 'secret/jwt'],
      [5, 'secret/jwt'],
    ]);
  });

  it('reports a credential that shares a line with a token', () => {
    const line = `{ token: "${githubToken}", password: "hunter2hunter2" }`;
    const findings = runRules('a.ts', addedFrom(1, [line]));
    const excerpt = '{ token: "ghp_********************************ynca", password: "hun********er2" }';
    expect(findings).toEqual([
      expect.objectContaining({ ruleId: 'secret/github-token', excerpt }),
      expect.objectContaining({ ruleId: 'secret/hardcoded-credential', excerpt }),
    ]);
  });
});

describe('excerpts', () => {
  const { githubToken, slackBotToken, jwt, databasePassword } = fakeSecrets;

  it('mask the secrets of every rule', () => {
    const cases = [
      {
        line: `const a = "AKIAIOSFODNN7EXAMPLQ"; const b = "${githubToken}";`,
        excerpt: 'const a = "AKIA************MPLQ"; const b = "ghp_********************************ynca";',
        ruleIds: ['secret/aws-access-key-id', 'secret/github-token'],
      },
      {
        line: 'cfg = { api_key: "sk_live_51NzQ8rHv2Lk7TmWc3XpJd9Ye", other: "sk_live_62PzQ8rHv2Lk7TmWc3XpJd9Ye" }',
        excerpt:
          'cfg = { api_key: "sk_l*************************d9Ye", other: "sk_l*************************d9Ye" }',
        ruleIds: ['secret/stripe-secret-key'],
      },
      {
        line: `console.log("${slackBotToken}", "redis://:${databasePassword}@cache") // TODO: ${githubToken}`,
        excerpt:
          'console.log("xoxb**********************************************6EsJ", ' +
          '"redis://:S3c*********rd!@cache") // TODO: ghp_********************************ynca',
        ruleIds: [
          'debug/console-log',
          'secret/connection-url-password',
          'secret/github-token',
          'secret/slack-token',
          'todo-comment',
        ],
      },
      {
        line: `const auth = "Bearer ${jwt}"; // TODO: renew`,
        excerpt: `const auth = "Bearer eyJh${'*'.repeat(jwt.length - 8)}R8GI"; // TODO: renew`,
        ruleIds: ['secret/jwt', 'todo-comment'],
      },
      {
        line: `<<<<<<< https://ci:${databasePassword}@git.internal/app.git`,
        excerpt: '<<<<<<< https://ci:S3c*********rd!@git.internal/app.git',
        ruleIds: ['merge-conflict-marker', 'secret/connection-url-password'],
      },
    ];
    for (const { line, excerpt, ruleIds } of cases) {
      const findings = runRules('src/app.ts', addedFrom(1, [line]));
      expect(findings.map((finding) => finding.ruleId).sort(), line).toEqual(ruleIds);
      for (const finding of findings) {
        expect(finding.excerpt, finding.ruleId).toBe(excerpt);
      }
    }
  });

  it('show no secret that a rule reports', () => {
    const { githubFineGrainedToken, stripeSecretKey, slackWebhookPath } = fakeSecrets;
    const line = [
      `AKIAZ7QW3ERT5YUI8OPA ${githubToken} ${githubFineGrainedToken} ${stripeSecretKey}`,
      `${slackBotToken} https://hooks.slack.com/services/${slackWebhookPath} Bearer ${jwt}`,
      `amqp://worker:${databasePassword}@rabbit password = "hunter2hunter2"`,
      '"k": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n"',
    ].join(' ');
    const secrets = findSecretSpans(line, 'src/app.ts').map((span) =>
      line.slice(span.start, span.end),
    );
    expect(secrets).toHaveLength(10);

    const findings = runRules('src/app.ts', addedFrom(1, [line]));
    expect(findings.map((finding) => finding.ruleId).sort()).toEqual([
      'secret/aws-access-key-id',
      'secret/connection-url-password',
      'secret/github-token',
      'secret/hardcoded-credential',
      'secret/jwt',
      'secret/private-key',
      'secret/slack-token',
      'secret/slack-webhook-url',
      'secret/stripe-secret-key',
    ]);
    for (const finding of findings) {
      for (const secret of secrets) {
        // Four characters at each end stay, so no eight of the secret's middle may show.
        expect(finding.excerpt, finding.ruleId).not.toContain(secret.slice(4, 12));
      }
    }
  });
});

describe('secret/aws-access-key-id', () => {
  it('reports the key with a masked excerpt', () => {
    const findings = findingsOf(
      'secret/aws-access-key-id',
      'deploy/config.yml',
      addedFrom(7, ['region: eu-west-1', `  access_key_id: ${AWS_KEY}`]),
    );
    expect(findings).toEqual([
      {
        ruleId: 'secret/aws-access-key-id',
        severity: 'error',
        message: expect.stringContaining('AWS access key ID'),
        startLine: 8,
        endLine: 8,
        excerpt: 'access_key_id: AKIA************8OPA',
      },
    ]);
    expect(findings[0]!.message).not.toContain(AWS_KEY);
  });

  it('ignores the AWS documentation sample key', () => {
    expect(flaggedLines('secret/aws-access-key-id', 'README.md', ['AKIAIOSFODNN7EXAMPLE'])).toEqual(
      [],
    );
  });
});

describe('secret/private-key', () => {
  const body = [
    'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun',
    'VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK',
  ];
  const pem = ['-----BEGIN RSA PRIVATE KEY-----', ...body, '-----END RSA PRIVATE KEY-----'];

  it('reports one finding per block', () => {
    const findings = findingsOf('secret/private-key', 'certs/server.key', addedFrom(3, pem));
    expect(findings).toEqual([
      {
        ruleId: 'secret/private-key',
        severity: 'error',
        message: expect.stringContaining('private key'),
        startLine: 3,
        endLine: 6,
        excerpt: '-----BEGIN RSA PRIVATE KEY-----',
      },
    ]);
  });

  it('ends at the BEGIN line without an added END line', () => {
    const findings = findingsOf('secret/private-key', 'id_rsa', addedFrom(1, pem.slice(0, 3)));
    expect(findings.map((finding) => [finding.startLine, finding.endLine])).toEqual([[1, 1]]);
  });

  it('pairs BEGIN and END markers of the same label', () => {
    const texts = [
      '-----BEGIN OPENSSH PRIVATE KEY-----',
      'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
      '-----END RSA PRIVATE KEY-----',
      '-----END OPENSSH PRIVATE KEY-----',
      '-----BEGIN PGP PRIVATE KEY BLOCK-----',
      'lQOYBGQ5d1IBCADJ3w5Ri6nWbqYJ3fHb3KSfz1qw8tKD2PyHrP1bDQ3L9MIsL6Qy',
      '-----END PGP PRIVATE KEY BLOCK-----',
      '-----BEGIN ENCRYPTED PRIVATE KEY-----',
    ];
    const findings = findingsOf('secret/private-key', 'keys.txt', addedFrom(1, texts));
    expect(findings.map((finding) => [finding.startLine, finding.endLine])).toEqual([
      [1, 4],
      [5, 7],
      [8, 8],
    ]);
  });

  it('reports a key inside a JSON string with its body masked', () => {
    const keyBody = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7';
    const pemInJson = `-----BEGIN PRIVATE KEY-----\\n${keyBody}\\n-----END PRIVATE KEY-----\\n`;
    const line = `  "private_key": "${pemInJson}",`;
    const [finding] = findingsOf('secret/private-key', 'gcp.json', addedFrom(5, [line]));
    expect(finding?.startLine).toBe(5);
    expect(finding?.endLine).toBe(5);
    expect(finding?.excerpt).toMatch(/^"private_key": "-----BEGIN PRIVATE KEY-----\\nMI\*+/);
    expect(finding?.excerpt).not.toContain(keyBody);
  });

  it('keeps key material away from other rules', () => {
    const texts = [
      '-----BEGIN PRIVATE KEY-----',
      '# TODO: AKIAZ7QW3ERT5YUI8OPA',
      '-----END PRIVATE KEY-----',
    ];
    expect(runRules('notes.txt', addedFrom(1, texts)).map((finding) => finding.ruleId)).toEqual([
      'secret/private-key',
    ]);
  });

  it('ignores public keys and certificates', () => {
    const texts = ['-----BEGIN PUBLIC KEY-----', '-----BEGIN CERTIFICATE-----'];
    expect(flaggedLines('secret/private-key', 'ca.pem', texts)).toEqual([]);
  });
});

describe('secret/hardcoded-credential', () => {
  it('reports the line with the value masked', () => {
    const findings = findingsOf(
      'secret/hardcoded-credential',
      'src/client.ts',
      addedFrom(12, ["const clientSecret = 'cs_live_51HqLyjWDarjtT1zdp7dc';"]),
    );
    expect(findings).toEqual([
      {
        ruleId: 'secret/hardcoded-credential',
        severity: 'error',
        message: expect.stringContaining('hard-coded'),
        startLine: 12,
        endLine: 12,
        excerpt: "const clientSecret = 'cs_l*********************p7dc';",
      },
    ]);
  });

  it('reports one finding for two credentials on a line', () => {
    const line = 'db: { password: "pw_44445555666", token: "tok_1111222233" }';
    const findings = findingsOf('secret/hardcoded-credential', 'a.js', addedFrom(1, [line]));
    expect(findings).toHaveLength(1);
    const excerpt = 'db: { password: "pw_********666", token: "tok********233" }';
    expect(findings[0]!.excerpt).toBe(excerpt);
  });

  it('flags unquoted values in dotenv files only', () => {
    const texts = ['# local settings', 'STRIPE_API_KEY=sk_test_51HqLyjWDar', 'DEBUG=true'];
    expect(flaggedLines('secret/hardcoded-credential', '.env.local', texts)).toEqual([2]);
    expect(flaggedLines('secret/hardcoded-credential', 'run.sh', texts)).toEqual([]);
  });

  it('reports bearer tokens and query credentials', () => {
    const texts = [
      'const headers = { Authorization: "Bearer a8Fk29dLq83mZpQ7" };',
      'const url = "https://api.internal/v1/items?access_token=a8Fk29dLq83mZ";',
      'const headers = { Authorization: `Bearer ${token}` };',
      'const url = `https://api.internal/v1/items?access_token=${token}`;',
    ];
    const findings = findingsOf('secret/hardcoded-credential', 'src/api.ts', addedFrom(1, texts));
    expect(findings.map((finding) => [finding.startLine, finding.excerpt])).toEqual([
      [1, 'const headers = { Authorization: "Bearer a8Fk********ZpQ7" };'],
      [2, 'const url = "https://api.internal/v1/items?access_token=a8F*******3mZ";'],
    ]);
  });

  it('masks a short query password without reporting it', () => {
    const line = 'console.log("https://h/x?user=a&password=hunter2");';
    const findings = runRules('src/api.ts', addedFrom(1, [line]));
    expect(findings.map((finding) => [finding.ruleId, finding.excerpt])).toEqual([
      ['debug/console-log', 'console.log("https://h/x?user=a&password=h*****2");'],
    ]);
  });

  it('reports a URL password with an unencoded /', () => {
    const line = 'DATABASE_URL=postgres://u:pa/ss?w#rd@db:5432/app';
    const findings = runRules('.env', addedFrom(1, [line]));
    expect(findings.map((finding) => [finding.ruleId, finding.excerpt])).toEqual([
      ['secret/connection-url-password', 'DATABASE_URL=postgres://u:pa******rd@db:5432/app'],
    ]);
  });

  it('ignores placeholders', () => {
    const texts = [
      'API_KEY="your_api_key"',
      'password: "<password>"',
      "token = '${TOKEN}'",
      'password: "changeme"',
      'secret = "example-secret"',
      'apiKey: process.env.API_KEY,',
      'password = settings.db_password',
    ];
    expect(flaggedLines('secret/hardcoded-credential', 'settings.py', texts)).toEqual([]);
  });
});

describe('debug/console-log', () => {
  it('flags console calls in JavaScript-like files', () => {
    const texts = [
      'console.log(user);',
      '  console.debug("state", state);',
      'if (failed) console.trace();',
      'window.console.log(x);',
    ];
    for (const path of ['a.js', 'b.tsx', 'c.mjs', 'd.cts', 'App.vue', 'Page.svelte']) {
      expect(flaggedLines('debug/console-log', path, texts)).toEqual([1, 2, 3, 4]);
    }
  });

  it('names the method in the message', () => {
    const [finding] = findingsOf('debug/console-log', 'a.ts', addedFrom(1, ['console.debug(x)']));
    expect(finding?.message).toContain('console.debug');
    expect(finding?.severity).toBe('warning');
    expect(finding?.excerpt).toBe('console.debug(x)');
  });

  it('ignores comments, strings and other methods', () => {
    const texts = [
      '// console.log(user);',
      ' * console.log(example) in a doc comment',
      '/* console.log(x) */',
      'const hint = "call console.log(x) to debug";',
      'foo(); // console.log(foo)',
      'console.error(err);',
      'logger.log("x");',
      'myconsole.log(x);',
    ];
    expect(flaggedLines('debug/console-log', 'a.ts', texts)).toEqual([]);
  });

  it('ignores other file types', () => {
    const texts = ['console.log(x)'];
    for (const path of ['script.py', 'README.md', 'main.go', 'a.json']) {
      expect(flaggedLines('debug/console-log', path, texts)).toEqual([]);
    }
  });
});

describe('debug/debugger', () => {
  it('flags debugger statements', () => {
    const texts = [
      'debugger;',
      '  debugger',
      'if (x) debugger;',
      'debugger // stop here',
      '{ debugger }',
    ];
    expect(flaggedLines('debug/debugger', 'src/app.tsx', texts)).toEqual([1, 2, 3, 4, 5]);
  });

  it('ignores mentions that are not statements', () => {
    const texts = [
      '// debugger;',
      'options.debugger;',
      'const label = "debugger;";',
      'const debuggerEnabled = true;',
      'startDebugger();',
    ];
    expect(flaggedLines('debug/debugger', 'src/app.ts', texts)).toEqual([]);
  });

  it('ignores other file types', () => {
    expect(flaggedLines('debug/debugger', 'notes.txt', ['debugger;'])).toEqual([]);
  });
});

describe('debug/python-print', () => {
  it('flags print statements', () => {
    const texts = [
      'print(result)',
      '    print("value:", value)',
      'x = 1; print(x)',
      'if x: print(x)',
    ];
    expect(flaggedLines('debug/python-print', 'app/main.py', texts)).toEqual([1, 2, 3, 4]);
  });

  it('points the excerpt at the call', () => {
    const [finding] = findingsOf('debug/python-print', 'a.py', addedFrom(4, ['    print(x)']));
    expect(finding).toMatchObject({ startLine: 4, endLine: 4, excerpt: 'print(x)' });
  });

  it('ignores pprint, methods, comments and strings', () => {
    const texts = [
      'pprint(data)',
      'printer.print(page)',
      'self.print(x)',
      '# print(debug)',
      'x = 1  # print(x)',
      'message = "print(x)"',
      'def print_report(rows):',
      'blueprint(x)',
    ];
    expect(flaggedLines('debug/python-print', 'a.py', texts)).toEqual([]);
  });

  it('ignores other file types', () => {
    expect(flaggedLines('debug/python-print', 'a.js', ['print(x)'])).toEqual([]);
  });
});

describe('merge-conflict-marker', () => {
  const conflict = [
    '<<<<<<< HEAD',
    'const retries = 3;',
    '=======',
    'const retries = 5;',
    '>>>>>>> feature/retries',
  ];

  it('groups one conflict into one finding', () => {
    const findings = findingsOf('merge-conflict-marker', 'src/a.ts', addedFrom(10, conflict));
    expect(findings).toEqual([
      {
        ruleId: 'merge-conflict-marker',
        severity: 'error',
        message: expect.stringContaining('conflict'),
        startLine: 10,
        endLine: 14,
        excerpt: '<<<<<<< HEAD',
      },
    ]);
  });

  it('groups a diff3 conflict', () => {
    const texts = ['<<<<<<< ours', 'a', '||||||| base', 'b', '=======', 'c', '>>>>>>> theirs'];
    const findings = findingsOf('merge-conflict-marker', 'x.c', addedFrom(1, texts));
    expect(findings.map((finding) => [finding.startLine, finding.endLine])).toEqual([[1, 7]]);
  });

  it('reports markers on their own when the conflict is not all added', () => {
    // Line 12 is a context line, so the added lines are not consecutive.
    const lines = [
      { line: 10, text: '<<<<<<< HEAD' },
      { line: 11, text: 'const retries = 3;' },
      { line: 13, text: '=======' },
      { line: 15, text: '>>>>>>> main' },
    ];
    const findings = findingsOf('merge-conflict-marker', 'src/a.ts', lines);
    expect(findings.map((finding) => [finding.startLine, finding.endLine])).toEqual([
      [10, 10],
      [13, 13],
      [15, 15],
    ]);
  });

  it('ignores a lone separator in prose files', () => {
    const texts = ['Install', '=======', '', 'Run npm install.'];
    expect(flaggedLines('merge-conflict-marker', 'docs/setup.md', texts)).toEqual([]);
    expect(flaggedLines('merge-conflict-marker', 'src/setup.py', texts)).toEqual([2]);
  });

  it('flags a conflict in prose files', () => {
    const findings = findingsOf('merge-conflict-marker', 'README.md', addedFrom(1, conflict));
    expect(findings.map((finding) => [finding.startLine, finding.endLine])).toEqual([[1, 5]]);
  });

  it('ignores lines that only look similar', () => {
    const texts = [
      '<<<<<<<HEAD',
      '  <<<<<<< HEAD',
      '========',
      '======= ',
      '>>>>>>>',
      'x <<<<<<< y',
      'a >>>>>>> b',
    ];
    expect(flaggedLines('merge-conflict-marker', 'a.ts', texts)).toEqual([]);
  });
});

describe('todo-comment', () => {
  it.each([
    ['// TODO: handle retries', 'a.ts'],
    ['  # FIXME(ana) wrong offset', 'a.py'],
    ['/* TODO remove after migration */', 'a.css'],
    ['<!-- TODO: translate -->', 'index.html'],
    ['-- TODO', 'schema.sql'],
    [' * FIXME: the lock is not released', 'a.java'],
    ['return x; // TODO', 'a.c'],
  ])('flags %s', (text, path) => {
    const findings = findingsOf('todo-comment', path, addedFrom(3, [text]));
    expect(findings.map((finding) => finding.startLine)).toEqual([3]);
    expect(findings[0]!.severity).toBe('notice');
  });

  it('flags a marker after bare markers', () => {
    const text = `${'TODO '.repeat(1000)}x; <!-- FIXME: later`;
    const [finding] = findingsOf('todo-comment', 'a.html', addedFrom(1, [text]));
    expect(finding?.message).toContain('FIXME');
    expect(finding?.excerpt.endsWith('x; <!-- FIXME: later')).toBe(true);
  });

  it('names the marker in the message', () => {
    const [finding] = findingsOf('todo-comment', 'a.py', addedFrom(1, ['# FIXME: off by one']));
    expect(finding?.message).toContain('FIXME');
  });

  it.each([
    ['const TODO_LIST = [];', 'a.ts'],
    ['// todo: lowercase', 'a.ts'],
    ['// TODOS are tracked elsewhere', 'a.ts'],
    ['// see TODO.md', 'a.ts'],
    ['throw new Error("TODO: not implemented");', 'a.ts'],
    ['TODO: write the intro', 'README.md'],
    ['# FIXMEs live in the tracker', 'a.py'],
  ])('ignores %s', (text, path) => {
    expect(flaggedLines('todo-comment', path, [text])).toEqual([]);
  });
});
