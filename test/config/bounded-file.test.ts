import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BoundedFileError, readBoundedFile, readBoundedFileSync } from '../../src/config/bounded-file.ts';

const folder = mkdtempSync(path.join(os.tmpdir(), 'fixwright-bounded-file-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

const fifo = path.join(folder, 'pipe');
execFileSync('mkfifo', [fifo]);

const readers = [
  { name: 'readBoundedFile', read: readBoundedFile },
  {
    name: 'readBoundedFileSync',
    read: async (file: string, maxBytes: number) => readBoundedFileSync(file, maxBytes),
  },
];

describe.each(readers)('$name', ({ read }) => {
  /** Returns the message of the BoundedFileError that reading `file` raises. */
  async function rejectionOf(file: string, maxBytes: number): Promise<string> {
    const error = await read(file, maxBytes).then(
      () => new Error(`${file} was read`),
      (caught: unknown) => caught,
    );
    if (error instanceof BoundedFileError) return error.message;
    throw error;
  }

  it('reads a file up to the limit', async () => {
    const file = path.join(folder, 'ten.txt');
    writeFileSync(file, '0123456789');

    expect((await read(file, 10)).toString('utf8')).toBe('0123456789');
    expect((await read(file, 1000)).toString('utf8')).toBe('0123456789');
  });

  it('reads an empty file', async () => {
    const file = path.join(folder, 'empty.txt');
    writeFileSync(file, '');

    expect(await read(file, 10)).toHaveLength(0);
  });

  it('rejects a file over the limit', async () => {
    const file = path.join(folder, 'eleven.txt');
    writeFileSync(file, '0123456789a');

    expect(await rejectionOf(file, 10)).toBe(
      `${JSON.stringify(file)} is 11 bytes, over the limit of 10 bytes`,
    );
  });

  it.each([
    ['/proc/self/maps', 100],
    // pagemap reads only whole 8-byte entries, so the limit plus the one byte read past it is 1 MiB.
    ['/proc/self/pagemap', 1024 * 1024 - 1],
  ])('stops reading %s after the limit', async (file, maxBytes) => {
    expect(await rejectionOf(file, maxBytes)).toBe(
      `${JSON.stringify(file)} is larger than the limit of ${maxBytes} bytes, though its size ` +
        'reads as smaller (a file that grew while it was read, or a file under /proc)',
    );
  });

  it('rejects a character device', async () => {
    expect(await rejectionOf('/dev/zero', 1000)).toBe(
      '"/dev/zero" is a character device, not a regular file',
    );
  });

  it('rejects a FIFO without waiting', async () => {
    expect(await rejectionOf(fifo, 1000)).toBe(
      `${JSON.stringify(fifo)} is a FIFO (named pipe), not a regular file`,
    );
  });

  it('rejects a directory', async () => {
    expect(await rejectionOf(folder, 1000)).toBe(
      `${JSON.stringify(folder)} is a directory, not a regular file`,
    );
  });

  it('throws a missing file as ENOENT', async () => {
    const missing = path.join(folder, 'missing.txt');

    await expect(read(missing, 10)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
