import { AppError } from './errors.ts';

/**
 * Why a body read ended before the whole body arrived: it ran past its deadline, the budget
 * cut it to make room for another body, or the connection closed.
 */
export type IncompleteBodyReason = 'timed_out' | 'evicted' | 'closed';

/**
 * Milliseconds over which a read's recent rate is measured, so that a burst stops lifting its
 * rate 1 to 2 windows after it arrived.
 */
export const RATE_WINDOW_MS = 1000;

/** A body read in progress, with the bytes charged for it so far. */
class BodyRead {
  chargedBytes = 0;
  readonly startedAt = performance.now();
  lastChunkAt = this.startedAt;
  // Bytes charged in window number `#windowIndex` since the start of the read, and in the
  // window before it.
  #windowIndex = 0;
  #windowBytes = 0;
  #previousWindowBytes = 0;

  /** `expectedBytes` is the declared Content-Length, or the largest body accepted without one. */
  constructor(
    readonly expectedBytes: number,
    readonly evict: () => void,
  ) {}

  /** Adds `bytes` charged at `now` to the window they arrived in. */
  recordChunk(now: number, bytes: number): void {
    const index = Math.floor((now - this.startedAt) / RATE_WINDOW_MS);
    if (index !== this.#windowIndex) {
      this.#previousWindowBytes = index === this.#windowIndex + 1 ? this.#windowBytes : 0;
      this.#windowBytes = 0;
      this.#windowIndex = index;
    }
    this.#windowBytes += bytes;
    this.chargedBytes += bytes;
    this.lastChunkAt = now;
  }

