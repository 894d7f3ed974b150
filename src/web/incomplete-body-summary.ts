import type { Logger } from '../logger.ts';
import type { IncompleteBodyReason } from './read-limited-body.ts';

/** Milliseconds between two summaries of webhook bodies that did not arrive whole. */
export const incompleteBodySummaryIntervalMs = 60_000;

type ReasonCounts = Record<IncompleteBodyReason, number>;

const noBodies = (): ReasonCounts => ({ timed_out: 0, evicted: 0, closed: 0 });

/**
 * Counts webhook bodies that did not arrive whole and logs them as one `webhook.bodies_incomplete`
 * warning at most every `intervalMs`. A client that opens many slow connections would otherwise
 * write a line for each. The first body after a quiet interval is logged at once.
 */
export class IncompleteBodySummary {
  #counts = noBodies();
  #receivedBytes = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = incompleteBodySummaryIntervalMs,
  ) {}

  /** Counts one body that ended for `reason` after `receivedBytes` had arrived. */
  record(reason: IncompleteBodyReason, receivedBytes: number): void {
    this.#counts[reason] += 1;
    this.#receivedBytes += receivedBytes;
    if (this.#timer) return;
    this.#flush();
    this.#schedule();
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#counts.timed_out + this.#counts.evicted + this.#counts.closed === 0) return;
      this.#flush();
      this.#schedule();
    }, this.intervalMs);
    // A pending summary must not keep a stopping process alive.
    this.#timer.unref();
  }

  #flush(): void {
    const counts = this.#counts;
    this.logger.warn(
      {
        event: 'webhook.bodies_incomplete',
        timedOut: counts.timed_out,
        evicted: counts.evicted,
        closed: counts.closed,
        receivedBytes: this.#receivedBytes,
        intervalSeconds: this.intervalMs / 1000,
      },
      'webhook bodies dropped before they arrived whole: timedOut ran past ' +
        'WEBHOOK_BODY_TIMEOUT_MS, evicted were cut to make room in the full body budget, closed ' +
        'lost their connection. Many of them mean a client is holding connections open.',
    );
    this.#counts = noBodies();
    this.#receivedBytes = 0;
  }
}
