import { z } from 'zod';
import { providers, runStatuses } from '../db/schema/index.ts';
import { maxPatchRequestFindings } from '../autofix/patch-request-limit.ts';
import { describeNoProvider } from '../autofix/no-provider.ts';
import { platformKeySettingNames } from '../autofix/provider-client.ts';
import { providerNames } from '../llm/types.ts';
import { formatCount, formatNumber, pickForm } from '../text/plural.ts';

/**
 * What a "Fix with AI" press did, as the check run shows it. It contains no user ids, plans or
 * token counts, because everyone with read access to the repository can open the check run.
 */
export const fixPressNotice = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('queued'),
    patchRequestId: z.uuid(),
    files: z.number().int().positive(),
    /** Files of the run left out because their estimates do not fit the allowance left. */
    leftOutFiles: z.number().int().nonnegative(),
    /**
     * Findings of the run left out, those of the files left out included. Missing in notices
     * queued before a file could be fixed with some of its findings.
     */
    leftOutFindings: z.number().int().nonnegative().optional(),
    /**
     * The findings of `leftOutFindings` left out only because a preview takes at most
     * `maxPatchRequestFindings`. Missing when none were, and in notices queued before the limit
     * applied to the button.
     */
    overLimitFindings: z.number().int().positive().optional(),
  }),
  z.object({ kind: z.literal('in_progress'), patchRequestId: z.uuid() }),
  z.object({ kind: z.literal('no_file_fits'), files: z.number().int().positive() }),
  /**
   * A press with no usable own key of the user who installed the app, while the provider's
   * rejection of the platform key that would pay first is not due for a re-check. `status` is
   * the HTTP status of the rejection, when the provider sent one.
   */
  z.object({
    kind: z.literal('platform_key_rejected'),
    provider: z.enum(providers),
    status: z.number().int().nullable(),
  }),
  /**
   * A press while no provider has a key that previews may use for the user who installed the
   * app. `unusableOwnKeys` are the providers whose stored own key of that user is unusable.
   */
  z.object({ kind: z.literal('no_provider'), unusableOwnKeys: z.array(z.enum(providers)) }),
  z.object({ kind: z.literal('pull_request_closed') }),
  z.object({ kind: z.literal('no_owner') }),
  z.object({ kind: z.literal('run_not_completed'), status: z.enum(runStatuses) }),
  z.object({ kind: z.literal('no_findings') }),
  z.object({ kind: z.literal('findings_gone') }),
  /** The press was on the check run of an earlier analysis of the run. */
  z.object({ kind: z.literal('earlier_analysis') }),
]);
export type FixPressNotice = z.infer<typeof fixPressNotice>;

/** GitHub rejects a check run whose output summary or text is longer than this. */
export const maxCheckRunOutputLength = 65535;

/** Hidden marker at the start of the text, with the press time in milliseconds since 1970. */
const pressMarker = /^<!-- fixwright:fix-press pressed-at=(\d+) -->/;

/** Returns the press time stored in a check run's text by fixPressText, or null. */
export function readPressedAt(text: string | null | undefined): number | null {
  const match = text ? pressMarker.exec(text) : null;
  return match ? Number(match[1]) : null;
}

/**
 * Escapes markdown in text that comes from GitHub users, such as a login: every ASCII
 * punctuation character gets a backslash, which CommonMark allows before any of them, and
 * line breaks become spaces.
 */
