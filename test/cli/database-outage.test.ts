import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/process.ts';
import {
  fixedFile,
  requestPreview,
  serviceEvents,
  startPreviewFakes,
  type PreviewFakes,
} from '../helpers/preview-service.ts';
import { startRestartablePostgres, type RestartablePostgres } from '../helpers/restartable-postgres.ts';
import { startServiceProcess, type ServiceProcess } from '../helpers/service.ts';

/** How long the database stays stopped, in milliseconds. */
const outageMs = 10_000;

let server: RestartablePostgres;
let fakes: PreviewFakes;
let service: ServiceProcess | undefined;

beforeAll(async () => {
  [server, fakes] = await Promise.all([startRestartablePostgres(), startPreviewFakes()]);
}, 60_000);

afterAll(async () => {
  await service?.stop('SIGKILL');
  await fakes?.close();
  await server?.remove();
});

describe('database outage during a preview', () => {
  it('settles the call once', async () => {
    const env = { ...fakes.env, DATABASE_URL: server.url };
    service = await startServiceProcess(env);
    // The response arrives 2 s into the call, while the database is stopped.
    fakes.groq.setHandler(() => ({ text: fixedFile, delayMs: 2_000 }));
    const patchRequestId = await requestPreview(service, fakes, env);

    const completions = () =>
      fakes.groq.requests.filter((request) => request.path.endsWith('/chat/completions'));
    const call = await waitFor(async () => completions()[0], {
      timeoutMs: 30_000,
      describe: () => `the model call to start; output:\n${service!.output()}`,
    });
    const stoppedAt = Date.now();
    await server.stop();
    await waitFor(async () => call.reply !== undefined, {
      timeoutMs: 10_000,
      describe: () => `the fake Groq to answer; output:\n${service!.output()}`,
    });
    expect(Date.now() - stoppedAt).toBeLessThan(outageMs);
    await new Promise((resolve) => setTimeout(resolve, stoppedAt + outageMs - Date.now()));
    expect(service.process.exitCode).toBeNull();
    expect(service.process.signalCode).toBeNull();
    await server.start();

    const api = (path: string) => fetch(`${service!.url}${path}`);
    const sql = postgres(server.url, { max: 1, onnotice: () => {} });
    try {
      const request = await waitFor(
        async () => {
          const [row] = await sql<{ status: string; total_tokens: number; user_id: string }[]>`
            SELECT status, total_tokens::int AS total_tokens, user_id
            FROM patch_requests WHERE id = ${patchRequestId}`;
          return row?.status === 'ready' ? row : undefined;
        },
        { timeoutMs: 30_000, describe: () => `the preview to be ready; output:\n${service!.output()}` },
      );
      expect((await api('/healthz')).status).toBe(200);

      const reported = call.reply!.usage!.total_tokens;
      expect(completions()).toHaveLength(1);
      expect(fakes.gemini.requests).toHaveLength(0);
      const ledger = await sql<{ idempotency_key: string; charged_tokens: number }[]>`
        SELECT idempotency_key, charged_tokens::int AS charged_tokens
        FROM token_events WHERE patch_request_id = ${patchRequestId}`;
      expect(ledger).toHaveLength(1);
      expect(ledger[0]!.charged_tokens).toBe(reported);
      expect(ledger[0]!.idempotency_key).toMatch(/:attempt-0:groq$/);
      expect(request.total_tokens).toBe(reported);
      const [user] = await sql<{ tokens_used: number; tokens_reserved: number; ledger_sum: number }[]>`
        SELECT tokens_used::int AS tokens_used, tokens_reserved::int AS tokens_reserved,
          (SELECT coalesce(sum(charged_tokens), 0)::int FROM token_events WHERE user_id = users.id)
            AS ledger_sum
        FROM users WHERE id = ${request.user_id}`;
      expect(user!.tokens_used).toBe(reported);
      expect(user!.tokens_used).toBe(user!.ledger_sum);
      expect(user!.tokens_reserved).toBe(0);
      const [job] = await sql<{ state: string; retry_count: number }[]>`
        SELECT state, retry_count FROM pgboss.job WHERE name = 'preview'`;
      expect(job!.state).toBe('completed');
      expect(job!.retry_count).toBe(0);
    } finally {
      await sql.end();
    }

    const output = service.output();
    expect(serviceEvents(output, 'jobs.database_unavailable')).toHaveLength(1);
    const retrying = serviceEvents(output, 'usage.settle_retrying');
    expect(retrying).toHaveLength(1);
    expect(retrying[0]!.patchRequestId).toBe(patchRequestId);
    expect(serviceEvents(output, 'usage.settle_failed')).toEqual([]);
    expect(serviceEvents(output, 'process.unhandled_rejection')).toEqual([]);
    await waitFor(async () => serviceEvents(service!.output(), 'jobs.database_available').length === 1, {
      timeoutMs: 10_000,
      describe: () => `jobs.database_available in the output:\n${service!.output()}`,
    });

    await service.stop('SIGTERM');
    expect(service.process.exitCode).toBe(0);
    const errors = service
      .output()
      .split('\n')
      .filter((line) => /"level":(50|60)/.test(line));
    expect(errors).toEqual([]);
  }, 90_000);
});
