import { createHmac, timingSafeEqual } from 'node:crypto';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import type { AppContext } from '../context.ts';
import { dispatchDelivery, validateDeliveryPayload } from '../events/dispatch.ts';
import type { Logger } from '../logger.ts';
import { quoteValue } from '../text/quote-value.ts';
import { stripNul } from '../text/strip-nul.ts';
import { AppError } from './errors.ts';
import { limitConcurrency, retryAfterSeconds } from './limit-concurrency.ts';
import { IncompleteBodySummary } from './incomplete-body-summary.ts';
import { ByteBudget, readLimitedBody, type IncompleteBodyReason } from './read-limited-body.ts';
import { maxDeliveryIdLength } from './delivery-id.ts';
import { maxWebhookBytes } from './webhook-size.ts';

/**
 * Form of an X-GitHub-Event value. GitHub's event names are lowercase letters, digits and
 * underscores, such as `pull_request` and `projects_v2_item`, the longest 31 characters in
 * @octokit/webhooks 14. Events that Fixwright does not handle are acknowledged and ignored, so
 * the pattern leaves room for names GitHub adds later.
 */
const eventNamePattern = /^[a-z0-9_]{1,64}$/;

const notConfiguredMessage =
  'Webhooks are disabled because WEBHOOK_SECRET is not set. Set it to the webhook secret ' +
  "entered in the GitHub App's settings and restart Fixwright.";

/**
 * Parses a delivery body and removes NUL from every string, because PostgreSQL text cannot
 * store it and GitHub's deliveries must not be rejected for their content.
 */
function parsePayload(body: string): unknown {
  // JSON can carry NUL only as the escape \u0000, so other bodies skip the reviver.
  if (!body.includes('\\u0000')) return JSON.parse(body);
  return JSON.parse(body, (_key, value: unknown) =>
    typeof value === 'string' ? stripNul(value) : value,
  );
}

/**
 * Logs one warning per rejected delivery with its headers and reason, never body or signature.
 * Bodies that did not arrive whole are left to the `IncompleteBodySummary`.
 */
function logRejectedDeliveries(logger: Logger): MiddlewareHandler<WebhookEnv> {
  return async (c, next) => {
    await next();
    if (!(c.error instanceof AppError) || c.get('bodyIncomplete')) return;
    logger.warn(
      {
        event: 'webhook.rejected',
        requestId: c.get('requestId'),
        deliveryId: c.req.header('x-github-delivery')?.slice(0, maxDeliveryIdLength),
        githubEvent: c.req.header('x-github-event')?.slice(0, 100),
        status: c.error.status,
        code: c.error.code,
        reason: c.error.message,
      },
      'webhook delivery rejected',
    );
  };
}

/**
 * Returns whether `signature` is `sha256=` followed by the hex HMAC-SHA256 of `body` under
 * `secret`. GitHub signs the body's bytes, so they are checked before any decoding.
 */
function isValidSignature(secret: string, body: Uint8Array, signature: string): boolean {
  const expected = Buffer.from('sha256=' + createHmac('sha256', secret).update(body).digest('hex'));
  const received = Buffer.from(signature);
  return received.length === expected.length && timingSafeEqual(received, expected);
}

/** Decoder that raises on bytes that are not UTF-8 and keeps a byte order mark for JSON.parse to reject. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes a webhook body's bytes, or raises a 400 when they are not UTF-8. */
function decodeWebhookBody(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new AppError(
      'bad_request',
      'Webhook body is not valid UTF-8; send the JSON payload as GitHub does, uncompressed ' +
        'and encoded as UTF-8.',
    );
  }
}

/** Variables that the webhook middleware sets for the handler and the rejection log. */
type WebhookEnv = {
  Variables: {
    webhookBytes: Uint8Array;
    releaseWebhookBody: () => void;
    /** True when the body did not arrive whole, which the summary logs instead. */
    bodyIncomplete: boolean;
  };
};

/**
 * Returns whether the webhook route dropped the request's body before it arrived whole. The
 * `webhook.bodies_incomplete` summary counts such requests.
 */
export function isIncompleteWebhookBody(c: Context): boolean {
  return (c as Context<WebhookEnv>).get('bodyIncomplete') === true;
}

/** Limits of the body reads of the webhook route. */
interface WebhookBodyLimits {
  budget: ByteBudget;
  timeoutMs: number;
  summary: IncompleteBodySummary;
}