export function escapeMarkdown(text: string): string {
  return text.replace(/\r\n|\r|\n/g, ' ').replace(/[!-/:-@[-`{-~]/g, (character) => `\\${character}`);
}

const again = 'then press **Fix with AI** again';

function previewLink(publicUrl: string | undefined, patchRequestId: string): string {
  const where = 'on the Fixwright dashboard of the user who installed the app';
  return publicUrl ? `[${where}](${publicUrl}/patch-requests/${patchRequestId})` : where;
}

/** URLs that the notice links to, when known. */
interface NoticeLinks {
  /** PUBLIC_URL, the dashboard's URL. */
  publicUrl?: string;
  /** URL of the run's newest check run on GitHub, for a press on an earlier one. */
  newerCheckRunUrl?: string;
}

/** Returns the name of the dashboard's keys page, as a link when PUBLIC_URL is known. */
function keysPageLink(publicUrl: string | undefined): string {
  return publicUrl ? `[keys page of the Fixwright dashboard](${publicUrl}/keys)` : 'keys page of the Fixwright dashboard';
}

/** Describes what the press did and, for a rejected press, what to do next. */
function describeNotice(notice: FixPressNotice, links: NoticeLinks): string {
  const { publicUrl } = links;
  switch (notice.kind) {
    case 'queued': {
      const lines = [
        `Preview queued for ${formatCount(notice.files, 'file')}. It appears ` +
          `${previewLink(publicUrl, notice.patchRequestId)}.`,
      ];
      const leftOutFindings = notice.leftOutFindings ?? 0;
      const overLimit = notice.overLimitFindings ?? 0;
      if (overLimit > 0) {
        const limit = formatNumber(maxPatchRequestFindings);
        lines.push(
          `A preview takes at most ${limit} findings, so the first ${limit}, the most severe ` +
            `first, were queued and ${formatNumber(overLimit)} ${pickForm(overLimit, 'more finding', 'more findings')} ` +
            `${pickForm(overLimit, 'was', 'were')} left out. The user who installed the app can ` +
            "preview them by checking them on the run's page on the Fixwright dashboard.",
        );
      }
      const overAllowance = leftOutFindings - overLimit;
      if (overAllowance > 0 || (leftOutFindings === 0 && notice.leftOutFiles > 0)) {
        const total = notice.files + notice.leftOutFiles;
        const left =
          overAllowance > 0
            ? `${formatCount(overAllowance, 'finding')} of the run's ${formatCount(total, 'file')} ` +
              `${pickForm(overAllowance, 'was', 'were')} left out`
            : `${notice.leftOutFiles} of the run's ${formatCount(total, 'file')} ` +
              `${pickForm(notice.leftOutFiles, 'was', 'were')} left out`;
        lines.push(
          `${left}, because their estimates do not fit the token allowance left of the user who ` +
            'installed the app.',
        );
      }
      return lines.join('\n\n');
    }
    case 'in_progress':
      return (
        'Nothing new was queued, because a preview of this run is already queued or running. ' +
        `It appears ${previewLink(publicUrl, notice.patchRequestId)}. Wait until it ` +
        `finishes, ${again} for another one.`
      );
    case 'no_file_fits':
      return (
        "Nothing was queued, because the token allowance left of the user who installed the app " +
        'does not cover the estimate of ' +
        (notice.files === 1 ? "the run's one file. " : `any of the run's ${formatCount(notice.files, 'file')}. `) +
        'That user can wait for the next period, add their own Groq or Gemini key on the ' +
        'Fixwright dashboard or ask a Fixwright admin for a larger allowance, ' +
        `${again}.`
      );
    case 'platform_key_rejected': {
      const name = providerNames[notice.provider];
      const status = notice.status === null ? '' : ` (HTTP ${notice.status})`;
      const keysPage = keysPageLink(publicUrl);
      return (
        `Nothing was queued, because ${name} rejected the ${name} key that the operator of this ` +
        `Fixwright service provides${status}. The user who installed the app can save their own ` +
        `Groq or Gemini key on the ${keysPage}, or the operator can replace the key in the ` +
        `\`${platformKeySettingNames[notice.provider]}\` environment variable, ${again}.`
      );
    }
    case 'no_provider': {
      const payer = {
        subject: 'the user who installed the app',
        actor: 'that user',
        possessive: 'their',
        keysPage: `the ${keysPageLink(publicUrl)}`,
      };
      // A check run is public to everyone who can read the repository, so it does not say which
      // providers the owner's unusable keys are for. The keys page names them.
      if (notice.unusableOwnKeys.length > 0) {
        return (
          'Nothing was queued. No model provider is available for previews: the keys that the ' +
          'user who installed the app saved are unusable, and previews use no platform key in ' +
          `place of an unusable key of their own. That user can replace or delete them on the ` +
          `${keysPageLink(publicUrl)}, which names them. Deleting them lets previews use a ` +
          'platform key, if the operator of this service sets one. Then press **Fix with AI** again.'
        );
      }
      return `Nothing was queued. ${describeNoProvider(notice.unusableOwnKeys, payer)} Then press **Fix with AI** again.`;
    }
    case 'pull_request_closed':
      return `Nothing was queued, because the pull request is closed. Reopen it, ${again}.`;
    case 'no_owner':
      return (
        'Nothing was queued, because Fixwright has no owner recorded for this installation ' +
        'to pay for fixes. Fixwright records the user who installs the app as its owner, so ' +
        `reinstall the app, ${again}.`
      );
    case 'run_not_completed':
      if (notice.status === 'superseded') {
        return (
          'Nothing was queued, because a newer commit of the pull request has its own check ' +
          'run. Press **Fix with AI** on the check run of the newest commit.'
        );
      }
      if (notice.status === 'queued' || notice.status === 'analyzing') {
        // A push back to this commit or a reopen analyzes the run again, and its report
        // creates a new check run.
        return (
          'Nothing was queued, because this commit is being analyzed again. Its new results ' +
          'will appear in a new Fixwright check run. Press **Fix with AI** there.'
        );
      }
      return (
        `Nothing was queued, because this run is ${notice.status}. Push a new commit, and ` +
        'press **Fix with AI** on its check run.'
      );
    case 'no_findings':
      return 'Nothing was queued, because this run has no findings to fix.';
    case 'earlier_analysis': {
      const newer = links.newerCheckRunUrl
        ? `[a newer Fixwright check run](${links.newerCheckRunUrl})`
        : 'a newer Fixwright check run';
      return (
        'Nothing was queued, because this commit was analyzed again, and the results of that ' +
        `analysis appear in ${newer}. Press **Fix with AI** there.`
      );
    }
    case 'findings_gone':
      return `Nothing was queued, because the run's findings changed meanwhile. Press **Fix with AI** again.`;
  }
}

