import { RequestError } from '@octokit/request-error';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { webhookDeliveries } from '../../src/db/schema/index.ts';
import { safeErrorMessage, toSafeError } from '../../src/errors/safe-error.ts';
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
