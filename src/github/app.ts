import { createAppAuth } from '@octokit/auth-app';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import { readAppBotUser, webHostOfApi, type AppBotUser, type AppIdentity } from './app-identity.ts';
import { decodePath } from './github-response.ts';
import { readTokenPermissions, type InstallationPermissions } from './installation-permissions.ts';
import { redactCredentials } from '../errors/redact-credentials.ts';
import type { Logger } from '../logger.ts';
import { formatRetryDelay } from '../text/retry-delay.ts';
import { describeConnectionFailure, NoResponseLog } from './no-response.ts';
import { retryTokenRequestOnce } from './token-request.ts';
import {
  GitHubResponseTooLargeError,
  maxGitHubResponseBytes,
  parseResponses,
  replaceOversizedErrorBody,
} from './responses.ts';

/**
 * Octokit that parses responses with JSON.parse, retries server errors and handles GitHub's
 * rate limits. parseResponses comes first, so that the other plugins see the errors it raises,
 * and retryTokenRequestOnce comes before the retry plugin, whose retries it limits.
 */
const ThrottledOctokit = Octokit.plugin(parseResponses, retryTokenRequestOnce, retry, throttling);

/** Maximum wait, in seconds, that GitHub may request before a rate-limited request is retried. */
export const maxRateLimitWaitSeconds = 60;
/** Retries of one request after a rate limit response. */
export const maxRateLimitRetries = 2;
/**
 * Statuses that @octokit/plugin-retry 8.1.1 does not retry: its defaults plus 429. The throttling
 * plugin handles a 429 as a rate limit, by its `retry-after` or reset time. With its defaults,
 * the retry plugin would send the request again after 1, 4 and 9 s, whatever time GitHub named.
 */
const doNotRetryStatuses = [400, 401, 403, 404, 410, 422, 429, 451];
/** Maximum wait for the response or the next part of its body, unless the options set another. */
export const defaultRequestTimeoutMs = 30_000;
/**
 * Maximum time of one attempt of a request, from sending it to the last byte of the body,
 * unless the options set another, as the default of GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS.
 * NOTE: the value is a judgment. With the retry plugin's 3 retries, 1, 4 and 9 s apart, one
 * call then ends within 4 x 60 + 14 = 254 s, before the shortest job time limit of 5 minutes.
 */
export const defaultTotalTimeoutMs = 60_000;

/**
 * The longest GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS with which one call, its 3 retries and their
 * 14 s of pauses end within 5 minutes, the shortest time limit of a job that calls GitHub.
 */
export const maxTotalTimeoutSecondsWithinJobs = Math.floor((5 * 60 - 14) / 4);

export interface GitHubAppOptions {
  appId: string;
  /** PEM private key of the app, PKCS#1 as GitHub issues it or PKCS#8. */
  privateKey: string;
  /** REST API base URL, e.g. `https://api.github.com` or `https://ghe.example/api/v3`. */
  baseUrl: string;
  logger: Logger;
  /** Maximum wait for data of one GitHub request; `defaultRequestTimeoutMs` when unset. */
  requestTimeoutMs?: number;
  /** Maximum time of one attempt of a GitHub request; `defaultTotalTimeoutMs` when unset. */
  totalTimeoutMs?: number;
  /** Maximum bytes of one response body; `maxGitHubResponseBytes` when unset. */
  maxResponseBytes?: number;
}

export interface GitHubApp extends AppIdentity {
  /**
   * The app's numeric id, which GitHub puts in `performed_via_github_app.id` of its comments
   * and in `app.id` of its check runs.
   */
  appId: number;
  /** Returns the Octokit for an installation, created once per installation id. */
  installationOctokit(installationId: number): Promise<Octokit>;
  /**
   * Reads the permissions of the installation's access token, which Octokit requests once and
   * reuses for up to 59 minutes. `permissionsChangedAt` is the installation's stored time of
   * its last permission change. When this app has not yet renewed the token for that time, it
   * requests a new token first, because the cached one may lack permissions accepted since.
   */
  installationPermissions(
    installationId: number,
    permissionsChangedAt: Date | null,
  ): Promise<InstallationPermissions>;
  /** Returns an Octokit authenticated as the app itself (JWT), for `/app/...` endpoints. */
  appOctokit(): Octokit;
}

