import { RequestError } from '@octokit/request-error';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { webhookDeliveries } from '../../src/db/schema/index.ts';
import { redactCredentials } from '../../src/errors/redact-credentials.ts';
import { ApplyUnconfirmedError } from '../../src/apply/apply-rejected-error.ts';
import { safeErrorMessage, toSafeError } from '../../src/errors/safe-error.ts';
import { toJobError } from '../../src/jobs/job-error.ts';
import { UnexpectedGitHubAnswerError } from '../../src/github/github-response.ts';
import { GitHubResponseTooLargeError } from '../../src/github/responses.ts';
import { handleError } from '../../src/web/errors.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';

const secret = 'ghp_S3cretTokenValue0123456789abcdef';

let context: TestContext;

beforeAll(async () => {
  context = await createTestContext();
});

afterAll(async () => {
  await context?.close();
});

/** Inserts the same delivery twice; PostgreSQL's detail for the second names the key. */
async function duplicateKeyError(): Promise<unknown> {
  const row = { deliveryId: secret, event: 'ping' };
  await context.db.insert(webhookDeliveries).values(row).onConflictDoNothing();
  return context.db
    .insert(webhookDeliveries)
    .values(row)
    .catch((error: unknown) => error);
}

describe('toSafeError', () => {
  it('keeps only the cause of a failed query', async () => {
    const error = await duplicateKeyError();
    expect((error as Error).message).toContain(secret);

    const safe = toSafeError(error);

    expect(safe.type).toBe('DrizzleQueryError');
    expect(safe.code).toBe('23505');
    expect(safe.message).toBe(
      'Database query failed: duplicate key value violates unique constraint ' +
        '"webhook_deliveries_pkey"',
    );
    expect(JSON.stringify(safe)).not.toContain(secret);
    expect(JSON.stringify(safe)).not.toContain('insert into');
  });

  it('keeps code, status and cause of other errors', () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
      code: 'ECONNREFUSED',
    });
    const error = Object.assign(new Error('request failed', { cause }), { status: 502 });

    const safe = toSafeError(error);

    expect(safe.type).toBe('Error');
    expect(safe.message).toBe('request failed');
    expect(safe.status).toBe(502);
    expect(safe.cause?.message).toBe('connect ECONNREFUSED 127.0.0.1:1');
    expect(safe.cause?.code).toBe('ECONNREFUSED');
  });

  it('names the request of an invalid GitHub response', () => {
    const error = new UnexpectedGitHubAnswerError(
      'GET',
      '/repos/octo-org/widgets/git/commits/abc',
      'tree: Invalid input: expected object, received undefined',
    );

    const safe = toSafeError(error);

    expect(safe.type).toBe('UnexpectedGitHubAnswerError');
    expect(safe.message).toBe('tree: Invalid input: expected object, received undefined');
    expect(safe.status).toBe(200);
    expect(safe.request).toBe('GET /repos/octo-org/widgets/git/commits/abc');
  });

  it('names the request of a response over the limit', () => {
    const error = new GitHubResponseTooLargeError('GET', '/repos/octo-org/widgets/pulls/7', 200, 1024);

    expect(toSafeError(error).request).toBe('GET /repos/octo-org/widgets/pulls/7');
  });

  it('names the request of a RequestError without headers', () => {
    const url = `https://api.github.com/repos/octo-org/widgets/git/refs/heads%2Ffeature?access_token=${secret}`;
    const error = new RequestError('Server Error', 502, {
      request: { method: 'PATCH', url, headers: { authorization: `token ${secret}` } },
      response: { status: 502, url, headers: {}, data: { message: 'Server Error' } },
    });
    const wrapped = new Error('updating the branch failed', { cause: error });

    const safe = toSafeError(wrapped);

    expect(safe.request).toBeUndefined();
    expect(safe.cause?.type).toBe('HttpError');
    expect(safe.cause?.status).toBe(502);
    expect(safe.cause?.request).toBe('PATCH /repos/octo-org/widgets/git/refs/heads/feature');
    expect(JSON.stringify(safe)).not.toContain(secret);
  });

  it('names the request of an unconfirmed apply', () => {
    const path = `/repos/octo-org/widgets/git/ref/heads/feature?token=${secret}`;
    const error = new ApplyUnconfirmedError('bad_gateway', 'may have been applied', {}, { method: 'GET', path });

    const safe = toSafeError(error);

    expect(safe.type).toBe('ApplyUnconfirmedError');
    expect(safe.request).toBe('GET /repos/octo-org/widgets/git/ref/heads/feature?token=[redacted]');
    expect(JSON.stringify(safe)).not.toContain(secret);
  });

  it('leaves out an unconfirmed apply without a request', () => {
    const error = new ApplyUnconfirmedError('bad_gateway', 'may have been applied', {}, null);

    expect(toSafeError(error).request).toBeUndefined();
  });

  it('leaves out the request of other errors', () => {
    const error = Object.assign(new Error('failed'), {
      request: { method: 'GET', url: 'https://api.github.com/app' },
    });

    expect(toSafeError(error).request).toBeUndefined();
  });

  it('describes values that are not errors', () => {
    expect(toSafeError('plain text')).toEqual({ type: 'string', message: 'plain text' });
    expect(toSafeError({ message: 'worker stopped', queue: 'preview' })).toEqual({
      type: 'object',
      message: 'worker stopped',
    });
    expect(toSafeError(Object.create(null)).type).toBe('object');
  });

  it('strips NUL and caps the message', () => {
    const message = safeErrorMessage(new Error(`a\0b${'x'.repeat(5000)}`), 100);

    expect(message).toHaveLength(100);
    expect(message.startsWith('abxx')).toBe(true);
    expect(message.endsWith('…')).toBe(true);
  });
});

