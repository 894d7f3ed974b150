import { FakeGitHubError, type Credential } from './router.ts';
import type {
  InstallationRecord,
  PullRequestRecord,
  RepositoryRecord,
} from './payloads.ts';

/** Installation access token the fake issued. */
export interface IssuedToken {
  token: string;
  installationId: number;
  expiresAt: Date;
}

function repositoryKey(owner: string, repo: string): string {
  // GitHub treats owner and repository names case-insensitively.
  return `${owner}/${repo}`.toLowerCase();
}

/** Everything the fake stores: app identity, installations, tokens, repositories and pulls. */
export class FakeState {
  readonly installations = new Map<number, InstallationRecord>();
  readonly tokens = new Map<string, IssuedToken>();
  private readonly repositories = new Map<string, RepositoryRecord>();
  private readonly pullRequests = new Map<string, PullRequestRecord>();

  constructor(
    readonly appId: string,
    readonly publicKeyPem: string,
    readonly baseUrl: string,
  ) {}

  addRepository(repository: RepositoryRecord): void {
    this.repositories.set(repositoryKey(repository.owner, repository.repo), repository);
  }

  repositoryById(id: number): RepositoryRecord | undefined {
    return [...this.repositories.values()].find((repository) => repository.id === id);
  }

  addPullRequest(pullRequest: PullRequestRecord): void {
    const key = `${repositoryKey(pullRequest.owner, pullRequest.repo)}#${pullRequest.number}`;
    this.pullRequests.set(key, pullRequest);
  }

  /**
   * Returns the repository that an installation token may read, or raises 404 as GitHub does
   * when the repository is missing or belongs to another account than the installation's.
   */
  requireRepository(credential: Credential, owner: string, repo: string): RepositoryRecord {
    const repository = this.repositories.get(repositoryKey(owner, repo));
    if (!repository) {
      throw new FakeGitHubError(404, 'Not Found');
    }
    if (credential.kind === 'installation') {
      const installation = this.installations.get(credential.installationId);
      const accountLogin = installation?.account.login.toLowerCase();
      if (accountLogin !== repository.owner.toLowerCase()) {
        throw new FakeGitHubError(404, 'Not Found');
      }
    }
    return repository;
  }

  requirePullRequest(repository: RepositoryRecord, number: number): PullRequestRecord {
    const key = `${repositoryKey(repository.owner, repository.repo)}#${number}`;
    const pullRequest = this.pullRequests.get(key);
    if (!pullRequest) {
      throw new FakeGitHubError(404, 'Not Found');
    }
    return pullRequest;
  }

  requireInstallation(id: number): InstallationRecord {
    const installation = this.installations.get(id);
    if (!installation) {
      throw new FakeGitHubError(404, 'Not Found');
    }
    return installation;
  }
}
