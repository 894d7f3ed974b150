import { eq } from 'drizzle-orm';
import { webhookDeliveries } from '../db/schema/index.ts';
import type { AppContext } from '../context.ts';
import { checkRunPayload, handleCheckRunEvent } from './check-run.ts';
import { githubId } from './github-id.ts';
import { handleInstallationEvent, installationPayload } from './installation.ts';
import { storedAction } from './outcome-values.ts';
import { handlePullRequestEvent, pullRequestPayload } from './pull-request.ts';
import { handleRepositoryEvent, repositoryPayload } from './repository.ts';
import { z } from 'zod';

export interface Delivery {
  id: string;
  event: string;
  payload: Record<string, unknown>;
}

export type DeliveryResult = { duplicate: true } | { duplicate: false; outcome: string };

/** Webhook events that dispatchDelivery acts on. Others are recorded with an `ignored` outcome. */
export const handledEvents = [
  'check_run',
  'installation',
  'ping',
  'pull_request',
  'repository',
] as const;

// A Map, because the event name comes from a header, and an object literal would also return
// inherited members such as `constructor`.
const payloadSchemas = new Map<string, z.ZodType>([
  ['check_run', checkRunPayload],
  ['installation', installationPayload],
  ['pull_request', pullRequestPayload],
  ['repository', repositoryPayload],
]);

/** Checks the fields the handlers read; returns the problems, or an empty list. */
export function validateDeliveryPayload(event: string, payload: unknown): string[] {
  const schema = payloadSchemas.get(event);
  if (!schema) return [];
  const parsed = schema.safeParse(payload);
  if (parsed.success) return [];
  return parsed.error.issues.map((issue) => `${issue.path.join('.') || 'payload'}: ${issue.message}`);
}

/**
 * Returns `value` as an installation id for the bigint column, or null unless it is a positive
 * safe integer. GitHub's ids are, and events that Fixwright ignores are not validated, so
 * their payloads may carry any JSON number there.
 */
function installationIdOf(value: unknown): number | null {
  const parsed = githubId.safeParse(value);
  return parsed.success ? parsed.data : null;
}

/**
 * Records the delivery id and does the event's database work in one transaction. A delivery
 * id seen before does nothing, so GitHub's redeliveries are harmless.
 */
export async function dispatchDelivery(
  context: AppContext,
  delivery: Delivery,
): Promise<DeliveryResult> {
  const action =
    typeof delivery.payload.action === 'string' ? storedAction(delivery.payload.action) : null;
  const installation = delivery.payload.installation as { id?: unknown } | undefined;
  const installationId = installationIdOf(installation?.id);

  return context.db.transaction(async (tx) => {
    const [fresh] = await tx
      .insert(webhookDeliveries)
      .values({ deliveryId: delivery.id, event: delivery.event, action, installationId })
      .onConflictDoNothing()
      .returning({ deliveryId: webhookDeliveries.deliveryId });
    if (!fresh) return { duplicate: true };

    let outcome: string;
    switch (delivery.event) {
      case 'installation':
        outcome = await handleInstallationEvent(
          tx,
          context.boss,
          installationPayload.parse(delivery.payload),
          context,
        );
        break;
      case 'pull_request':
        outcome = await handlePullRequestEvent(
          tx,
          context.boss,
          pullRequestPayload.parse(delivery.payload),
          context,
        );
        break;
      case 'check_run':
        outcome = await handleCheckRunEvent(
          tx,
          context.boss,
          checkRunPayload.parse(delivery.payload),
          context,
        );
        break;
      case 'repository':
        outcome = await handleRepositoryEvent(tx, repositoryPayload.parse(delivery.payload));
        break;
      case 'ping':
        outcome = 'pong';
        break;
      default:
        outcome = `ignored: event ${delivery.event}`;
    }

    await tx
      .update(webhookDeliveries)
      .set({ outcome })
      .where(eq(webhookDeliveries.deliveryId, delivery.id));
    return { duplicate: false, outcome };
  });
}
