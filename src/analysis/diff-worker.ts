import { Worker } from 'node:worker_threads';
import type { StructuredPatch } from 'diff';
import type { AdditionsPatch, DiffLimits } from './local-patch.ts';

/**
 * Time a diff may run past its `timeoutMs` before its thread is terminated, in milliseconds.
 * jsdiff checks the timeout only between edit lengths of its Myers loop, and the timeout leaves
 * out the start of a new thread and the splitting of the texts into lines before the loop. The
 * splitting took 0.6 to 0.9 s for two texts of 4.3 MB and 250,000 lines on a busy 2 vCPU AMD
 * EPYC, so the hard stop waits this much longer.
 */
export const terminateGraceMs = 2_000;

/** Time after its last diff at which an idle thread is ended, in milliseconds. */
export const idleThreadMs = 60_000;

const defaultScriptUrl = new URL('./diff-thread.mjs', import.meta.url);

/**
 * Raised when the diff thread fails during a diff: an uncaught exception, out of memory, or an
 * exit.
 */
export class DiffThreadError extends Error {
  override name = 'DiffThreadError';
}

export interface DiffWorkerOptions {
  /** Worker thread script. Default diff-thread.mjs. Tests pass one that fails on purpose. */
  scriptUrl?: URL;
  /** `workerData` of each thread that the worker starts. */
  workerData?: unknown;
}

/** Input of jsdiff's `structuredPatch`, with its limits. */
export interface StructuredPatchRequest {
  oldFileName: string;
  newFileName: string;
  oldText: string;
  newText: string;
  /** Unchanged lines around each change, as jsdiff's `context` option. */
  context: number;
  /** Edit length (lines added plus removed) after which the diff gives up. Default no limit. */
  maxEditLength?: number;
  /** Time after which the diff gives up, in milliseconds (jsdiff's `timeout` option). */
  timeoutMs: number;
}

/**
 * Outcome of a `structuredPatch` diff: the patch, or the limit at which it gave up. A diff that
 * gives up after `timeoutMs` has passed is `timed_out`, even when it stopped at
 * `maxEditLength`, because jsdiff returns the same for both.
 */
export type StructuredPatchResult =
  | { status: 'done'; patch: StructuredPatch }
  | { status: 'too_many_edits' }
  | { status: 'timed_out' };

/**
 * Message to the thread. It replies to `additions` with the `AdditionsPatch`, or null if the
 * diff gives up, and to `structuredPatch` with a `StructuredPatchResult`.
 */
type DiffJob =
  | { kind: 'additions'; oldText: string; newText: string; limits: DiffLimits }
  | ({ kind: 'structuredPatch' } & StructuredPatchRequest);

interface QueuedJob {
  job: DiffJob;
  timeoutMs: number;
  /** Called with the thread's reply, or with null when the thread was terminated. */
  resolve(reply: unknown): void;
  reject(error: Error): void;
}

/**
 * Runs diffs one at a time in a worker thread, which starts at the first diff and serves the
 * ones after it. The thread keeps the process alive only while it diffs, and ends after
 * `idleThreadMs` without a diff. A diff that overruns its timeout by `terminateGraceMs` has its
 * thread terminated and resolves as if it gave up at its timeout. A diff that its thread fails
 * to finish rejects with `DiffThreadError`. In both cases the next diff starts a new thread.
 */
