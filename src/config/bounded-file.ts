/**
 * Reads files whose paths an operator gives, such as PRIVATE_KEY_PATH or `receive --payload`,
 * with a size limit. `readFile` of /dev/zero grows until memory runs out, and of a FIFO waits
 * for a writer that may never come, so only regular files are read.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';

/**
 * Raised for a path that is not a regular file or is larger than the limit. The message names
 * the path and the problem, such as `"/dev/zero" is a character device, not a regular file`,
 * and callers add the setting and what to do.
 */
export class BoundedFileError extends Error {
  override name = 'BoundedFileError';
}

// Opening a FIFO that replaced the file after the stat then returns at once instead of waiting
// for a writer. Windows has no such flag.
const openFlags = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/**
 * Reads the regular file at `path`, of at most `maxBytes` bytes. Errors of `stat`, `open` and
 * `read`, such as ENOENT, are thrown as they are. The read stops after `maxBytes + 1` bytes,
 * because the size that `stat` gives can be wrong: procfs files such as /proc/self/pagemap
 * report 0 bytes and are far larger.
 */
export async function readBoundedFile(path: string, maxBytes: number): Promise<Buffer> {
  checkStats(path, await stat(path), maxBytes);
  const handle = await open(path, openFlags);
  try {
    checkStats(path, await handle.stat(), maxBytes);
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return checkLength(path, buffer, length, maxBytes);
  } finally {
    await handle.close();
  }
}

/** Reads the regular file at `path`, of at most `maxBytes` bytes, as `readBoundedFile` does. */
export function readBoundedFileSync(path: string, maxBytes: number): Buffer {
  checkStats(path, statSync(path), maxBytes);
  const descriptor = openSync(path, openFlags);
  try {
    checkStats(path, fstatSync(descriptor), maxBytes);
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    while (length < buffer.length) {
      const bytesRead = readSync(descriptor, buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return checkLength(path, buffer, length, maxBytes);
  } finally {
    closeSync(descriptor);
  }
}

function checkStats(path: string, stats: Stats, maxBytes: number): void {
  if (!stats.isFile()) {
    throw new BoundedFileError(`${JSON.stringify(path)} is ${describeFileType(stats)}, not a regular file`);
  }
  if (stats.size > maxBytes) {
    throw new BoundedFileError(
      `${JSON.stringify(path)} is ${stats.size} bytes, over the limit of ${maxBytes} bytes`,
    );
  }
}

function checkLength(path: string, buffer: Buffer, length: number, maxBytes: number): Buffer {
  if (length > maxBytes) {
    throw new BoundedFileError(
      `${JSON.stringify(path)} is larger than the limit of ${maxBytes} bytes, though its size ` +
        'reads as smaller (a file that grew while it was read, or a file under /proc)',
    );
  }
  return buffer.subarray(0, length);
}

function describeFileType(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isSocket()) return 'a socket';
  return 'a special file';
}
