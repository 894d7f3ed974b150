import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyAppJwt } from './github/jwt.ts';
import type { InstallationAccount, PullRequestRecord } from './github/payloads.ts';
import {
  compilePattern,
  errorBody,
  FakeGitHubError,
  matchPattern,
  type CompiledPattern,
  type Credential,
  type FakeResponse,
  type RecordedRequest,
  type Route,
} from './github/router.ts';
import { defaultRoutes } from './github/routes.ts';
import { githubTimestamp } from './github/route-helpers.ts';
import {
  FakeState,
  type CheckRunRecord,
  type IssueCommentRecord,
  type IssuedToken,
  type ReviewRecord,
} from './github/state.ts';
import type { WebhookDeliveryRecord, WebhookTarget } from './github/webhooks.ts';

/**
 * Fake GitHub REST API on 127.0.0.1 for the tests and `npm run demo`. It issues installation
 * tokens to callers that present a JWT signed by the app's key, and serves pull request files,
 * comparisons, contents and blobs that it computes with git from real repositories on disk. It
 * also keeps check runs, issue comments and reviews in memory, and writes blobs, trees, commits
 * and refs into those repositories.
 * With a webhook target set, it sends `pull_request.synchronize` when a commit moves the head
 * of an open pull request.
 * Requests to unknown routes get a 404 and are recorded like every other request.
 */

export type { FakeResponse, RecordedRequest, Route } from './github/router.ts';
export type {
  AnnotationRecord,
  CheckRunRecord,
  FakeState,
  IssueCommentRecord,
  IssuedToken,
  ReviewRecord,
} from './github/state.ts';
export type { WebhookDeliveryRecord, WebhookTarget } from './github/webhooks.ts';
export { FakeGitHubError } from './github/router.ts';

/** Fields of a pull request that `updatePullRequest` can change. */
export type PullRequestChanges = Partial<
  Pick<
    PullRequestRecord,
    | 'baseSha'
    | 'baseRef'
    | 'headSha'
    | 'headRef'
    | 'headOwner'
    | 'headRepo'
    | 'state'
    | 'closedAt'
    | 'mergedAt'
    | 'updatedAt'
  >
>;

/** Response queued for the next request that matches `method` and `path`, usually an error. */
export interface QueuedResponse {
  method: string;
  /** A route pattern such as `/repos/:owner/:repo/contents/*path`, or a RegExp. */
  path: string | RegExp;
  status: number;
  headers?: Record<string, string>;
  /** Defaults to GitHub's error body with a message for `status`. */
  body?: unknown;
  /** Closes the connection without a response; `status` and `body` are then not sent. */
  dropConnection?: boolean;
  /** Sends the body one byte every `trickleMs` milliseconds (see FakeResponse). */
  trickleMs?: number;
}

