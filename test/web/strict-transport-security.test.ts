import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { strictTransportSecurityValue } from '../../src/web/strict-transport-security.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { serveTestApp } from '../helpers/web.ts';

let context: TestContext;
let certificateDir: string;
let tls: { key: string; cert: string };
const servers: { close(): Promise<void> }[] = [];

/** Serves the app of `appContext` as serveTestApp does, and closes it after the tests. */
async function serveApp(appContext: TestContext, options: Parameters<typeof serveTestApp>[1] = {}): Promise<number> {
  const served = await serveTestApp(appContext, options);
  servers.push(served);
  return served.port;
}

/**
 * Sends GET `target` to 127.0.0.1:`port` and returns the status and the Strict-Transport-Security
 * header. `target` may be an absolute URL, which is sent as the request target unchanged.
 */
function get(
  port: number,
  target: string,
  options: { headers?: Record<string, string>; ca?: string } = {},
): Promise<{ status: number; hsts: string | undefined }> {
  const request = options.ca ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const sent = request(
      { host: '127.0.0.1', port, path: target, headers: options.headers, ca: options.ca },
      (response) => {
        response.resume();
        response.on('end', () =>
          resolve({ status: response.statusCode!, hsts: response.headers['strict-transport-security'] as string }),
        );
      },
    );
    sent.once('error', reject);
    sent.end();
  });
}

beforeAll(async () => {
  context = await createTestContext();
  // A throwaway self-signed certificate for 127.0.0.1, valid for a day.
  certificateDir = await mkdtemp(path.join(tmpdir(), 'fixwright-hsts-'));
  const keyFile = path.join(certificateDir, 'key.pem');
  const certFile = path.join(certificateDir, 'cert.pem');
  await promisify(execFile)('openssl', [
    ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
    ...['-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
    ...['-keyout', keyFile, '-out', certFile],
  ]);
  tls = { key: await readFile(keyFile, 'utf8'), cert: await readFile(certFile, 'utf8') };
});

afterAll(async () => {
  for (const server of servers) await server.close();
  await context?.close();
  if (certificateDir) await rm(certificateDir, { recursive: true, force: true });
});

describe('Strict-Transport-Security', () => {
  it('is left out over plain HTTP', async () => {
    const port = await serveApp(context);
    const page = await get(port, '/sign-in');
    expect(page.status).toBe(200);
    expect(page.hsts).toBeUndefined();
    const missing = await get(port, '/no-such-page');
    expect(missing.status).toBe(404);
    expect(missing.hsts).toBeUndefined();
  });

  it('is left out for an absolute https target', async () => {
    const port = await serveApp(context);
    const page = await get(port, `https://127.0.0.1:${port}/sign-in`);
    expect(page.status).toBe(200);
    expect(page.hsts).toBeUndefined();
  });

  it('ignores X-Forwarded-Proto without TRUST_PROXY', async () => {
    const port = await serveApp(context);
    const page = await get(port, '/sign-in', { headers: { 'x-forwarded-proto': 'https' } });
    expect(page.status).toBe(200);
    expect(page.hsts).toBeUndefined();
  });

  it('is sent over TLS', async () => {
    const port = await serveApp(context, { tls });
    const page = await get(port, '/sign-in', { ca: tls.cert });
    expect(page.status).toBe(200);
    expect(page.hsts).toBe(strictTransportSecurityValue);
    const missing = await get(port, '/no-such-page', { ca: tls.cert });
    expect(missing.status).toBe(404);
    expect(missing.hsts).toBe(strictTransportSecurityValue);
  });

  it("follows the nearest proxy's X-Forwarded-Proto with TRUST_PROXY", async () => {
    const port = await serveApp({ ...context, config: { ...context.config, TRUST_PROXY: true } });
    const cases: [Record<string, string>, string | undefined][] = [
      [{ 'x-forwarded-proto': 'https' }, strictTransportSecurityValue],
      [{ 'x-forwarded-proto': 'HTTPS' }, strictTransportSecurityValue],
      [{ 'x-forwarded-proto': 'http, https' }, strictTransportSecurityValue],
      // The client sent the first entry, and the proxy appended what it received.
      [{ 'x-forwarded-proto': 'https, http' }, undefined],
      [{ 'x-forwarded-proto': 'http' }, undefined],
      [{}, undefined],
    ];
    for (const [headers, expected] of cases) {
      const page = await get(port, '/sign-in', { headers });
      expect(page.status, JSON.stringify(headers)).toBe(200);
      expect(page.hsts, JSON.stringify(headers)).toBe(expected);
    }
  });
});
