import { createHmac, randomUUID } from 'node:crypto';
import { BoundedFileError, readBoundedFile } from '../config/bounded-file.ts';
import type { Config } from '../config/env.ts';
import { describeInnermostError } from '../errors/innermost-error.ts';
import { CommandError } from './command-error.ts';
import { checkEventName, checkPayloadMatchesEvent } from './event-names.ts';
import { httpOrigin } from '../net/url-host.ts';
import { parseCommandOptions, parseDecimal } from './parse-options.ts';
import { shortenText } from '../text/quote-value.ts';
import { maxDeliveryIdLength } from '../web/delivery-id.ts';
import { maxWebhookBytes } from '../web/webhook-size.ts';

/** Path of the webhook endpoint, as routed in src/web/webhooks.ts. */
const webhookPath = '/webhooks/github';

/**
 * Posts a webhook payload file the way GitHub does: the same headers, and an
 * X-Hub-Signature-256 made with WEBHOOK_SECRET over the file's exact bytes.
 */
export async function runReceiveCommand(config: Config, args: string[]): Promise<number> {
  const { values } = parseCommandOptions('receive', args, {
    event: { type: 'string' },
    payload: { type: 'string' },
    url: { type: 'string' },
    delivery: { type: 'string' },
    timeout: { type: 'string', default: '30' },
  });
  const timeoutSeconds = parseDecimal(values.timeout);
  if (timeoutSeconds === null || timeoutSeconds < 1 || timeoutSeconds > 600) {
    throw new CommandError(
      `Invalid --timeout ${JSON.stringify(values.timeout)}: expected whole seconds from 1 to 600.`,
    );
  }
  const receiveTimeoutMs = timeoutSeconds * 1000;
  if (!values.event) throw new CommandError('Missing --event: name the GitHub event, for example pull_request.');
  if (!values.payload) throw new CommandError('Missing --payload: give the path of a JSON payload file.');
  const eventWarning = checkEventName(values.event);
  if (!config.WEBHOOK_SECRET) {
    throw new CommandError('Missing WEBHOOK_SECRET: set it to the secret the server uses, so the payload can be signed.');
  }

  let body: Buffer;
  try {
    body = await readBoundedFile(values.payload, maxWebhookBytes);
  } catch (error) {
    if (error instanceof BoundedFileError) {
      throw new CommandError(
        `Invalid --payload: ${error.message}. Give a JSON payload file of at most ` +
          `${maxWebhookBytes} bytes, the webhook endpoint's limit (GitHub's limit of 25 MB).`,
      );
    }
    throw new CommandError(`Cannot read --payload ${JSON.stringify(values.payload)}: ${(error as Error).message}`);
  }
  if ((body[0] === 0xff && body[1] === 0xfe) || (body[0] === 0xfe && body[1] === 0xff)) {
    throw new CommandError(
      `Invalid --payload ${JSON.stringify(values.payload)}: the file is UTF-16 text; save it as ` +
        'UTF-8, as GitHub sends payloads.',
    );
  }
  // The file is sent as it is, so a byte order mark that some editors write would be sent too.
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) {
    throw new CommandError(
      `Invalid --payload ${JSON.stringify(values.payload)}: the file starts with a byte order ` +
        'mark, which GitHub never sends; save it as UTF-8 without one.',
    );
  }
  let payload: unknown;
  try {
    payload = JSON.parse(body.toString('utf8'));
  } catch {
    throw new CommandError(`Invalid --payload ${JSON.stringify(values.payload)}: the file is not valid JSON.`);
  }
  checkPayloadMatchesEvent(values.event, payload, values.payload);

  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
  const url = values.url ?? `${httpOrigin(host, config.PORT)}${webhookPath}`;
  checkUrl(url);
  const signature = 'sha256=' + createHmac('sha256', config.WEBHOOK_SECRET).update(body).digest('hex');
  const deliveryId = values.delivery ?? randomUUID();
  // The webhook endpoint takes up to maxDeliveryIdLength characters. Spaces and control
  // characters are kept out, because HTTP trims the spaces around a header value and rejects
  // control characters.
  const deliveryRule = `use 1 to ${maxDeliveryIdLength} printable ASCII characters without spaces, such as a UUID`;
  const quotedDelivery = JSON.stringify(shortenText(deliveryId, 60));
  if (deliveryId.length > maxDeliveryIdLength) {
    throw new CommandError(
      `Invalid --delivery ${quotedDelivery}: it has ${deliveryId.length} characters, more than ` +
        `the ${maxDeliveryIdLength} that the webhook endpoint accepts; ${deliveryRule}.`,
    );
  }
  if (!/^[\x21-\x7e]+$/.test(deliveryId)) {
    throw new CommandError(`Invalid --delivery ${quotedDelivery}: ${deliveryRule}.`);
  }
  if (eventWarning) console.error(eventWarning);

  let response: Response;
  let text: string;
  const signal = AbortSignal.timeout(receiveTimeoutMs);
  try {
    response = await fetch(url, {
      signal,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'GitHub-Hookshot/fixwright-receive',
        'x-github-event': values.event,
        'x-github-delivery': deliveryId,
        'x-hub-signature-256': signature,
      },
      body: new Uint8Array(body),
      // The webhook endpoint never redirects, so a redirect means --url names another page,
      // such as the base URL, which redirects to sign-in.
      redirect: 'manual',
    });
    text = await response.text();
  } catch (error) {
    // A failed delivery, not a usage error, so it exits 1 like a rejected one.
    if (signal.aborted) {
      console.error(`Timed out after ${receiveTimeoutMs / 1000} s waiting for ${url} to respond.`);
    } else if (((error as Error).cause as Error | undefined)?.message === 'bad port') {
      // undici, Node's fetch, rejects the ports of the Fetch standard's "bad port" list before
      // it connects, so whether a server listens there is unknown.
      console.error(
        `Cannot post to ${url}: fetch blocks port ${new URL(url).port}, as browsers do for ports ` +
          'such as 1, 25 and 6000. Run the service on another PORT and post to that port.',
      );
    } else {
      console.error(`Cannot reach ${url}: ${describeInnermostError(error)}. Is "npm start" running?`);
    }
    return 1;
  }
  console.log(`${response.status} ${response.statusText} (delivery ${deliveryId})`);
  const json = parseJson(response, text);
  if (json !== undefined) console.log(text);
  const failure = describeFailure(url, response, json, deliveryId);
  if (!failure) return 0;
  console.error(failure);
  return 1;
}

