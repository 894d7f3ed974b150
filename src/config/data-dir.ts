import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from './env.ts';

/**
 * Creates the data directory (DATA_DIR, absolute) when it is missing, and checks that it is a
 * directory this process can write to. Throws ConfigError with one line that names DATA_DIR,
 * the path, the cause and what to set.
 *
 * The missing directories are created one at a time instead of by a recursive mkdir. Node's
 * recursive mkdir retries when mkdir fails with ENOENT under a parent that exists, as in /proc,
 * and on Node 20.20.2 it was still retrying at full CPU after 5 s.
 */
export async function prepareDataDir(dataDir: string): Promise<void> {
  const missing = await findMissingDirectories(dataDir);
  for (const directory of missing) {
    try {
      await mkdir(directory, { mode: 0o755 });
    } catch (error) {
      // Another process may have created it in between.
      if (errorCode(error) === 'EEXIST' && (await isDirectory(directory))) continue;
      throw invalidDataDir(dataDir, `cannot create ${directory}: ${describeError(error)}`);
    }
  }
  try {
    await access(dataDir, constants.W_OK | constants.X_OK);
  } catch (error) {
    throw invalidDataDir(dataDir, `this user cannot write to it: ${describeError(error)}`);
  }
}

/**
 * Returns the directories to create for `dataDir`, outermost first, or [] when it exists.
 * Throws ConfigError when it or its nearest existing ancestor is not a directory, or cannot be
 * read.
 */
async function findMissingDirectories(dataDir: string): Promise<string[]> {
  const missing: string[] = [];
  let current = dataDir;
  for (;;) {
    const info = await stat(current).catch((error: unknown) => {
      // ENOTDIR means an ancestor is a file, which the walk up reaches and names.
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw invalidDataDir(dataDir, `cannot read ${current}: ${describeError(error)}`);
    });
    if (info) {
      if (!info.isDirectory()) {
        throw invalidDataDir(dataDir, `${current} exists and is not a directory`);
      }
      return missing;
    }
    missing.unshift(current);
    const parent = path.dirname(current);
    // The root directory always exists, so this ends the loop only if stat fails on it.
    if (parent === current) return missing;
    current = parent;
  }
}

async function isDirectory(directory: string): Promise<boolean> {
  return stat(directory).then(
    (info) => info.isDirectory(),
    () => false,
  );
}

function invalidDataDir(dataDir: string, cause: string): ConfigError {
  return new ConfigError(
    `Invalid DATA_DIR ${JSON.stringify(dataDir)}: ${cause}. Set DATA_DIR to a directory this ` +
      'user can write to, or to a path where it can be created.',
  );
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

/**
 * Turns a Node file system error ("ENOENT: no such file or directory, mkdir '/x'") into its
 * description and code without the path, which the message names already.
 */
function describeError(error: unknown): string {
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  const description = /^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message;
  return code ? `${description} (${code})` : description;
}
