import { installationState, type RunInstallation } from '../../runs/visible-runs.ts';

/**
 * Builds the `installation` field of a run or patch request: the installation's id, account
 * login and state, and when Fixwright marked it suspended or uninstalled (ISO 8601, else null).
 */
export function installationJson(installationId: number, installation: RunInstallation) {
  return {
    id: installationId,
    account: installation.accountLogin,
    state: installationState(installation),
    suspendedAt: installation.suspendedAt?.toISOString() ?? null,
    uninstalledAt: installation.deletedAt?.toISOString() ?? null,
  };
}
