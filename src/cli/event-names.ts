import { emitterEventNames } from '@octokit/webhooks';
import { handledEvents } from '../events/dispatch.ts';
import { joinWithAnd } from '../text/plural.ts';
import { CommandError } from './command-error.ts';

/**
 * GitHub's webhook event names, as sent in X-GitHub-Event, from @octokit/webhooks. Its list also
 * has `event.action` names for `on()` handlers, which no header carries.
 */
const githubEventNames: readonly string[] = emitterEventNames.filter(
  (name) => !name.includes('.'),
);

/** Largest edit distance at which a name is suggested as the intended one. */
const maxSuggestionDistance = 3;

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

function closestName(name: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = maxSuggestionDistance + 1;
  for (const candidate of candidates) {
    const distance = editDistance(name.toLowerCase(), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance: the fewest insertions, deletions and substitutions from `a` to `b`. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}
