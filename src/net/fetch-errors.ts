import { AsyncLocalStorage } from 'node:async_hooks';
import diagnosticsChannel from 'node:diagnostics_channel';

/** The last error that Node's fetch reported for a request made inside `recordFetchErrors`. */
export type FetchErrorRecord = { lastError?: Error };

const activeRecord = new AsyncLocalStorage<FetchErrorRecord>();
const recordOfRequest = new WeakMap<object, FetchErrorRecord>();
let subscribed = false;

/**
 * Links each request that undici creates inside `recordFetchErrors` to that call's record. The
 * link is made when the request is created, because a socket error can arrive in the async
 * context of another request that opened the pooled connection. Node's fetch is undici, which
 * publishes `undici:request:create` and `undici:request:error` with the same request object.
 */
function subscribeOnce(): void {
  if (subscribed) return;
  subscribed = true;
  diagnosticsChannel.subscribe('undici:request:create', (message) => {
    const record = activeRecord.getStore();
    const request = (message as { request?: unknown }).request;
    if (record && typeof request === 'object' && request !== null) recordOfRequest.set(request, record);
  });
  diagnosticsChannel.subscribe('undici:request:error', (message) => {
    const { request, error } = message as { request?: unknown; error?: unknown };
    if (typeof request !== 'object' || request === null || !(error instanceof Error)) return;
    const record = recordOfRequest.get(request);
    if (record) record.lastError = error;
  });
}

/**
 * Runs `run` and stores in `record` the last error that fetch reported for its requests, such
 * as `connect ECONNREFUSED 127.0.0.1:9`, which is the cause of fetch's `TypeError: fetch failed`
 * that some SDKs drop. It observes fetch through diagnostics channels and leaves
 * `globalThis.fetch` unchanged.
 */
export function recordFetchErrors<T>(record: FetchErrorRecord, run: () => Promise<T>): Promise<T> {
  subscribeOnce();
  return activeRecord.run(record, run);
}