/** Returns the error for a body that did not arrive whole, for `reason`. */
function incompleteBodyError(
  reason: IncompleteBodyReason,
  receivedBytes: number,
  timeoutMs: number,
): AppError {
  if (reason === 'closed') {
    return new AppError(
      'bad_request',
      'The connection closed before the whole request body arrived; send the body again.',
    );
  }
  if (reason === 'timed_out') {
    return new AppError(
      'request_timeout',
      `Webhook body did not arrive within ${timeoutMs} ms (WEBHOOK_BODY_TIMEOUT_MS); ` +
        `${receivedBytes} bytes had arrived. Send the whole body without pauses, as GitHub does.`,
    );
  }
  return new AppError(
    'request_timeout',
    `Webhook body was dropped after ${receivedBytes} bytes because the bodies being received ` +
      'filled the memory bound and this one was expected to hold memory the longest, by its ' +
      'rate, its Content-Length and its pauses. Send the whole body without pauses, as GitHub ' +
      'does.',
  );
}

/**
 * Reads the body against `limits.budget` and checks X-Hub-Signature-256 over it, then passes
 * the bytes on as `webhookBytes`. The body stays charged to the budget until
 * `releaseWebhookBody` is called once the delivery has a slot, or until the request ends. So
 * unsigned bodies and signed ones waiting for a slot cannot hold more memory than the budget
 * together. The handler decodes the bytes only after it got a slot, because a decoded copy
 * would wait uncharged beside them. A body that has not arrived within `limits.timeoutMs`, or
 * that is expected to hold memory the longest while the budget is full, is dropped with 408, so
 * that slow unsigned bodies cannot keep the budget from GitHub's deliveries.
 */
function verifySignature(
  secret: string | undefined,
  limits: WebhookBodyLimits,
): MiddlewareHandler<WebhookEnv> {
  const { budget, timeoutMs, summary } = limits;
  return async (c, next) => {
    if (!secret) throw new AppError('not_configured', notConfiguredMessage);

    const signature = c.req.header('x-hub-signature-256');
    if (!signature) {
      throw new AppError(
        'invalid_signature',
        'Missing X-Hub-Signature-256 header; GitHub signs every delivery when the app has a webhook secret.',
      );
    }
    const charged = await readLimitedBody(c.req.raw, {
      maxBytes: maxWebhookBytes,
      budget,
      timeoutMs,
      tooLarge: () =>
        new AppError(
          'payload_too_large',
          `Webhook body is larger than GitHub's limit of ${maxWebhookBytes} bytes.`,
        ),
      overBudget: () => {
        c.header('Retry-After', String(retryAfterSeconds));
        return new AppError(
          'service_unavailable',
          `Webhook bodies being received or waiting for a slot would hold more than ` +
            `${budget.maxBytes} bytes together (WEBHOOK_MAX_CONCURRENT times ` +
            `${maxWebhookBytes}). GitHub does not redeliver by itself: redeliver this one ` +
            "from the GitHub App's Recent Deliveries.",
        );
      },
      incomplete: (reason, receivedBytes) => {
        summary.record(reason, receivedBytes);
        c.set('bodyIncomplete', true);
        // The rest of the body is not read, so the connection cannot carry another request.
        c.header('Connection', 'close');
        return incompleteBodyError(reason, receivedBytes, timeoutMs);
      },
    });
    if (!isValidSignature(secret, charged.bytes, signature)) {
      charged.release();
      throw new AppError(
        'invalid_signature',
        'X-Hub-Signature-256 does not match the body; check that WEBHOOK_SECRET equals the secret set on the GitHub App.',
      );
    }
    c.set('webhookBytes', charged.bytes);
    c.set('releaseWebhookBody', charged.release);
    try {
      await next();
    } finally {
      charged.release();
    }
  };
}

/** Releases the body's charge to the budget of unprocessed bodies once the delivery has a slot. */
const releaseBodyCharge: MiddlewareHandler<WebhookEnv> = async (c, next) => {
  c.get('releaseWebhookBody')();
  await next();
};

/**
 * `POST /webhooks/github`: verifies the signature over the raw body, records the delivery and
 * returns 202. Only signed deliveries count toward WEBHOOK_MAX_CONCURRENT, so slow unsigned
 * bodies cannot take the slots of GitHub's deliveries. A signed delivery beyond that limit
 * waits up to WEBHOOK_MAX_WAIT_MS for a slot, with at most WEBHOOK_MAX_WAITING waiting, because
 * GitHub does not redeliver a delivery that got 503 by itself. `options.bodyBudget` replaces
 * the budget of bodies not processed yet, so that a test can read how much it holds.
 */