describe('redactCredentials', () => {
  it.each([
    ['an installation token', 'ghs_16C7e42F292c6912E7710c838347Ae178B4a', '[redacted]'],
    ['a personal access token', 'x 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 x', 'x [redacted] x'],
    ['an OAuth token', 'gho_16C7e42F292c6912E7710c838347Ae178B4a', '[redacted]'],
    ['a user-to-server token', 'ghu_16C7e42F292c6912E7710c838347Ae178B4a', '[redacted]'],
    ['a refresh token', 'ghr_1B4a2e77838347a7E420ce178F2E7c6912E169', '[redacted]'],
    ['a fine-grained token', 'github_pat_11ABCDEFG0123456789_abcdefXYZ', '[redacted]'],
    ['a JWT', 'jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjF9.c2lnbmF0dXJl', 'jwt [redacted]'],
    ['an Authorization header with a scheme', 'Authorization: token abc123', 'Authorization: token [redacted]'],
    ['an Authorization header without one', 'authorization: abc123', 'authorization: [redacted]'],
    ['a Basic Authorization in JSON', '{"authorization":"Basic Zm9vOmJhcg=="}', '{"authorization":"Basic [redacted]"}'],
    ['a token query value', '/path?ref=main&token=abc123&x=1', '/path?ref=main&token=[redacted]&x=1'],
    ['an access_token query value', '?access_token=abc123#top', '?access_token=[redacted]#top'],
    ['a client_secret form value', 'client_id=1&client_secret=abc123', 'client_id=1&client_secret=[redacted]'],
    ['a Slack bot token', 'slack xoxb-1234567890-abcdefghij x', 'slack [redacted] x'],
    [
      'a connection URL password',
      'connect to postgres://fixwright:S3cret!pw@127.0.0.1:5432/fixwright failed',
      'connect to postgres://fixwright:[redacted]@127.0.0.1:5432/fixwright failed',
    ],
    ['a URL password without a user', 'redis://:hunter2@127.0.0.1:6379', 'redis://:[redacted]@127.0.0.1:6379'],
    [
      'a URL password with an unencoded / ? #',
      'connect to postgres://u:pa/ss?w#rd@db:5432/app failed',
      'connect to postgres://u:[redacted]@db:5432/app failed',
    ],
    ['a password query value', 'https://h/x?user=a&password=hunter2', 'https://h/x?user=a&password=[redacted]'],
    ['a passwd query value', 'https://h/x?passwd=hunter2&x=1', 'https://h/x?passwd=[redacted]&x=1'],
    ['a pwd connection string value', 'Server=db;Uid=app;pwd=hunter2', 'Server=db;Uid=app;pwd=[redacted]'],
    ['a secret query value', 'https://h/x?secret=hunter2', 'https://h/x?secret=[redacted]'],
    ['an apikey query value', 'https://h/x?apikey=hunter2', 'https://h/x?apikey=[redacted]'],
    ['a quoted Bearer header value', 'headers: { Authorization: "Bearer a8Fk29dLq83mZpQ7" }', 'headers: { Authorization: "Bearer [redacted]" }'],
    ['a Bearer header in braces', '{Authorization: Bearer ghx9f8e7d6c5b4a3z2y1x0w}', '{Authorization: Bearer [redacted]}'],
    ['a Bearer header before a pipe', 'Authorization:Bearer ghx9f8e7d6c5b4a3z2y1x0w|jq', 'Authorization:Bearer [redacted]'],
    [
      'a URL password with @, / and :',
      'DATABASE_URL=postgres://app:p@ss/w:rd9999secret@db/app',
      'DATABASE_URL=postgres://app:[redacted]@db/app',
    ],
    ['a URL password with / and :', 'postgres://app:s3cr/et:x99999@db/app', 'postgres://app:[redacted]@db/app'],
    ['a URL password with # and @', 'postgres://app:s3cr#et@ab9999@db/app', 'postgres://app:[redacted]@db/app'],
    ['a URL password before an npm scope', 'https://u:pw@registry/@scope/pkg@1.0.0', 'https://u:[redacted]@registry/@scope/pkg@1.0.0'],
    ['an id_token query value', '/cb?id_token=abc123&x=1', '/cb?id_token=[redacted]&x=1'],
    ['an auth query value', '/cb?user=a&auth=abc123', '/cb?user=a&auth=[redacted]'],
    ['an api-key query value', '/cb?api-key=abc123', '/cb?api-key=[redacted]'],
    ['a refresh-token query value', '/cb?refresh-token=abc123', '/cb?refresh-token=[redacted]'],
    [
      'a URL password before a path with @',
      'https://user:pa55@host.example/path/@scope/pkg?x=a@b',
      'https://user:[redacted]@host.example/path/@scope/pkg?x=a@b',
    ],
    ['a URL password with / and @', 'https://u:p/a@ss@host.example/', 'https://u:[redacted]@host.example/'],
    ['a URL password with /@', 'https://u:ab/@cd@host.internal/', 'https://u:[redacted]@host.internal/'],
    [
      'a quoted Authorization header that words follow',
      '"Authorization: Bearer abc123def456 extra"',
      '"Authorization: Bearer [redacted] extra"',
    ],
    ['a quoted Bearer token that words follow', "'Bearer abc123def456' is the token", "'Bearer [redacted]' is the token"],
    // Neither is a secret, but a rule that skipped them would also skip short tokens.
    ['a query value in a regular expression', '/a?token=b/', '/a?token=[redacted]'],
    ['a Bearer token in prose', 'Bearer token123 is used', 'Bearer [redacted] is used'],
    ['a URL password after a word with _', 'user_db://app:hunter22@db/app', 'user_db://app:[redacted]@db/app'],
    ['a URL password without a scheme', 'at ://app:hunter22@db/app', 'at ://app:[redacted]@db/app'],
  ])('replaces %s', (_case, text, expected) => {
    expect(redactCredentials(text)).toBe(expected);
  });

  it('leaves text without credentials unchanged', () => {
    const text = 'Not Found - https://docs.github.com/rest/repos/contents#get-repository-content';
    expect(redactCredentials(text)).toBe(text);
    expect(redactCredentials('account for token replication delay')).toBe('account for token replication delay');
    expect(redactCredentials('see https://127.0.0.1:8080/path@v2')).toBe('see https://127.0.0.1:8080/path@v2');
    expect(redactCredentials('see http://localhost:3000/users/a@b.org')).toBe('see http://localhost:3000/users/a@b.org');
    expect(redactCredentials('/x?page_token=abc123&csrf_token=def456')).toBe('/x?page_token=abc123&csrf_token=def456');
    expect(redactCredentials('write to a@b.org or https://x.org/u/@me')).toBe('write to a@b.org or https://x.org/u/@me');
  });

  it('redacts a 1 MB line of /@ without a host in linear time', () => {
    const line = 'a://b:c/@'.repeat(115_000);
    const startedAt = performance.now();
    expect(redactCredentials(line)).toBe(line);
    expect(performance.now() - startedAt).toBeLessThan(5_000);
  });

  it('redacts a 1 MB line of URL passwords without @ in linear time', () => {
    const line = 'a://b:c/d:'.repeat(104_000);
    const startedAt = performance.now();
    expect(redactCredentials(line)).toBe(line);
    expect(performance.now() - startedAt).toBeLessThan(5_000);
  });
});