/**
 * The note under a notice on a check run whose report failed after GitHub created it. The
 * report creates a check run with its first 50 annotations and sends the rest and the summary
 * comment later, so those may be missing.
 */
const reportFailedNote =
  "Posting this commit's results to GitHub failed, so this check run may lack annotations, and " +
  'the pull request may lack the Fixwright summary comment.';

/** Formats a time as `2026-12-05 07:30 UTC`. */
function formatMinute(time: Date): string {
  return `${time.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/**
 * Builds the check run's `text` for a press: a hidden marker with the press time, then who
 * pressed when and the notice. It stays within GitHub's 65,535 characters.
 */
export function fixPressText(
  input: {
    notice: FixPressNotice;
    pressedAt: number;
    sender: string | null;
    /** Adds that posting the commit's results failed, for a check run of a failed report. */
    reportFailed?: boolean;
  } & NoticeLinks,
): string {
  const by = input.sender ? ` by ${escapeMarkdown(input.sender)}` : '';
  const lines = [
    `<!-- fixwright:fix-press pressed-at=${input.pressedAt} -->`,
    '### Fix with AI',
    '',
    `Pressed${by} at ${formatMinute(new Date(input.pressedAt))}.`,
    '',
    describeNotice(input.notice, input),
  ];
  if (input.reportFailed) lines.push('', reportFailedNote);
  const text = lines.join('\n');
  // Only a PUBLIC_URL or GITHUB_URL of tens of thousands of characters could reach the limit.
  return text.length <= maxCheckRunOutputLength
    ? text
    : `${text.slice(0, maxCheckRunOutputLength - 1)}…`;
}
