import type { RegenerateFileResult } from '../../autofix/regenerate-file.ts';
import {
  AppError,
  fromInstallationUnavailable,
  fromNoProvider,
  fromPlatformKeyRejected,
  fromPullRequestClosed,
  notFound,
} from '../errors.ts';

/**
 * Builds the error for a regeneration of file `fileId` that regeneratePatchFile rejected: 404
 * for a missing file, 503 when no key can pay, else 409 with the reason and what to do. `loadCancelReason` reads the
 * stored reason of a cancelled preview.
 */
export async function describeRegenerateRejection(
  result: Extract<RegenerateFileResult, { ok: false }>,
  fileId: string,
  loadCancelReason: () => Promise<string | null>,
): Promise<AppError> {
  if (result.reason === 'not_found') return notFound('File', fileId);
  if (result.reason === 'installation_unavailable') {
    return fromInstallationUnavailable(result.error);
  }
  if (result.reason === 'pull_request_closed') return fromPullRequestClosed(result.error);
  if (result.reason === 'findings_gone') {
    return new AppError(
      'conflict',
      `The findings of ${result.path} that this preview fixed were replaced when the pull ` +
        'request was analyzed again, so a new model call would get none of them. Start a ' +
        "new preview from the run's new findings.",
    );
  }
  if (result.reason === 'no_payer') {
    const notDone = 'the file was not regenerated and keeps its current result';
    const error =
      fromNoProvider(result.payment, 'The file was not regenerated and keeps its current result.') ??
      fromPlatformKeyRejected(result.payment, notDone);
    if (error) return error;
  }
  if (result.reason === 'over_allowance') {
    return new AppError('conflict', `${result.over.message} The file keeps its current result.`, {
      neededTokens: result.over.neededTokens,
      remainingTokens: result.over.allowance.remaining,
    });
  }
  if (result.reason === 'run_not_completed') {
    return new AppError(
      'conflict',
      result.status === 'superseded'
        ? "This preview's run is superseded by a newer commit, so its files stay as they " +
            'are; request a new preview on the newest run.'
        : `This preview's run is ${result.status}, so its files stay as they are; wait ` +
            'until its analysis has completed, then start a new preview from its findings.',
    );
  }
  if (result.reason === 'cancelled') {
    // The stored reason names what cancelled it: a newer commit, a closed pull request or
    // a suspended or deleted installation.
    const reason = await loadCancelReason();
    return new AppError(
      'conflict',
      `This preview was cancelled, so its files cannot be regenerated. ${reason ?? ''}`.trim(),
    );
  }
  return new AppError(
    'conflict',
    result.reason === 'busy'
      ? `This preview is ${result.status}; wait until it finishes, then regenerate the file.`
      : 'This preview is applied, being applied, or may have been applied by an apply that GitHub did not confirm, so its files stay as they are; request a new preview on the pull request to change them.',
  );
}