describe('toSafeError with credentials', () => {
  const token = 'ghs_16C7e42F292c6912E7710c838347Ae178B4a';

  it('redacts the message, stack and cause of a RequestError', () => {
    const url = 'https://api.github.com/repos/octo-org/widgets/contents/a.ts';
    const body = `Server Error: token=${token} Authorization: token ${token}`;
    const error = new RequestError(body, 500, {
      request: { method: 'GET', url, headers: {} },
      response: { status: 500, url, headers: {}, data: { message: body } },
    });
    const wrapped = new Error(`reading failed: ${body}`, { cause: error });

    const safe = toSafeError(wrapped);

    expect(safe.message).toBe(
      'reading failed: Server Error: token=[redacted] Authorization: token [redacted]',
    );
    expect(safe.cause?.message).toBe('Server Error: token=[redacted] Authorization: token [redacted]');
    expect(safe.stack).toContain('token=[redacted]');
    expect(JSON.stringify(safe)).not.toContain(token);
  });

  it('keeps only the safe fields in a stored job error', () => {
    const url = 'https://api.github.com/repos/octo-org/widgets/check-runs';
    const error = new RequestError(`Validation Failed ${token}`, 422, {
      request: { method: 'POST', url, headers: {} },
      response: { status: 422, url, headers: {}, data: { message: `Validation Failed ${token}` } },
    });

    const stored = toJobError(error);

    expect(stored.message).toBe('Validation Failed [redacted]');
    expect(Object.keys(stored).sort()).toEqual(['name', 'request', 'status', 'type']);
    expect(JSON.stringify(stored)).not.toContain(token);
    expect(stored.stack).toContain('Validation Failed [redacted]');
    expect(stored.stack).not.toContain(token);
  });
});

describe('handleError', () => {
  it('logs an unhandled query error without its parameters', async () => {
    const error = await duplicateKeyError();
    const app = new Hono();
    app.onError((caught, c) => handleError(caught, c, context.logger));
    app.get('/api/failing', () => {
      throw error;
    });

    const response = await app.request('/api/failing');

    expect(response.status).toBe(500);
    const line = context.logs.find((entry) => entry.event === 'http.unhandled_error');
    expect(line).toBeDefined();
    expect((line!.err as { code?: string }).code).toBe('23505');
    expect(JSON.stringify(context.logs)).not.toContain(secret);
  });
});
