import type { Provider } from '../db/schema/index.ts';
import { providerNames } from '../llm/types.ts';
import { joinWithAnd, joinWithOr, pickForm } from '../text/plural.ts';
import { platformKeySettingNames } from './provider-client.ts';

/**
 * The user who would pay for a preview, as a message names them: `you` on the dashboard and in
 * the API, a third person in a delivery's outcome and on a check run.
 */
export interface PayerWording {
  /** Subject of the first sentence, such as "you" or "the user who installed the app". */
  subject: string;
  /** Subject of the sentence with what to do, such as "that user". */
  actor: string;
  /** "your" or "their". */
  possessive: string;
  /** Name of the keys page, such as "the keys page", or a markdown link to it. */
  keysPage: string;
}

export const payerYou: PayerWording = {
  subject: 'you',
  actor: 'you',
  possessive: 'your',
  keysPage: 'the keys page',
};

/**
 * Explains that no model provider can pay for a preview and what to do. `unusableOwnKeys` are
 * the providers whose stored own key is unusable. Previews use no platform key in place of such
 * a key (see chooseKeys), so with none of them, this service has no platform key at all.
 */
export function describeNoProvider(unusableOwnKeys: readonly Provider[], payer: PayerWording): string {
  const verb = (you: string, other: string) => (payer.subject === 'you' ? you : other);
  if (unusableOwnKeys.length === 0) {
    return (
      `No model provider is available for previews: this service has no platform key ` +
      `(neither GROQ_API_KEY nor GEMINI_API_KEY is set), and ${payer.subject} ` +
      `${verb('have', 'has')} no Groq or Gemini key of ${payer.possessive} own. ` +
      `${capitalize(payer.actor)} can save ${payer.possessive} own Groq or Gemini key on ` +
      `${payer.keysPage}, or the operator of this service can set GROQ_API_KEY or GEMINI_API_KEY.`
    );
  }
  const keys = joinWithAnd(unusableOwnKeys.map((provider) => `a ${providerNames[provider]}`));
  const settings = joinWithOr(unusableOwnKeys.map((provider) => platformKeySettingNames[provider]));
  const count = unusableOwnKeys.length;
  const it = pickForm(count, 'it', 'them');
  return (
    `No model provider is available for previews: ${payer.subject} ${verb('have', 'has')} saved ` +
    `${keys} key, but ${pickForm(count, 'it is', 'they are')} unusable, and previews use no ` +
    `platform key in place of an unusable key of ${payer.possessive} own. ` +
    `${capitalize(payer.actor)} can replace ${it} with ${pickForm(count, 'a working key', 'working keys')} ` +
    `on ${payer.keysPage}. ` +
    `Deleting ${it} there instead lets previews use the platform key, if the operator of this ` +
    `service sets ${settings}.`
  );
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
