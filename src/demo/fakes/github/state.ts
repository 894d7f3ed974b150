import { githubTimestamp } from './route-helpers.ts';
import { FakeGitHubError, type Credential } from './router.ts';
import type {
  InstallationRecord,
  PullRequestRecord,
  RepositoryRecord,
} from './payloads.ts';
import type { WebhookDeliveryRecord, WebhookTarget } from './webhooks.ts';

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

/** One check run annotation as the checks API accepts it. */
export interface AnnotationRecord {
  path: string;
  start_line: number;
  end_line: number;
  annotation_level: 'notice' | 'warning' | 'failure';
  message: string;
  title?: string;
  raw_details?: string;
}

/** A button of a check run that sends the `requested_action` webhook event. */
export interface CheckRunActionRecord {
  label: string;
  description: string;
  identifier: string;
}

export interface CheckRunRecord {
  id: number;
  owner: string;
  repo: string;
  name: string;
  headSha: string;
  externalId: string;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
  detailsUrl: string | null;
  startedAt: string;
  completedAt: string | null;
  output: { title: string | null; summary: string | null; text: string | null };
  annotations: AnnotationRecord[];
  actions: CheckRunActionRecord[];
  installationId: number | null;
  /** The app that created the check run: the fake's own, or another that a test added. */
  app: { id: number; slug: string; name: string };
}

export interface IssueCommentRecord {
  id: number;
  owner: string;
  repo: string;
  issueNumber: number;
  body: string;
  user: string;
  userType: 'User' | 'Bot';
  /** Set for comments that an installation token created. */
  installationId: number | null;
  createdAt: string;
  updatedAt: string;
}

export interface ReviewCommentRecord {
  id: number;
  path: string;
  body: string;
  line: number;
  side: 'LEFT' | 'RIGHT';
  startLine: number | null;
  startSide: 'LEFT' | 'RIGHT' | null;
}

export interface ReviewRecord {
  id: number;
  owner: string;
  repo: string;
  pullNumber: number;
  commitId: string;
  body: string;
  event: string;
  state: string;
  user: string;
  userType: 'User' | 'Bot';
  submittedAt: string;
  comments: ReviewCommentRecord[];
}

/** Everything the fake stores: app identity, installations, tokens, repositories and pulls. */
export class FakeState {
  readonly installations = new Map<number, InstallationRecord>();
  readonly tokens = new Map<string, IssuedToken>();
  readonly checkRuns = new Map<number, CheckRunRecord>();
  readonly issueComments = new Map<number, IssueCommentRecord>();
  readonly reviews: ReviewRecord[] = [];
  /**
   * Commits that the Git Data API created without a custom author or committer, which GitHub
   * signs for an app and reports as verified.
   */
  readonly signedCommits = new Set<string>();
  /** Endpoint for the fake's webhooks, or null to send none. */
  webhookTarget: WebhookTarget | null = null;
  /** Webhooks sent so far, in the order their deliveries ended. */
  readonly webhookDeliveries: WebhookDeliveryRecord[] = [];
  /** Deliveries still waiting for a response. */
  readonly pendingDeliveries = new Set<Promise<void>>();
  private lastId = 1000;
  private readonly repositories = new Map<string, RepositoryRecord>();
  private readonly pullRequests = new Map<string, PullRequestRecord>();

  constructor(
    readonly appId: string,
    readonly publicKeyPem: string,
    readonly baseUrl: string,
  ) {}

  /** Returns a new id for a check run, comment or review; ids grow like GitHub's. */
  nextId(): number {
    this.lastId += 1;
    return this.lastId;
  }

  addRepository(repository: RepositoryRecord): void {
    this.repositories.set(repositoryKey(repository.owner, repository.repo), repository);
  }

  /** Removes a repository. Its pull requests stay stored, but requests for them get 404. */
  removeRepository(owner: string, repo: string): boolean {
    return this.repositories.delete(repositoryKey(owner, repo));
  }

  /** Returns the repositories of `owner`, in the order of their ids. */
  repositoriesOf(owner: string): RepositoryRecord[] {
    return [...this.repositories.values()]
      .filter((repository) => repository.owner.toLowerCase() === owner.toLowerCase())
      .sort((a, b) => a.id - b.id);
  }

  /** Returns the pull requests of `repository`, newest (highest number) first. */
  pullRequestsOf(repository: RepositoryRecord): PullRequestRecord[] {
    const key = repositoryKey(repository.owner, repository.repo);
    return [...this.pullRequests.values()]
      .filter((pullRequest) => repositoryKey(pullRequest.owner, pullRequest.repo) === key)
      .sort((a, b) => b.number - a.number);
  }

  findRepository(owner: string, repo: string): RepositoryRecord | undefined {
    return this.repositories.get(repositoryKey(owner, repo));
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

  /**
   * Moves the head of every pull request on `branch` to `sha` and sets its `updatedAt` to now,
   * as a push does on GitHub. Returns the pull requests whose head changed, each with its
   * previous head.
   * NOTE: only pull requests whose head branch is in their base repository move. A push to a
   * fork moves no pull request in the fake.
   */
  movePullRequestHeads(
    repository: RepositoryRecord,
    branch: string,
    sha: string,
  ): { pullRequest: PullRequestRecord; before: string }[] {
    const moved: { pullRequest: PullRequestRecord; before: string }[] = [];
    const pushed = repositoryKey(repository.owner, repository.repo);
    for (const pullRequest of this.pullRequests.values()) {
      const head =
        pullRequest.headRepo === null
          ? null
          : repositoryKey(pullRequest.headOwner, pullRequest.headRepo);
      const sameRepository = repositoryKey(pullRequest.owner, pullRequest.repo) === pushed;
      if (!sameRepository || head !== pushed || pullRequest.headRef !== branch) continue;
      if (pullRequest.headSha === sha) continue;
      moved.push({ pullRequest, before: pullRequest.headSha });
      pullRequest.headSha = sha;
      // GitHub's pull request shows the push's time, as its `synchronize` event does.
      pullRequest.updatedAt = githubTimestamp(new Date());
    }
    return moved;
  }

  findPullRequest(owner: string, repo: string, number: number): PullRequestRecord | undefined {
    return this.pullRequests.get(`${repositoryKey(owner, repo)}#${number}`);
  }

  requirePullRequest(repository: RepositoryRecord, number: number): PullRequestRecord {
    const pullRequest = this.findPullRequest(repository.owner, repository.repo, number);
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
