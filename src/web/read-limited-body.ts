import { AppError } from './errors.ts';

/** Bytes of request bodies that the requests sharing one budget may hold in memory together. */
export class ByteBudget {
  #usedBytes = 0;

  constructor(readonly maxBytes: number) {}

  /** Adds `bytes` to the bytes in use and returns true, or returns false when that would exceed the maximum. */
  take(bytes: number): boolean {
    if (this.#usedBytes + bytes > this.maxBytes) return false;
    this.#usedBytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.#usedBytes -= bytes;
  }
}

export interface BodyLimits {
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** Budget that each chunk is charged to as it arrives. */
  budget: ByteBudget;
  /** Error thrown for a body larger than `maxBytes`. */
  tooLarge: () => AppError;
  /** Error thrown when the next chunk would exceed the budget. */
  overBudget: () => AppError;
}

/** A body read into memory, still charged to its budget until `release` is called. */
export interface ChargedBody {
  bytes: Uint8Array;
  release(): void;
}

/**
 * Reads the whole body of `request`. Each chunk is charged to `limits.budget` when it arrives,
 * rather than the declared Content-Length, so a body that arrives slowly holds only what it has
 * sent. On any error the charge is released before this throws. A connection that closes
 * before the body is complete, as when the server's request timeout ends it, raises a 400.
 */
export async function readLimitedBody(request: Request, limits: BodyLimits): Promise<ChargedBody> {
  const declared = request.headers.get('content-length');
  if (declared !== null && Number(declared) > limits.maxBytes) throw limits.tooLarge();

  const chunks: Uint8Array[] = [];
  let size = 0;
  const release = () => {
    limits.budget.release(size);
    size = 0;
  };
  if (!request.body) return { bytes: new Uint8Array(0), release };

  const reader = request.body.getReader();
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch {
        throw new AppError(
          'bad_request',
          'The connection closed before the whole request body arrived; send the body again.',
        );
      }
      if (chunk.done) break;
      if (size + chunk.value.length > limits.maxBytes) throw limits.tooLarge();
      if (!limits.budget.take(chunk.value.length)) throw limits.overBudget();
      size += chunk.value.length;
      chunks.push(chunk.value);
    }
  } catch (error) {
    // The rest of the body is left unread: @hono/node-server drains or closes the connection
    // after the response.
    release();
    throw error;
  }
  return { bytes: Buffer.concat(chunks, size), release };
}
