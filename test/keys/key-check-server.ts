import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Starts a provider double for key checks only, serving Groq's and Gemini's model list paths.
 * It lists models for accepted keys. Any other key gets an error body that repeats the key in
 * the message and in a URL, as a careless provider or proxy might.
 */
export async function startKeyCheckServer(acceptedKeys: string[], options: { groqStatus?: number } = {}) {
  const seenKeys: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const googKey = req.headers['x-goog-api-key'];
    const key = bearer ?? (typeof googKey === 'string' ? googKey : '');
    seenKeys.push(key);
    res.setHeader('content-type', 'application/json');

    if (url.pathname === '/openai/v1/models') {
      if (acceptedKeys.includes(key)) {
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'llama-3.3-70b-versatile' }] }));
        return;
      }
      res.writeHead(options.groqStatus ?? 401);
      res.end(
        JSON.stringify({
          error: {
            message: `Invalid API Key ${key} (see http://127.0.0.1/keys?api_key=${key})`,
            type: 'invalid_request_error',
            code: 'invalid_api_key',
          },
        }),
      );
      return;
    }
    if (url.pathname === '/v1beta/models') {
      if (acceptedKeys.includes(key)) {
        res.end(JSON.stringify({ models: [{ name: 'models/gemini-2.5-flash' }] }));
        return;
      }
      res.writeHead(400);
      res.end(
        JSON.stringify({
          error: {
            code: 400,
            status: 'INVALID_ARGUMENT',
            message: `API key not valid: ${key}. Request https://example.invalid/v1beta/models?key=${key}`,
            details: [
              { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID' },
            ],
          },
        }),
      );
      return;
    }
    res.writeHead(404);
    res.end(JSON.stringify({ error: { message: `no route ${url.pathname}` } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seenKeys,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Returns the forms in which a leaked key could appear: as is, percent-encoded, base64, hex. */
export function keyForms(key: string): string[] {
  const bytes = Buffer.from(key, 'utf8');
  return [
    key,
    encodeURIComponent(key),
    bytes.toString('base64'),
    bytes.toString('base64url'),
    bytes.toString('hex'),
  ];
}