export interface FakeGitHub {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:43123`. */
  url: string;
  /** Every request received, in arrival order, including unknown routes and rejected ones. */
  requests: RecordedRequest[];
  /** Installation tokens issued so far. */
  readonly issuedTokens: IssuedToken[];
  /**
   * Accepts tokens that an earlier fake issued until they expire, so that a service which caches
   * its installation tokens goes on after the fake restarts.
   */
  restoreTokens(tokens: IssuedToken[]): void;
  /** Errors that handlers threw. The fake returned status 500 for each of them. */
  handlerErrors: Error[];
  addRepository(repository: {
    owner: string;
    repo: string;
    id: number;
    gitDir: string;
    archived?: boolean;
  }): void;
  /**
   * Removes a repository, as removing it from the installation or deleting it does: the
   * installation's listing leaves it out and its requests get 404. It sends no webhook.
   */
  removeRepository(target: { owner: string; repo: string }): void;
  /** Archives or unarchives a repository added before. It sends no webhook. */
  setRepositoryArchived(target: { owner: string; repo: string }, archived: boolean): void;
  addPullRequest(pullRequest: {
    owner: string;
    repo: string;
    number: number;
    baseSha: string;
    headSha: string;
    headRef: string;
    title: string;
    baseRef?: string;
    /** Owner of the head branch's repository; defaults to `owner`. */
    headOwner?: string;
    /** The head branch's repository; defaults to `repo`, and null means it was deleted. */
    headRepo?: string | null;
    body?: string | null;
    state?: 'open' | 'closed';
    closedAt?: string | null;
    mergedAt?: string | null;
    /** GitHub timestamp of its creation; defaults to 2024-01-01T00:00:00Z. */
    createdAt?: string;
    draft?: boolean;
    user?: string;
  }): void;
  /**
   * Changes a pull request added before, as a push, a close, a merge, a change of its base
   * branch or deleting the head repository does on GitHub. It sends no webhook. Throws when the pull request is unknown, and
   * when the change would leave a merged pull request open.
   */
  updatePullRequest(
    target: { owner: string; repo: string; number: number },
    changes: PullRequestChanges,
  ): void;
  /**
   * Registers an installation, or replaces the one with the same id. Its tokens may read
   * repositories owned by `account.login`. A suspended installation gets 403 from the access
   * token endpoint, and GET /app/installations/:installation_id reports it with `suspended_at`
   * (the time of this call) and `suspended_by` (`suspendedBy`, by default `account.login`).
   */
  setInstallation(installation: {
    id: number;
    account: InstallationAccount;
    permissions?: Record<string, 'read' | 'write'>;
    suspended?: boolean;
    suspendedBy?: string;
  }): void;
  /**
   * Removes an installation, as uninstalling the app does: its token requests and
   * GET /app/installations/:installation_id get 404.
   */
  removeInstallation(id: number): void;
  /** Check runs created so far, in creation order. */
  readonly checkRuns: CheckRunRecord[];
  /** Deletes a check run, so that its requests get 404 as for one GitHub no longer has. */
  removeCheckRun(id: number): void;
  /**
   * Adds a completed check run that another GitHub App, `app`, created on `headSha`, as an
   * app installed on the same repository can.
   */
  addForeignCheckRun(checkRun: {
    owner: string;
    repo: string;
    name: string;
    headSha: string;
    externalId: string;
    app: { id: number; slug: string; name: string };
  }): CheckRunRecord;
  /** Issue comments, in creation order. */
  readonly issueComments: IssueCommentRecord[];
  /** Pull request reviews, in creation order. */
  readonly reviews: ReviewRecord[];
  /** Adds a COMMENT review that `user` posted, an account of type `userType` (default User). */
  addReview(review: {
    owner: string;
    repo: string;
    pullNumber: number;
    commitId: string;
    body: string;
    user: string;
    userType?: 'User' | 'Bot';
  }): ReviewRecord;
  /**
   * Adds a comment written by `user` (default `octocat`, a User) to an issue or pull request.
   * With `installationId`, the comment is listed as made through the app, as the comments that
   * the app's installation token creates are.
   */
  addIssueComment(comment: {
    owner: string;
    repo: string;
    issueNumber: number;
    body: string;
    user?: string;
    userType?: 'User' | 'Bot';
    installationId?: number;
  }): IssueCommentRecord;
  /** Deletes an issue comment, as a user can on GitHub. */
  removeIssueComment(id: number): void;
  /**
   * Returns this response to the next request that matches, before authentication and in
   * place of the route's own response. Queued responses are used in the order queued.
   */
  queueResponse(response: QueuedResponse): void;
  /** Adds an endpoint. Routes added later take precedence over earlier ones. */
  addRoute(route: Route<FakeState>): void;
  /**
   * Sets the endpoint that receives the fake's webhooks, signed with `secret`, or null to send
   * none (the default). A commit that moves the head of an open pull request sends
   * `pull_request.synchronize` there, as GitHub does after a push.
   */
  setWebhookTarget(target: WebhookTarget | null): void;
  /** Webhooks sent so far, in the order their deliveries ended. */
  readonly webhookDeliveries: WebhookDeliveryRecord[];
  /** Waits for the webhook deliveries under way, then stops the server. */
  close(): Promise<void>;
}

/** RSA key pair for a GitHub App of the tests or the demo, in the PEM formats GitHub uses. */
export interface AppKeyPair {
  /** PKCS#1 (`BEGIN RSA PRIVATE KEY`), the format of the key GitHub lets app owners download. */
  privateKeyPem: string;
  /** SPKI (`BEGIN PUBLIC KEY`). */
  publicKeyPem: string;
}

export function generateAppKeyPair(): AppKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

const secondaryRateLimitDocs =
  'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits';

/**
 * 403 or 429 that GitHub sends for a secondary rate limit, with a wait of `retryAfterSeconds`.
 * GitHub's REST API docs allow either status for it.
 */
export function secondaryRateLimitError(
  method: string,
  path: string | RegExp,
  retryAfterSeconds: number,
  status: 403 | 429 = 403,
): QueuedResponse {
  return {
    method,
    path,
    status,
    headers: { 'retry-after': String(retryAfterSeconds) },
    body: errorBody(
      status,
      'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.',
      secondaryRateLimitDocs,
    ),
  };
}

/** 403 that GitHub sends when the primary rate limit is used up until `resetEpochSeconds`. */
export function primaryRateLimitError(
  method: string,
  path: string | RegExp,
  resetEpochSeconds: number,
): QueuedResponse {
  return {
    method,
    path,
    status: 403,
    headers: {
      'x-ratelimit-limit': '5000',
      'x-ratelimit-remaining': '0',
      'x-ratelimit-used': '5000',
      'x-ratelimit-reset': String(resetEpochSeconds),
      'x-ratelimit-resource': 'core',
    },
    body: errorBody(
      403,
      'API rate limit exceeded for installation.',
      'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api',
    ),
  };
}

/** The permissions README.md lists for the GitHub App: Contents, Pull requests and Checks: write. */
export const defaultPermissions: Record<string, 'read' | 'write'> = {
  checks: 'write',
  contents: 'write',
  metadata: 'read',
  pull_requests: 'write',
};

const statusMessages: Record<number, string> = {
  400: 'Bad Request',
  401: 'Bad credentials',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  422: 'Validation Failed',
  500: 'Server Error',
  502: 'Server Error',
  503: 'Service Unavailable',
};

const exposedHeaders =
  'ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, X-RateLimit-Remaining, ' +
  'X-RateLimit-Used, X-RateLimit-Resource, X-RateLimit-Reset, X-OAuth-Scopes, ' +
  'X-Accepted-OAuth-Scopes, X-Poll-Interval, X-GitHub-Media-Type, X-GitHub-SSO, ' +
  'X-GitHub-Request-Id, Deprecation, Sunset';

const rateLimit = 5000;

function requestId(): string {
  const hex = (bytes: number) => randomBytes(bytes).toString('hex').toUpperCase();
  return `${hex(2)}:${hex(2)}:${hex(3)}:${hex(3)}:${hex(4)}`;
}

function flattenHeaders(message: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers)) {
    if (value !== undefined) {
      headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
  }
  return headers;
}

async function readBody(message: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of message) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Writes `payload` one byte every `intervalMs`, and stops when the client disconnects. */
function trickle(response: ServerResponse, payload: Buffer, intervalMs: number): void {
  response.flushHeaders();
  let sent = 0;
  let timer: NodeJS.Timeout | undefined;
  const writeNext = () => {
    if (response.destroyed) return;
    response.write(payload.subarray(sent, sent + 1));
    sent += 1;
    if (sent === payload.length) {
      response.end();
      return;
    }
    timer = setTimeout(writeNext, intervalMs);
  };
  response.on('close', () => clearTimeout(timer));
  writeNext();
}

function githubError(status: number, message: string, documentationUrl?: string): FakeResponse {
  const error = new FakeGitHubError(status, message, documentationUrl);
  return { status, body: errorBody(status, error.message, error.documentationUrl) };
}

/** Throws for a pull request that is merged but open, which GitHub never reports. */
function requireMergedClosed(pullRequest: PullRequestRecord): void {
  if (pullRequest.mergedAt !== null && pullRequest.state !== 'closed') {
    const { owner, repo, number } = pullRequest;
    throw new Error(
      `Pull request ${owner}/${repo}#${number} has mergedAt, so its state must be closed.`,
    );
  }
}

