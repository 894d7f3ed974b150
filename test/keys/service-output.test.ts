import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/db/bundled.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { runCli, waitFor } from '../helpers/process.ts';
import { keyForms, startKeyCheckServer } from './key-check-server.ts';

const acceptedKey = 'gsk_serviceAcceptedKey0123456789abcdefghijklmnopqrstu';
const rejectedGroqKey = 'gsk_serviceRejectedKey0123456789abcdefghijklmnopqrstu';
const rejectedGeminiKey = 'AIzaServiceRejectedKey0123456789abcdef';
const masterKey = randomBytes(32).toString('base64');

let database: TestDatabase;
let provider: Awaited<ReturnType<typeof startKeyCheckServer>>;
let service: ChildProcess;
let serviceUrl: string;
let serviceOutput = '';
let env: NodeJS.ProcessEnv;
const responses: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  provider = await startKeyCheckServer([acceptedKey]);
  const port = await findFreePort();
  serviceUrl = `http://127.0.0.1:${port}`;
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: process.env.TMPDIR,
    NODE_ENV: 'test',
    LOG_LEVEL: 'debug',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: database.url,
    MASTER_KEYS: `2:${masterKey}`,
    GROQ_BASE_URL: provider.url,
    GEMINI_BASE_URL: provider.url,
  };
  service = spawn(process.execPath, ['bin/fixwright.js', 'start'], { env, stdio: 'pipe' });
  service.stdout!.on('data', (chunk) => (serviceOutput += chunk));
  service.stderr!.on('data', (chunk) => (serviceOutput += chunk));
  await waitFor(async () => (await fetch(`${serviceUrl}/healthz`).catch(() => null))?.ok, {
    timeoutMs: 30_000,
    describe: () => `service at ${serviceUrl} to answer /healthz; output:\n${serviceOutput}`,
  });
}, 60_000);

afterAll(async () => {
  if (service && service.exitCode === null) {
    const exited = new Promise((resolve) => service.once('exit', resolve));
    service.kill('SIGTERM');
    await exited;
  }
  await provider?.close();
  await database?.close();
});

describe('own keys through the running service', () => {
  it('stores, lists and rejects keys', async () => {
    const token = (await runCli(['users', 'token', '--login', 'keyholder', '--create'], env)).stdout.trim();
    const api = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${serviceUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      responses.push(text);
      return { status: response.status, json: text ? JSON.parse(text) : undefined };
    };

    const saved = await api('PUT', '/api/user/keys/groq', { key: acceptedKey });
    expect(saved.status).toBe(201);
    expect(saved.json.key.lastFour).toBe(acceptedKey.slice(-4));
    const rejected = await api('PUT', '/api/user/keys/groq', { key: rejectedGroqKey });
    expect(rejected.status).toBe(400);
    expect(rejected.json.error.message).toContain('Groq rejected the key (HTTP 401)');
    const rejectedGemini = await api('PUT', '/api/user/keys/gemini', { key: rejectedGeminiKey });
    expect(rejectedGemini.status).toBe(400);
    expect(rejectedGemini.json.error.message).toContain('Gemini rejected the key (HTTP 400)');
    expect(provider.seenKeys).toEqual([acceptedKey, rejectedGroqKey, rejectedGeminiKey]);

    const listed = await api('GET', '/api/user/keys');
    expect(listed.json.keys.map((key: { provider: string; lastFour: string }) => [key.provider, key.lastFour])).toEqual([
      ['groq', acceptedKey.slice(-4)],
    ]);
    expect((await api('PUT', '/api/user/provider-order', { order: ['gemini', 'groq'] })).status).toBe(200);
    expect((await api('DELETE', '/api/user/keys/gemini')).status).toBe(404);
    expect((await api('GET', '/api/user/usage')).json.ownKeys).toEqual({ groq: true, gemini: false });

    const [row] = await database.sql`SELECT master_key_version FROM user_api_keys`;
    expect(row!.master_key_version).toBe(2);
  });

  it('keeps keys out of the service output and responses', () => {
    expect(serviceOutput).toContain('"event":"user_key.saved"');
    expect(serviceOutput).toContain('"event":"user_key.check_failed"');
    for (const key of [acceptedKey, rejectedGroqKey, rejectedGeminiKey]) {
      for (const form of keyForms(key)) {
        expect(serviceOutput).not.toContain(form);
        expect(responses.join('\n')).not.toContain(form);
      }
    }
    expect(serviceOutput).not.toContain(masterKey);
  });
});