/**
 * Turns the extra argument of an Octokit log call into loggable fields. Request options carry
 * headers, so only their method and URL are kept, and errors keep only their message and status.
 */
function describeExtra(extra: unknown): Record<string, unknown> {
  if (extra instanceof Error) {
    const status = (extra as { status?: unknown }).status;
    const fields: Record<string, unknown> = { error: redactCredentials(extra.message) };
    if (typeof status === 'number') {
      fields.status = status;
    }
    return fields;
  }
  if (typeof extra === 'object' && extra !== null) {
    const { method, url } = extra as { method?: unknown; url?: unknown };
    const fields: Record<string, unknown> = {};
    if (typeof method === 'string') {
      fields.method = method;
    }
    if (typeof url === 'string') {
      fields.url = redactCredentials(url);
    }
    return fields;
  }
  return {};
}

type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * Octokit `log` option that writes to pino at the same level, with credentials removed. Octokit
 * logs each request (@octokit/plugin-request-log, part of @octokit/rest) and, rarely, a
 * warning of its own, all with the event `github.request`. A request to `baseUrl` that
 * `noResponses` recorded is logged with its reason and `noResponse: true` in place of status 500.
 */
function octokitLog(logger: Logger, baseUrl: string, noResponses: NoResponseLog) {
  const write =
    (level: LogLevel) =>
    (message: string, extra?: unknown): void => {
      const text = String(message);
      const noResponse = level === 'error' ? noResponses.rewrite(text, baseUrl) : null;
      const fields = { event: 'github.request', ...describeExtra(extra), ...(noResponse ? { noResponse: true } : {}) };
      logger[level](fields, redactCredentials(noResponse ?? text));
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

interface LimitedRequest {
  method: string;
  url: string;
}

/**
 * Builds the throttling handlers: retry up to `maxRateLimitRetries` times when GitHub requests a
 * wait of at most `maxRateLimitWaitSeconds`, otherwise give up so the request fails.
 */
function rateLimitHandlers(logger: Logger) {
  const decide =
    (kind: 'primary' | 'secondary') =>
    (retryAfter: number, options: LimitedRequest, _octokit: unknown, retryCount: number) => {
      // The plugin passes 0 for a reset time that has passed, and also for one past 2038: it
      // reads `x-ratelimit-reset` through a 32-bit integer (`~~reset`), which wraps such a time
      // into the past. Neither is retried at once, and the job's wait reads the header itself.
      const resetReadable = retryAfter > 0;
      const retrying =
        resetReadable && retryCount < maxRateLimitRetries && retryAfter <= maxRateLimitWaitSeconds;
      const fields = {
        event: 'github.rate_limit',
        retrying,
        rateLimit: kind,
        method: options.method,
        url: redactCredentials(options.url),
        retryAfterSeconds: retryAfter,
        retryCount,
      };
      const delay = formatRetryDelay(retryAfter);
      if (!resetReadable) {
        logger.warn(
          fields,
          `GitHub ${kind} rate limit hit, giving up: the reset time has passed or is out of range`,
        );
      } else if (retrying) {
        logger.warn(fields, `GitHub ${kind} rate limit hit, retrying after ${delay}`);
      } else {
        logger.warn(
          fields,
          `GitHub ${kind} rate limit hit, giving up (retry after ${delay}, ` +
            `${retryCount} retries done)`,
        );
      }
      return retrying;
    };
  return { onRateLimit: decide('primary'), onSecondaryRateLimit: decide('secondary') };
}

/** Statuses whose response has no body; the Response constructor rejects a body for them. */
const nullBodyStatuses = new Set([204, 205, 304]);

/** Returns the method and decoded URL path of a request, as messages name it. */
function describeRequest(input: string | URL | Request, init: RequestInit | undefined) {
  const url = new URL(input instanceof Request ? input.url : input);
  return { method: init?.method ?? 'GET', path: decodePath(url.pathname) };
}

/** Time limits and the size limit of one attempt of a GitHub request, in ms and bytes. */
interface FetchLimits {
  idleMs: number;
  totalMs: number;
  maxBytes: number;
}

/** The API URL that `timedFetch` names in errors, and its record of requests without a response. */
interface FetchTarget {
  baseUrl: string;
  noResponses: NoResponseLog;
}

/**
 * Returns a fetch for Octokit that fails a request when no data arrives for `idleMs`: neither
 * the response headers nor, after them, the next part of the body. It also fails a request that
 * takes longer than `totalMs` in all, as a body that trickles in (one byte every 29 s never
 * trips the idle limit) would otherwise. Octokit sets no time limit of its own, so such a
 * connection would hold a job until pg-boss expires it. The body is read here, so a stall
 * fails the request: Octokit 10 (`getResponseData`) would turn a body that breaks off into
 * empty data. Octokit reports either timeout as a RequestError with status 500 and no response,
 * which the retry plugin retries like other server errors. A body over `maxBytes` is dropped as
 * soon as its Content-Length or the bytes read so far pass the limit. A success response then
 * raises GitHubResponseTooLargeError, and an error response keeps its status and headers, which
 * are enough to read a rate limit. A connection that fails, such as one refused, raises an error
 * that names GITHUB_API_URL and its value.
 */
function timedFetch(limits: FetchLimits, target: FetchTarget): typeof fetch {
  const { idleMs, totalMs, maxBytes } = limits;
  return async (input, init) => {
    const timeouts = new AbortController();
    let expired: 'idle' | 'total' | undefined;
    const expire = (kind: 'idle' | 'total') => () => {
      expired ??= kind;
      timeouts.abort();
    };
    let idleTimer = setTimeout(expire('idle'), idleMs);
    const totalTimer = setTimeout(expire('total'), totalMs);
    const restartIdleTimer = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(expire('idle'), idleMs);
    };
    const signal = init?.signal ? AbortSignal.any([init.signal, timeouts.signal]) : timeouts.signal;
    try {
      const response = await fetch(input, { ...init, signal });
      if (response.body === null) return response;
      const oversized = () => {
        const { method, path } = describeRequest(input, init);
        if (response.status >= 400) return replaceOversizedErrorBody(response, method, path, maxBytes);
        throw new GitHubResponseTooLargeError(method, path, response.status, maxBytes);
      };
      // A compressed body's Content-Length counts the compressed bytes, which the limit does not.
      const declaredBytes = Number(response.headers.get('content-length'));
      if (!response.headers.has('content-encoding') && declaredBytes > maxBytes) {
        void response.body.cancel().catch(() => undefined);
        return oversized();
      }
      restartIdleTimer();
      const chunks: Uint8Array[] = [];
      let receivedBytes = 0;
      const reader = response.body.getReader();
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        receivedBytes += read.value.byteLength;
        if (receivedBytes > maxBytes) {
          void reader.cancel().catch(() => undefined);
          return oversized();
        }
        chunks.push(read.value);
        restartIdleTimer();
      }
      const body = nullBodyStatuses.has(response.status) ? null : Buffer.concat(chunks);
      const buffered = new Response(body, {
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
      });
      // Octokit reports the URL of the response, which is the last one after redirects.
      Object.defineProperty(buffered, 'url', { value: response.url });
      return buffered;
    } catch (error) {
      const method = init?.method ?? 'GET';
      const url = input instanceof Request ? input.url : String(input);
      if (expired !== undefined) {
        const message = describeTimeout(expired, limits, method, url);
        target.noResponses.record(method, url, message);
        throw new Error(message);
      }
      const failure = describeConnectionFailure(error, target.baseUrl);
      if (failure === null) throw error;
      target.noResponses.record(method, url, failure.reason);
      throw new Error(failure.message, { cause: error });
    } finally {
      clearTimeout(idleTimer);
      clearTimeout(totalTimer);
    }
  };
}

