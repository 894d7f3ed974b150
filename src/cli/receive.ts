import { createHmac, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Config } from '../config/env.ts';
import { CommandError } from './command-error.ts';

/**
 * Posts a webhook payload file the way GitHub does: the same headers, and an
 * X-Hub-Signature-256 made with WEBHOOK_SECRET over the file's exact bytes.
 */
export async function runReceiveCommand(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      event: { type: 'string' },
      payload: { type: 'string' },
      url: { type: 'string' },
      delivery: { type: 'string' },
    },
  });
  if (!values.event) throw new CommandError('Missing --event: name the GitHub event, for example pull_request.');
  if (!values.payload) throw new CommandError('Missing --payload: give the path of a JSON payload file.');
  if (!config.WEBHOOK_SECRET) {
    throw new CommandError('Missing WEBHOOK_SECRET: set it to the secret the server uses, so the payload can be signed.');
  }

  let body: Buffer;
  try {
    body = await readFile(values.payload);
  } catch (error) {
    throw new CommandError(`Cannot read --payload ${JSON.stringify(values.payload)}: ${(error as Error).message}`);
  }
  try {
    JSON.parse(body.toString('utf8'));
  } catch {
    throw new CommandError(`Invalid --payload ${JSON.stringify(values.payload)}: the file is not valid JSON.`);
  }

  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
  const url = values.url ?? `http://${host}:${config.PORT}/webhooks/github`;
  if (!URL.canParse(url)) throw new CommandError(`Invalid --url ${JSON.stringify(url)}: expected an absolute URL.`);
  const signature = 'sha256=' + createHmac('sha256', config.WEBHOOK_SECRET).update(body).digest('hex');
  const deliveryId = values.delivery ?? randomUUID();

  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'GitHub-Hookshot/fixwright-receive',
        'x-github-event': values.event,
        'x-github-delivery': deliveryId,
        'x-hub-signature-256': signature,
      },
      body: new Uint8Array(body),
    });
  } catch (error) {
    throw new CommandError(`Cannot reach ${url}: ${(error as Error).cause ?? (error as Error).message}. Is "npm start" running?`);
  }
  const text = await response.text();
  console.log(`${response.status} ${response.statusText} (delivery ${deliveryId})`);
  if (text) console.log(text);
  return response.ok ? 0 : 1;
}
