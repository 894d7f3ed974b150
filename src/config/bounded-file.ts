/**
 * Reads files whose paths an operator gives, such as PRIVATE_KEY_PATH or `receive --payload`,
 * with a size limit. `readFile` of /dev/zero grows until memory runs out, and of a FIFO waits
 * for a writer that may never come, so only regular files are read.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, statSync, type Stats } from 'node:fs';
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
 * `read`, such as ENOENT, are thrown as they are.
 * NOTE: a regular file that grows past the limit while it is read is rejected only after the read.
 */
export async function readBoundedFile(path: string, maxBytes: number): Promise<Buffer> {
  checkStats(path, await stat(path), maxBytes);
  const handle = await open(path, openFlags);
  try {
    checkStats(path, await handle.stat(), maxBytes);
    return checkLength(path, await handle.readFile(), maxBytes);
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
    return checkLength(path, readFileSync(descriptor), maxBytes);
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

function checkLength(path: string, contents: Buffer, maxBytes: number): Buffer {
  if (contents.length > maxBytes) {
    throw new BoundedFileError(
      `${JSON.stringify(path)} grew over the limit of ${maxBytes} bytes while it was read`,
    );
  }
  return contents;
}

function describeFileType(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isSocket()) return 'a socket';
  return 'a special file';
}
