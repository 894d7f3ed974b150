import { emitterEventNames } from '@octokit/webhooks';
import { handledEvents } from '../events/dispatch.ts';
import { closestName } from '../text/closest-name.ts';
import { joinWithAnd } from '../text/plural.ts';
import { CommandError } from './command-error.ts';

/**
 * GitHub's webhook event names, as sent in X-GitHub-Event, from @octokit/webhooks. Its list also
 * has `event.action` names for `on()` handlers, which no header carries.
 */
const githubEventNames: readonly string[] = emitterEventNames.filter(
  (name) => !name.includes('.'),
);

/**
 * Checks a `--event` value. Raises CommandError for a name GitHub never sends, suggesting the
 * closest one, and returns a warning for a GitHub event that Fixwright ignores, else null.
 */
export function checkEventName(name: string): string | null {
  const handled = joinWithAnd(handledEvents);
  if (name.includes('.')) {
    const [event = '', action = ''] = name.split('.', 2);
    if (githubEventNames.includes(event)) {
      throw new CommandError(
        `Invalid --event ${JSON.stringify(name)}: X-GitHub-Event carries only the event name. ` +
          `Use --event ${event} and put "action": ${JSON.stringify(action)} in the payload.`,
      );
    }
  }
  if (!githubEventNames.includes(name)) {
    const closest = closestName(name, githubEventNames);
    const suggestion = closest ? ` Did you mean ${JSON.stringify(closest)}?` : '';
    throw new CommandError(
      `Unknown --event ${JSON.stringify(name)}: GitHub sends no such webhook event.` +
        `${suggestion} Fixwright acts on ${handled}.`,
    );
  }
  if (!(handledEvents as readonly string[]).includes(name)) {
    return (
      `Warning: Fixwright records ${name} deliveries but does nothing with them; it acts on ` +
      `${handled}.`
    );
  }
  return null;
}

/**
 * Keys that payloads of many events carry besides their own, so a file that has one of them
 * looks like that event's payload only when it has no more specific key.
 */
const sharedPayloadKeys = ['installation', 'repository', 'organization'];

/**
 * Checks that a payload for `event` has the top-level key that such a payload carries, for the
 * events that Fixwright acts on and whose payload has a key of their own name. Raises
 * CommandError naming the event that the payload looks like, by the event-named keys it has.
 */
export function checkPayloadMatchesEvent(event: string, payload: unknown, file: string): void {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return;
  if (event === 'ping' || !(handledEvents as readonly string[]).includes(event)) return;
  if (Object.hasOwn(payload, event)) return;

  const eventKeys = githubEventNames.filter((name) => name !== event && Object.hasOwn(payload, name));
  const lookalike =
    eventKeys.find((name) => !sharedPayloadKeys.includes(name)) ??
    // An installation event's payload has `installation` but no repository.
    (eventKeys.includes('installation') && !eventKeys.includes('repository') ? 'installation' : undefined);
  const problem = `Invalid --payload ${JSON.stringify(file)} for --event ${event}: the file has no "${event}" key`;
  if (lookalike === undefined) {
    throw new CommandError(`${problem}, which every ${event} payload has. Give ${withArticle(event)} payload file.`);
  }
  throw new CommandError(
    `${problem} but has "${lookalike}", so --event and the file do not match: the file looks ` +
      `like ${withArticle(lookalike)} payload. Use --event ${lookalike}, or give ` +
      `${withArticle(event)} payload file.`,
  );
}

function withArticle(eventName: string): string {
  return `${/^[aeiou]/.test(eventName) ? 'an' : 'a'} ${eventName}`;
}
