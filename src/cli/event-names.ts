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
