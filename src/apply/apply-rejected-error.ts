import type { FailedGitHubRequest } from '../github/request-errors.ts';

/**
 * Raised when a patch request cannot be applied: `bad_request` for an invalid mode, `conflict`
 * for its state, a closed or merged pull request or a moved branch, `bad_gateway` when GitHub
 * rejected a request, `service_unavailable` when the diff of a file's suggestions timed out or
 * its thread failed. The details of a `bad_gateway` name GitHub's status, message and the
 * rejected request. Those of a closed pull request name the repository, the pull request and
 * when it was closed, those of a suspended or uninstalled installation name it, its account and
 * the reason, those of a claim in progress name when it was taken and when it goes stale, and
 * those of a commit rejected for workflow files list the files and the token's Workflows
 * permission.
 */
export class ApplyRejectedError extends Error {
  override name = 'ApplyRejectedError';
  constructor(
    readonly code: 'bad_request' | 'conflict' | 'bad_gateway' | 'service_unavailable',
    message: string,
    readonly details?: Record<string, unknown>,
    /**
     * Log event of a rejection after the apply claim, such as `apply.pull_request_merged`,
     * which names what happened. `apply.rejected` by default.
     */
    readonly event = 'apply.rejected',
  ) {
    super(message);
  }
}

/**
 * The `bad_gateway` rejection of an apply whose ref update or review may have taken effect:
 * GitHub did not confirm the write, and the read that checks it failed too. The patch request
 * stores that outcome, so the next apply looks for the commit or review before it writes. An
 * apply job retries it for that reason, unlike other rejections.
 */
export class ApplyUnconfirmedError extends ApplyRejectedError {
  override name = 'ApplyUnconfirmedError';

  constructor(
    code: ApplyRejectedError['code'],
    message: string,
    details: Record<string, unknown>,
    /**
     * The read that checked the write and failed, the apply's last failed request, or null when
     * the read's error names no request. toSafeError reads it into the logged error's `request`.
     */
    readonly failedRequest: FailedGitHubRequest | null,
  ) {
    super(code, message, details);
  }
}