/** Raises a CommandError unless `url` is http or https without a user name or password. */
function checkUrl(url: string): void {
  const parsed = URL.canParse(url) ? new URL(url) : null;
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw new CommandError(
      `Invalid --url ${JSON.stringify(url)}: expected an http or https URL such as ` +
        `http://127.0.0.1:3000${webhookPath}.`,
    );
  }
  if (parsed.username || parsed.password) {
    parsed.username = '';
    parsed.password = '';
    throw new CommandError(
      `Invalid --url ${parsed.toString()} with a user name or password: leave them out, because the ` +
        'delivery is signed with WEBHOOK_SECRET.',
    );
  }
}

/** Returns the body as JSON when the response declares JSON and parses, else undefined. */
function parseJson(response: Response, text: string): unknown {
  if (!(response.headers.get('content-type') ?? '').includes('json')) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Returns why the delivery failed, or null when the webhook endpoint accepted it: a 2xx whose
 * JSON names the delivery. Anything else failed, and when the response did not come from the
 * webhook endpoint the message names the endpoint's URL.
 */
function describeFailure(
  url: string,
  response: Response,
  json: unknown,
  deliveryId: string,
): string | null {
  const fields = (json ?? {}) as { delivery?: unknown; error?: { message?: unknown } };
  if (response.ok && fields.delivery === deliveryId) return null;
  const status = `${response.status} ${response.statusText}`.trim();
  const errorMessage = fields.error?.message;
  if (typeof errorMessage === 'string' && new URL(url).pathname === webhookPath) {
    return `Delivery ${deliveryId} failed: ${url} returned ${status}: ${errorMessage}`;
  }

  const location = response.headers.get('location');
  const contentType = response.headers.get('content-type') ?? 'no content type';
  const received =
    response.status >= 300 && response.status < 400
      ? `redirected to ${location ?? 'another page'} (${status})`
      : `returned ${status} with ${contentType}`;
  const endpoint = new URL(webhookPath, url).href;
  const next =
    new URL(url).pathname === webhookPath
      ? 'Check that --url names a running Fixwright server.'
      : `Post to ${endpoint} instead.`;
  return (
    `Delivery ${deliveryId} failed: ${url} ${received}, which is not the webhook ` +
    `endpoint's JSON response. ${next}`
  );
}