export function webhookRoutes(
  context: AppContext,
  options: { bodyBudget?: ByteBudget } = {},
): Hono<WebhookEnv> {
  const app = new Hono<WebhookEnv>();
  const secret = context.config.WEBHOOK_SECRET;
  const {
    WEBHOOK_MAX_CONCURRENT: maxConcurrent,
    WEBHOOK_MAX_WAITING: maxWaiting,
    WEBHOOK_MAX_WAIT_MS: maxWaitMs,
  } = context.config;
  // Each body is buffered whole before its signature can be checked, and a signed one stays in
  // memory while it waits for a slot. The budget keeps the memory bound of those bodies at that
  // of WEBHOOK_MAX_CONCURRENT full-size bodies.
  const budget = options.bodyBudget ?? new ByteBudget(maxConcurrent * maxWebhookBytes);
  const bodyLimits: WebhookBodyLimits = {
    budget,
    timeoutMs: context.config.WEBHOOK_BODY_TIMEOUT_MS,
    summary: new IncompleteBodySummary(context.logger),
  };

  app.post(
    '/webhooks/github',
    logRejectedDeliveries(context.logger),
    verifySignature(secret, bodyLimits),
    limitConcurrency({
      maxConcurrent,
      maxWaiting,
      maxWaitMs,
      message: (reason) =>
        (reason === 'queue_full'
          ? `Too many webhook deliveries: ${maxConcurrent} are processing ` +
            `(WEBHOOK_MAX_CONCURRENT) and ${maxWaiting} are waiting (WEBHOOK_MAX_WAITING)`
          : `No webhook delivery slot came free within ${maxWaitMs} ms (WEBHOOK_MAX_WAIT_MS) ` +
            `while ${maxConcurrent} deliveries were processing (WEBHOOK_MAX_CONCURRENT)`) +
        ". GitHub does not redeliver by itself: redeliver this one from the GitHub App's " +
        'Recent Deliveries.',
    }),
    releaseBodyCharge,
    async (c) => {
      const body = decodeWebhookBody(c.get('webhookBytes'));
      const deliveryId = c.req.header('x-github-delivery');
      const event = c.req.header('x-github-event');
      if (!deliveryId || !event) {
        throw new AppError(
          'bad_request',
          `Missing ${deliveryId ? 'X-GitHub-Event' : 'X-GitHub-Delivery'} header.`,
        );
      }
      if (!eventNamePattern.test(event)) {
        throw new AppError(
          'bad_request',
          `Invalid X-GitHub-Event header ${quoteValue(event, 40)}: expected a GitHub event ` +
            'name of 1 to 64 lowercase letters, digits and underscores, such as pull_request.',
        );
      }
      if (deliveryId.length > maxDeliveryIdLength) {
        throw new AppError(
          'bad_request',
          `Invalid X-GitHub-Delivery header: it has ${deliveryId.length} characters, over the ` +
            `limit of ${maxDeliveryIdLength}; GitHub sends a 36-character GUID.`,
        );
      }
      let payload: unknown;
      try {
        payload = parsePayload(body);
      } catch {
        throw new AppError(
          'bad_request',
          'Webhook body is not valid JSON; set the GitHub App webhook content type to application/json.',
        );
      }
      if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
        throw new AppError('bad_request', 'Webhook body must be a JSON object.');
      }
      const problems = validateDeliveryPayload(event, payload);
      if (problems.length > 0) {
        throw new AppError('bad_request', `Invalid ${event} payload: ${problems.join('; ')}.`);
      }

      const result = await dispatchDelivery(context, {
        id: deliveryId,
        event,
        payload: payload as Record<string, unknown>,
      });
      const logger = context.logger.child({ deliveryId, githubEvent: event });
      if (result.duplicate) {
        logger.info({ event: 'webhook.duplicate' }, 'delivery already processed');
        return c.json({ delivery: deliveryId, duplicate: true }, 200);
      }
      logger.info(
        { event: 'webhook.accepted', outcome: result.outcome },
        'delivery accepted',
      );
      return c.json({ delivery: deliveryId, outcome: result.outcome }, 202);
    },
  );
  return app;
}