export class DiffWorker {
  private thread: Worker | null = null;
  private running: { queued: QueuedJob; timer: NodeJS.Timeout } | null = null;
  private readonly queue: QueuedJob[] = [];
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: DiffWorkerOptions = {}) {}

  /**
   * Builds the patch of the lines that `newText` adds to `oldText` in the thread (see
   * `additionsPatch`). Resolves with null when the diff gives up at `limits` or overruns its
   * timeout. Once `signal` aborts, it rejects with the abort reason. A diff that still waits
   * for the thread is then taken out of the queue, and one that runs goes on in the thread
   * until it ends or times out, and its reply is dropped.
   */
  async diff(
    oldText: string,
    newText: string,
    limits: DiffLimits,
    signal?: AbortSignal,
  ): Promise<AdditionsPatch | null> {
    const job: DiffJob = { kind: 'additions', oldText, newText, limits };
    return (await this.run(job, limits.timeoutMs, signal)) as AdditionsPatch | null;
  }

  /**
   * Runs jsdiff's `structuredPatch` in the thread, with no headers. A diff that overruns its
   * timeout and has its thread terminated resolves as `timed_out`.
   */
  async structuredPatch(request: StructuredPatchRequest): Promise<StructuredPatchResult> {
    const job: DiffJob = { kind: 'structuredPatch', ...request };
    const reply = (await this.run(job, request.timeoutMs)) as StructuredPatchResult | null;
    return reply ?? { status: 'timed_out' };
  }

  /**
   * Queues `job` and resolves with the thread's reply, or with null if it was terminated. Once
   * `signal` aborts, it rejects with the abort reason and leaves the queue.
   */
  private run(job: DiffJob, timeoutMs: number, signal?: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const abort = () => {
        const index = this.queue.indexOf(queued);
        if (index !== -1) this.queue.splice(index, 1);
        reject(signal!.reason);
      };
      const queued: QueuedJob = {
        job,
        timeoutMs,
        resolve(reply) {
          signal?.removeEventListener('abort', abort);
          resolve(reply);
        },
        reject(error) {
          signal?.removeEventListener('abort', abort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', abort, { once: true });
      this.queue.push(queued);
      this.startNext();
    });
  }

  /** Terminates the thread. The running diff and those waiting reject with `DiffThreadError`. */
  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    const closed = new DiffThreadError('the diff worker was closed');
    if (this.running !== null) {
      clearTimeout(this.running.timer);
      this.running.queued.reject(closed);
      this.running = null;
    }
    for (const queued of this.queue.splice(0)) {
      queued.reject(closed);
    }
    const thread = this.thread;
    this.thread = null;
    await thread?.terminate();
  }

  private startNext(): void {
    if (this.running !== null) return;
    const queued = this.queue.shift();
    if (queued === undefined) return;

    clearTimeout(this.idleTimer);
    const thread = this.thread ?? this.startThread();
    thread.ref();
    const timer = setTimeout(
      () => this.terminateOverrun(thread),
      queued.timeoutMs + terminateGraceMs,
    );
    this.running = { queued, timer };
    thread.postMessage(queued.job);
  }

  private startThread(): Worker {
    // The script loads no TypeScript, so the thread skips the parent's loader flags, such as
    // `--import tsx` when a benchmark runs.
    const thread = new Worker(this.options.scriptUrl ?? defaultScriptUrl, {
      workerData: this.options.workerData,
      execArgv: [],
    });
    thread.on('message', (reply: unknown) => this.finish(thread, reply));
    thread.on('error', (error) => this.fail(thread, error));
    thread.on('exit', (code) => {
      this.fail(thread, new Error(`the thread exited with code ${code}`));
    });
    this.thread = thread;
    return thread;
  }

  /** Clears and returns the running job, or returns null if `thread` is idle or replaced. */
  private takeRunningJob(thread: Worker): QueuedJob | null {
    if (thread !== this.thread || this.running === null) return null;
    const { queued, timer } = this.running;
    clearTimeout(timer);
    this.running = null;
    return queued;
  }

  private finish(thread: Worker, reply: unknown): void {
    const queued = this.takeRunningJob(thread);
    if (queued === null) return;
    queued.resolve(reply);
    if (this.queue.length > 0) {
      this.startNext();
      return;
    }
    thread.unref();
    this.idleTimer = setTimeout(() => this.endIdleThread(thread), idleThreadMs);
    this.idleTimer.unref();
  }

  private fail(thread: Worker, error: Error): void {
    const queued = this.takeRunningJob(thread);
    if (thread !== this.thread) return;
    // The thread is gone after an error or an exit, so the next diff starts another.
    this.thread = null;
    const message = `the diff thread failed: ${error.message}`;
    queued?.reject(new DiffThreadError(message, { cause: error }));
    this.startNext();
  }

  private terminateOverrun(thread: Worker): void {
    const queued = this.takeRunningJob(thread);
    if (queued === null) return;
    this.thread = null;
    thread.unref();
    void thread.terminate();
    queued.resolve(null);
    this.startNext();
  }

  private endIdleThread(thread: Worker): void {
    if (thread !== this.thread || this.running !== null) return;
    this.thread = null;
    void thread.terminate();
  }
}

/** The diff worker that the analyses of this process share. */
export const sharedDiffWorker = new DiffWorker();

/**
 * The diff worker that the previews and suggestions of this process share. It is apart from
 * `sharedDiffWorker`, so a slow diff of a model's output, which has been paid for, never holds
 * up the diffs of an analysis, and the other way round.
 */
export const sharedFixDiffWorker = new DiffWorker();