  /**
   * Bytes a millisecond over the last `RATE_WINDOW_MS`, counting `pendingBytes` as arriving
   * `now`, or since the start for a read younger than that. The bytes of the window before
   * the current one count by the part of it still inside the last `RATE_WINDOW_MS`, an estimate
   * that assumes they arrived evenly.
   */
  rate(now: number, pendingBytes: number): number {
    const ageMs = now - this.startedAt;
    if (ageMs < RATE_WINDOW_MS) {
      return (this.chargedBytes + pendingBytes) / Math.max(ageMs, 1);
    }
    const index = Math.floor(ageMs / RATE_WINDOW_MS);
    const currentBytes = index === this.#windowIndex ? this.#windowBytes : 0;
    let previousBytes = 0;
    if (index === this.#windowIndex) previousBytes = this.#previousWindowBytes;
    else if (index === this.#windowIndex + 1) previousBytes = this.#windowBytes;
    const previousShare = 1 - (ageMs - index * RATE_WINDOW_MS) / RATE_WINDOW_MS;
    return (currentBytes + previousBytes * previousShare + pendingBytes) / RATE_WINDOW_MS;
  }

  /**
   * Milliseconds this read is expected to keep holding memory, counting `pendingBytes` not
   * charged yet: the larger of the time since its last chunk and the time the rest of its
   * expected bytes take at its recent `rate`. A read whose pending chunk completes its body
   * scores 0. One older than `RATE_WINDOW_MS` with no bytes in its current and previous window
   * scores `Infinity`, as does one that sent nothing at all.
   */
  holdScore(now: number, pendingBytes = 0): number {
    const remainingBytes = Math.max(this.expectedBytes - this.chargedBytes - pendingBytes, 0);
    let finishMs = 0;
    if (remainingBytes > 0) {
      const rate = this.rate(now, pendingBytes);
      finishMs = rate > 0 ? remainingBytes / rate : Infinity;
    }
    // The pending chunk arrives now, so a read with one pending has not stalled.
    const idleMs = pendingBytes > 0 ? 0 : now - this.lastChunkAt;
    return Math.max(finishMs, idleMs);
  }
}

/** Result of `ByteBudget.charge`. */
type ChargeResult = 'charged' | 'evicted' | 'over_budget';

/**
 * Bytes of request bodies that the requests sharing one budget may hold in memory together.
 * Reads in progress can be cut to make room: see `charge`.
 */
export class ByteBudget {
  #usedBytes = 0;
  readonly #reads = new Set<BodyRead>();

  constructor(readonly maxBytes: number) {}

  /** Bytes charged now, by reads in progress and by bodies not released yet. */
  get usedBytes(): number {
    return this.#usedBytes;
  }

  /**
   * Registers a read in progress of a body expected to be `expectedBytes` long: its declared
   * Content-Length, or the largest body accepted when none is declared. The budget calls `evict`
   * when it cuts the read.
   */
  startRead(expectedBytes: number, evict: () => void): BodyRead {
    const read = new BodyRead(expectedBytes, evict);
    this.#reads.add(read);
    return read;
  }

  /** Ends `read` as a read in progress, so that it can no longer be cut. Its bytes stay charged. */
  finishRead(read: BodyRead): void {
    this.#reads.delete(read);
  }

  /**
   * Charges `bytes` more for `read`. When they do not fit, the reads in progress are ranked by
   * how long they are expected to keep holding memory (see `BodyRead.holdScore`), `read` among
   * them, and the highest are cut and released until the bytes fit. On a tie `read` ranks below
   * the others. Returns `evicted` when `read` itself is among the reads that would be cut, and
   * then cuts only `read`. Returns `over_budget`, and cuts nothing, when cutting every
   * other read would not make room, because bodies no longer being read hold the rest.
   */
  charge(read: BodyRead, bytes: number): ChargeResult {
    if (this.#usedBytes + bytes > this.maxBytes) {
      const result = this.#makeRoom(read, bytes);
      if (result !== 'charged') return result;
    }
    this.#usedBytes += bytes;
    read.recordChunk(performance.now(), bytes);
    return 'charged';
  }

  #makeRoom(requester: BodyRead, bytes: number): ChargeResult {
    // NOTE: The time to finish trusts Content-Length, and a burst lifts the recent rate for
    // 1 to 2 s after it arrived. So a body that sent a burst, declared little more than that,
    // and keeps sending a byte every few ms outranks a delivery that arrives in several chunks
    // for up to 2 s. A body without Content-Length counts as the largest body accepted, so it
    // ranks as slow.
    const now = performance.now();
    const ranked = [...this.#reads]
      .map((read) => ({ read, score: read.holdScore(now, read === requester ? bytes : 0) }))
      .sort((a, b) => compareForCut(a, b, requester))
      .map(({ read }) => read);
    const neededBytes = this.#usedBytes + bytes - this.maxBytes;
    let evictableBytes = 0;
    for (const read of ranked) if (read !== requester) evictableBytes += read.chargedBytes;
    if (evictableBytes < neededBytes) return 'over_budget';

    const victims: BodyRead[] = [];
    let freedBytes = 0;
    for (const read of ranked) {
      if (freedBytes >= neededBytes) break;
      if (read === requester) {
        this.cut(requester);
        return 'evicted';
      }
      if (read.chargedBytes === 0) continue;
      victims.push(read);
      freedBytes += read.chargedBytes;
    }
    for (const victim of victims) {
      this.cut(victim);
      victim.evict();
    }
    return 'charged';
  }

  /** Releases the bytes of `read` and ends it as a read in progress. */
  cut(read: BodyRead): void {
    this.release(read.chargedBytes);
    read.chargedBytes = 0;
    this.#reads.delete(read);
  }

  release(bytes: number): void {
    this.#usedBytes -= bytes;
  }
}

/** Orders reads for cutting: the higher score first, and `requester` last on a tie. */
function compareForCut(
  a: { read: BodyRead; score: number },
  b: { read: BodyRead; score: number },
  requester: BodyRead,
): number {
  if (a.score !== b.score) return a.score > b.score ? -1 : 1;
  if (a.read === requester) return 1;
  if (b.read === requester) return -1;
  return 0;
}

export interface BodyLimits {
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** Budget that each chunk is charged to as it arrives. */
  budget: ByteBudget;
  /** Milliseconds from the start of the read until the whole body must have arrived. */
  timeoutMs: number;
  /** Error thrown for a body larger than `maxBytes`. */
  tooLarge: () => AppError;
  /** Error thrown when the next chunk would exceed the budget even with every other read cut. */
  overBudget: () => AppError;
  /** Error thrown when the body did not arrive whole, with the bytes that had arrived. */
  incomplete: (reason: IncompleteBodyReason, receivedBytes: number) => AppError;
}

/** A body read into memory, still charged to its budget until `release` is called. */
export interface ChargedBody {
  bytes: Uint8Array;
  release(): void;
}

/**
 * Reads the whole body of `request`. Each chunk is charged to `limits.budget` when it arrives,
 * rather than the declared Content-Length, so a body that arrives slowly holds only what it has
 * sent. The read is cut, and its charge released at once, when the body has not arrived
 * within `limits.timeoutMs` or when the budget cuts it to make room for another body. On any
 * error the charge is released before this throws. The rest of a cut body is left unread:
 * the caller should respond with `Connection: close`.
 */
export async function readLimitedBody(request: Request, limits: BodyLimits): Promise<ChargedBody> {
  const declared = request.headers.get('content-length');
  if (declared !== null && Number(declared) > limits.maxBytes) throw limits.tooLarge();

  const { budget } = limits;
  const chunks: Uint8Array[] = [];
  let size = 0;
  let cutReason: IncompleteBodyReason | undefined;
  // Ends the pending wait for a chunk. Each wait gets its own promise, because reactions left on
  // one long-lived promise would keep every chunk reachable.
  let wake: (() => void) | undefined;
  const interrupt = () => wake?.();
  const declaredBytes = declared === null ? NaN : Number(declared);
  const expectedBytes = Number.isFinite(declaredBytes) ? declaredBytes : limits.maxBytes;
  const read = budget.startRead(expectedBytes, () => {
    cutReason = 'evicted';
    interrupt();
  });
  const timer = setTimeout(() => {
    cutReason = 'timed_out';
    budget.cut(read);
    interrupt();
  }, limits.timeoutMs);

  let releasedBytes = false;
  const release = () => {
    if (releasedBytes) return;
    releasedBytes = true;
    budget.finishRead(read);
    budget.release(read.chargedBytes);
    read.chargedBytes = 0;
  };
  try {
    if (!request.body) return { bytes: new Uint8Array(0), release };
    const reader = request.body.getReader();
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array> | 'interrupted';
      try {
        // After an interrupt the pending read settles when the connection closes, into a
        // promise that has already resolved, so its rejection is handled.
        chunk = await new Promise<ReadableStreamReadResult<Uint8Array> | 'interrupted'>(
          (resolve, reject) => {
            wake = () => resolve('interrupted');
            reader.read().then(resolve, reject);
          },
        );
      } catch {
        throw limits.incomplete('closed', size);
      } finally {
        wake = undefined;
      }
      // The reason is set before each interrupt. A chunk that arrived in the same turn as the
      // cut is dropped too.
      if (chunk === 'interrupted' || cutReason !== undefined) {
        throw limits.incomplete(cutReason!, size);
      }
      if (chunk.done) break;
      if (size + chunk.value.length > limits.maxBytes) throw limits.tooLarge();
      const charged = budget.charge(read, chunk.value.length);
      if (charged === 'evicted') throw limits.incomplete('evicted', size);
      if (charged === 'over_budget') throw limits.overBudget();
      size += chunk.value.length;
      chunks.push(chunk.value);
    }
  } catch (error) {
    // The rest of the body is left unread: @hono/node-server drains or closes the connection
    // after the response.
    release();
    throw error;
  } finally {
    clearTimeout(timer);
    budget.finishRead(read);
  }
  return { bytes: Buffer.concat(chunks, size), release };
}