interface CompiledRoute {
  route: Route<FakeState>;
  compiled: CompiledPattern;
}

interface PendingResponse {
  queued: QueuedResponse;
  compiled: CompiledPattern | null;
}

export async function startFakeGitHub(options: {
  appId: string;
  publicKeyPem: string;
  /** Port on 127.0.0.1; a free port when unset or 0. A port in use rejects with EADDRINUSE. */
  port?: number;
}): Promise<FakeGitHub> {
  const routes: CompiledRoute[] = defaultRoutes.map((route) => ({
    route,
    compiled: compilePattern(route.pattern),
  }));
  const pendingResponses: PendingResponse[] = [];
  const requests: RecordedRequest[] = [];
  const handlerErrors: Error[] = [];
  const usedRequests = new Map<string, number>();
  const rateLimitReset = Math.floor(Date.now() / 1000) + 3600;
  let state: FakeState | undefined;

  function authenticate(route: Route<FakeState>, authorization: string | undefined) {
    if (route.auth === 'none') {
      return { credential: { kind: 'none' } as Credential };
    }
    if (!authorization) {
      return { rejection: githubError(401, 'Requires authentication') };
    }
    const [scheme = '', secret = ''] = authorization.trim().split(/\s+/);
    const lowerScheme = scheme.toLowerCase();
    const current = state as FakeState;

    if (route.auth === 'app') {
      if (lowerScheme !== 'bearer') {
        return { rejection: githubError(401, 'A JSON web token could not be decoded') };
      }
      const check = verifyAppJwt(secret, {
        appId: options.appId,
        publicKeyPem: options.publicKeyPem,
      });
      if (!check.valid) {
        return { rejection: githubError(401, check.message) };
      }
      return { credential: { kind: 'app' } as Credential };
    }

    const issued = current.tokens.get(secret);
    const schemeAllowed = lowerScheme === 'token' || lowerScheme === 'bearer';
    if (!schemeAllowed || !issued || issued.expiresAt.getTime() <= Date.now()) {
      return { rejection: githubError(401, 'Bad credentials') };
    }
    const credential: Credential = {
      kind: 'installation',
      installationId: issued.installationId,
      token: secret,
    };
    return { credential };
  }

  function rateLimitHeaders(credential: Credential | undefined): Record<string, string> {
    if (credential?.kind !== 'installation') {
      return {};
    }
    const used = (usedRequests.get(credential.token) ?? 0) + 1;
    usedRequests.set(credential.token, used);
    return {
      'x-ratelimit-limit': String(rateLimit),
      'x-ratelimit-remaining': String(Math.max(0, rateLimit - used)),
      'x-ratelimit-reset': String(rateLimitReset),
      'x-ratelimit-used': String(used),
      'x-ratelimit-resource': 'core',
    };
  }

  /** Takes the first queued response whose method matches and whose path matches any of `paths`. */
  function takePendingResponse(method: string, paths: string[]): QueuedResponse | undefined {
    const index = pendingResponses.findIndex(({ queued, compiled }) => {
      if (queued.method.toUpperCase() !== method) {
        return false;
      }
      return paths.some((pathname) => {
        if (queued.path instanceof RegExp) {
          return queued.path.test(pathname);
        }
        return compiled !== null && matchPattern(compiled, pathname) !== null;
      });
    });
    if (index === -1) {
      return undefined;
    }
    const [pending] = pendingResponses.splice(index, 1);
    return pending?.queued;
  }

  /** Maps `/repositories/{id}/...`, the form of GitHub's pagination links, to owner and name. */
  function canonicalPath(pathname: string): string {
    const match = /^\/repositories\/(\d+)(\/.*)?$/.exec(pathname);
    if (!match) {
      return pathname;
    }
    const repository = state?.repositoryById(Number(match[1]));
    if (!repository) {
      return pathname;
    }
    return `/repos/${repository.owner}/${repository.repo}${match[2] ?? ''}`;
  }

  async function route(request: RecordedRequest, url: URL): Promise<FakeResponse> {
    const pathname = canonicalPath(url.pathname);
    const queued = takePendingResponse(request.method, [url.pathname, pathname]);
    if (queued) {
      const message = statusMessages[queued.status] ?? 'Error';
      return {
        status: queued.status,
        headers: queued.headers ?? {},
        body: queued.body ?? errorBody(queued.status, message, 'https://docs.github.com/rest'),
        dropConnection: queued.dropConnection,
        trickleMs: queued.trickleMs,
      };
    }

    // Later routes take precedence, so tests can override a default endpoint.
    for (const { route: candidate, compiled } of [...routes].reverse()) {
      if (candidate.method !== request.method) {
        continue;
      }
      const params = matchPattern(compiled, pathname);
      if (!params) {
        continue;
      }
      const authentication = authenticate(candidate, request.headers.authorization);
      if (authentication.rejection) {
        return authentication.rejection;
      }
      const credential = authentication.credential;
      try {
        const response = await candidate.handle({
          request,
          params,
          url,
          credential,
          state: state as FakeState,
        });
        return {
          ...response,
          headers: { ...rateLimitHeaders(credential), ...response.headers },
        };
      } catch (error) {
        if (error instanceof FakeGitHubError) {
          return {
            status: error.status,
            headers: rateLimitHeaders(credential),
            body: errorBody(error.status, error.message, error.documentationUrl),
          };
        }
        const failure = error instanceof Error ? error : new Error(String(error));
        handlerErrors.push(failure);
        return githubError(500, `Fake GitHub handler failed: ${failure.message}`);
      }
    }
    return githubError(404, 'Not Found');
  }

  function send(response: ServerResponse, result: FakeResponse): void {
    if (result.dropConnection) {
      response.destroy();
      return;
    }
    const headers: Record<string, string> = {
      'content-type': 'application/json; charset=utf-8',
      'x-github-media-type': 'github.v3; format=json',
      'x-github-api-version-selected': '2022-11-28',
      'x-github-request-id': requestId(),
      'access-control-expose-headers': exposedHeaders,
      ...result.headers,
    };
    let payload: Buffer | undefined;
    if (result.body === undefined || result.status === 204) {
      payload = undefined;
    } else if (Buffer.isBuffer(result.body)) {
      payload = result.body;
    } else if (typeof result.body === 'string') {
      payload = Buffer.from(result.body, 'utf8');
    } else {
      payload = Buffer.from(JSON.stringify(result.body), 'utf8');
    }
    if (payload) {
      headers['content-length'] = String(payload.length);
    }
    response.writeHead(result.status, headers);
    if (payload && result.trickleMs !== undefined) {
      trickle(response, payload, result.trickleMs);
      return;
    }
    response.end(payload);
  }

  async function handle(message: IncomingMessage, response: ServerResponse): Promise<void> {
    const receivedAt = Date.now();
    const url = new URL(message.url ?? '/', baseUrl);
    const headers = flattenHeaders(message);
    const raw = await readBody(message);
    let body: unknown = undefined;
    let parseFailed = false;
    if (raw.length > 0) {
      const text = raw.toString('utf8');
      body = text;
      if ((headers['content-type'] ?? '').includes('json')) {
        try {
          body = JSON.parse(text);
        } catch {
          parseFailed = true;
        }
      }
    }
    const request: RecordedRequest = {
      method: (message.method ?? 'GET').toUpperCase(),
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body,
      receivedAt,
    };
    requests.push(request);

    if (parseFailed) {
      send(response, githubError(400, 'Problems parsing JSON'));
      return;
    }
    send(response, await route(request, url));
  }

  const server = createServer((message, response) => {
    handle(message, response).catch((error: unknown) => {
      handlerErrors.push(error instanceof Error ? error : new Error(String(error)));
      if (!response.headersSent) {
        send(response, githubError(500, 'Server Error'));
      } else {
        response.destroy();
      }
    });
  });
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  state = new FakeState(options.appId, options.publicKeyPem, baseUrl);
  const fakeState = state;

  return {
    url: baseUrl,
    requests,
    handlerErrors,
    get issuedTokens() {
      return [...fakeState.tokens.values()];
    },
    restoreTokens(tokens) {
      for (const token of tokens) fakeState.tokens.set(token.token, token);
    },
    get checkRuns() {
      return [...fakeState.checkRuns.values()];
    },
    get issueComments() {
      return [...fakeState.issueComments.values()];
    },
    get reviews() {
      return [...fakeState.reviews];
    },
    get webhookDeliveries() {
      return [...fakeState.webhookDeliveries];
    },
    setWebhookTarget(target) {
      fakeState.webhookTarget = target ? { ...target } : null;
    },
    addIssueComment(comment) {
      const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
      const record: IssueCommentRecord = {
        id: fakeState.nextId(),
        owner: comment.owner,
        repo: comment.repo,
        issueNumber: comment.issueNumber,
        body: comment.body,
        user: comment.user ?? 'octocat',
        userType: comment.userType ?? 'User',
        installationId: comment.installationId ?? null,
        createdAt: now,
        updatedAt: now,
      };
      fakeState.issueComments.set(record.id, record);
      return record;
    },
    removeIssueComment(id) {
      fakeState.issueComments.delete(id);
    },
    removeCheckRun(id) {
      fakeState.checkRuns.delete(id);
    },
    addForeignCheckRun(checkRun) {
      const now = githubTimestamp(new Date());
      const record: CheckRunRecord = {
        id: fakeState.nextId(),
        owner: checkRun.owner,
        repo: checkRun.repo,
        name: checkRun.name,
        headSha: checkRun.headSha,
        externalId: checkRun.externalId,
        status: 'completed',
        conclusion: 'success',
        detailsUrl: null,
        startedAt: now,
        completedAt: now,
        output: { title: 'Passed', summary: 'Nothing found.', text: null },
        annotations: [],
        actions: [],
        installationId: null,
        app: { ...checkRun.app },
      };
      fakeState.checkRuns.set(record.id, record);
      return record;
    },
    addReview(review) {
      const record: ReviewRecord = {
        id: fakeState.nextId(),
        owner: review.owner,
        repo: review.repo,
        pullNumber: review.pullNumber,
        commitId: review.commitId,
        body: review.body,
        event: 'COMMENT',
        state: 'COMMENTED',
        user: review.user,
        userType: review.userType ?? 'User',
        submittedAt: githubTimestamp(new Date()),
        comments: [],
      };
      fakeState.reviews.push(record);
      return record;
    },
    removeInstallation(id) {
      fakeState.installations.delete(id);
    },
    addRepository(repository) {
      fakeState.addRepository({ ...repository });
    },
    removeRepository(target) {
      if (!fakeState.removeRepository(target.owner, target.repo)) {
        throw new Error(`The fake GitHub has no repository ${target.owner}/${target.repo}.`);
      }
    },
    setRepositoryArchived(target, archived) {
      const repository = fakeState.findRepository(target.owner, target.repo);
      if (!repository) {
        throw new Error(`The fake GitHub has no repository ${target.owner}/${target.repo}.`);
      }
      repository.archived = archived;
    },
    addPullRequest(pullRequest) {
      const record: PullRequestRecord = {
        baseRef: 'main',
        body: null,
        state: 'open',
        closedAt: null,
        mergedAt: null,
        draft: false,
        user: 'octocat',
        ...pullRequest,
        headOwner: pullRequest.headOwner ?? pullRequest.owner,
        headRepo: pullRequest.headRepo === undefined ? pullRequest.repo : pullRequest.headRepo,
      };
      requireMergedClosed(record);
      fakeState.addPullRequest(record);
    },
    updatePullRequest(target, changes) {
      const { owner, repo, number } = target;
      const pullRequest = fakeState.findPullRequest(owner, repo, number);
      if (!pullRequest) {
        throw new Error(`The fake GitHub has no pull request ${owner}/${repo}#${number}.`);
      }
      const updated = { ...pullRequest, ...changes };
      requireMergedClosed(updated);
      Object.assign(pullRequest, updated);
    },
    setInstallation(installation) {
      const suspended = installation.suspended ?? false;
      fakeState.installations.set(installation.id, {
        id: installation.id,
        account: installation.account,
        permissions: installation.permissions ?? defaultPermissions,
        suspended,
        suspendedBy: suspended ? (installation.suspendedBy ?? installation.account.login) : null,
        suspendedAt: suspended ? githubTimestamp(new Date()) : null,
      });
    },
    queueResponse(queued) {
      const compiled = typeof queued.path === 'string' ? compilePattern(queued.path) : null;
      pendingResponses.push({ queued, compiled });
    },
    addRoute(route) {
      routes.push({ route, compiled: compilePattern(route.pattern) });
    },
    async close() {
      // Each delivery ends within its own time limit, so this wait is bounded.
      await Promise.allSettled([...fakeState.pendingDeliveries]);
      const closed = new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
      });
      server.closeAllConnections();
      await closed;
    },
  };
}