/** Builds the message of a request that `timedFetch` ended after the `kind` time limit. */
function describeTimeout(kind: 'idle' | 'total', limits: FetchLimits, method: string, url: string): string {
  const request = `GitHub request ${method} ${redactCredentials(url)}`;
  if (kind === 'idle') {
    return (
      `${request} timed out after ${limits.idleMs / 1000} s; check that GITHUB_API_URL is ` +
      'reachable from this host.'
    );
  }
  return (
    `${request} timed out after the ${limits.totalMs / 1000} s limit of ` +
    'GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS, because its response did not complete in time. ' +
    'Check that GITHUB_API_URL is reachable at a normal speed from this host, or raise ' +
    'GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS.'
  );
}

/** Creates GitHub access for the app. Octokit instances are built on first use and reused. */
export function createGitHubApp(options: GitHubAppOptions): GitHubApp {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const baseLogger = options.logger.child({ component: 'github' });
  const installations = new Map<number, Octokit>();
  let app: Octokit | undefined;
  let botUser: AppBotUser | undefined;
  // Pending reads by the Octokit of the caller. The read uses that installation's token, which
  // may fail (a suspended installation, a rate limit), so callers of other installations must
  // not receive its failure.
  const pendingBotUsers = new WeakMap<Octokit, Promise<AppBotUser>>();
  // The `permissionsChangedAt` (ms) for which each installation's token was last renewed. A
  // stored time compared for equality, unlike the token's creation time, needs no agreement
  // between this host's clock and the database's.
  const renewedForChange = new Map<number, number>();

  function build(logger: Logger, installationId?: number): Octokit {
    const auth =
      installationId === undefined
        ? { appId: options.appId, privateKey: options.privateKey }
        : { appId: options.appId, privateKey: options.privateKey, installationId };
    const noResponses = new NoResponseLog();
    const limits = {
      idleMs: options.requestTimeoutMs ?? defaultRequestTimeoutMs,
      totalMs: options.totalTimeoutMs ?? defaultTotalTimeoutMs,
      maxBytes: options.maxResponseBytes ?? maxGitHubResponseBytes,
    };
    return new ThrottledOctokit({
      authStrategy: createAppAuth,
      auth,
      baseUrl,
      userAgent: 'fixwright',
      log: octokitLog(logger, baseUrl, noResponses),
      request: { fetch: timedFetch(limits, { baseUrl, noResponses }) },
      retry: { doNotRetry: doNotRetryStatuses },
      throttle: {
        // Bottleneck groups are keyed by id, so each installation is throttled on its own.
        id: installationId === undefined ? 'fixwright-app' : `fixwright-${installationId}`,
        ...rateLimitHandlers(logger),
      },
    });
  }

  const appId = Number(options.appId);
  const webHost = webHostOfApi(baseUrl);
  const github: GitHubApp = {
    appId,
    webHost,
    webCommitterEmail: `noreply@${webHost}`,
    async botUser(octokit: Octokit): Promise<AppBotUser> {
      if (botUser) return botUser;
      let pending = pendingBotUsers.get(octokit);
      if (!pending) {
        // Only a success is kept for all installations, so the next call after a failure reads
        // again.
        pending = readAppBotUser(github.appOctokit(), octokit, appId)
          .then((user) => {
            botUser = user;
            return user;
          })
          .finally(() => pendingBotUsers.delete(octokit));
        pendingBotUsers.set(octokit, pending);
      }
      return pending;
    },
    async installationOctokit(installationId: number): Promise<Octokit> {
      if (!Number.isSafeInteger(installationId) || installationId <= 0) {
        throw new Error(`Invalid installation id ${installationId}: expected a positive integer`);
      }
      let octokit = installations.get(installationId);
      if (!octokit) {
        // @octokit/auth-app 8.3.1 caches each installation token for 59 minutes (cache.js), one
        // minute less than GitHub's one-hour lifetime, so a reused Octokit renews it in time.
        octokit = build(baseLogger.child({ installationId }), installationId);
        installations.set(installationId, octokit);
      }
      return octokit;
    },
    async installationPermissions(installationId, permissionsChangedAt) {
      const octokit = await github.installationOctokit(installationId);
      const changedAt = permissionsChangedAt?.getTime();
      const renew = changedAt !== undefined && renewedForChange.get(installationId) !== changedAt;
      const permissions = await readTokenPermissions(octokit, installationId, renew);
      if (renew) renewedForChange.set(installationId, changedAt);
      return permissions;
    },
    appOctokit(): Octokit {
      app ??= build(baseLogger);
      return app;
    },
  };
  return github;
}
