/**
 * Rate limit for the log lines of a failure that repeats until something outside the process
 * recovers, such as an unreachable database. The first failure of an outage is
 * logged, later ones at most once per `repeatMs` with the count of failures not logged since,
 * and the first success after an outage is logged once with the count left.
 */
export class OutageLog {
  #failing = false;
  #suppressed = 0;
  #loggedAt = 0;

  /**
   * @param repeatMs Minimum milliseconds between two logged failures of one outage;
   *   `Infinity` logs only the first.
   */
  constructor(private readonly repeatMs: number) {}

  /** True from a failure until the next success. */
  get failing(): boolean {
    return this.#failing;
  }

  /**
   * Records a failure. Calls `log` with the count of failures not logged since the previous
   * logged one when this failure is the first of an outage or `repeatMs` has passed since then.
   */
  fail(log: (suppressed: number) => void): void {
    const now = Date.now();
    if (this.#failing && now - this.#loggedAt < this.repeatMs) {
      this.#suppressed += 1;
      return;
    }
    const suppressed = this.#suppressed;
    this.#failing = true;
    this.#suppressed = 0;
    this.#loggedAt = now;
    log(suppressed);
  }

  /** Records a success. Ends an outage in progress and calls `log` with the failures not logged. */
  recover(log: (suppressed: number) => void): void {
    if (!this.#failing) return;
    const suppressed = this.#suppressed;
    this.#failing = false;
    this.#suppressed = 0;
    log(suppressed);
  }
}
