import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { StartupError } from '../errors/startup-error.ts';
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
      if (noSpaceCodes.has(errorCode(error) ?? '')) {
        throw new StartupError(
          `Cannot create ${directory} for DATA_DIR: ${describeError(error)}. ${noSpaceAdvice(dataDir, error)}`,
        );
      }
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
 * Throws the ConfigError of prepareDataDir when `dataDir` or its nearest existing ancestor is
 * not a directory, and creates nothing.
 */
export async function rejectDataDirFile(dataDir: string): Promise<void> {
  await findMissingDirectories(dataDir);
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

/** Codes of the file system errors of a full file system and of a used-up disk quota. */
const noSpaceCodes = new Set(['ENOSPC', 'EDQUOT']);

/** Codes of the file system errors of missing permissions. */
const accessCodes = new Set(['EACCES', 'EPERM']);

/** Returns the advice for a file system under `dataDir` that has no space left for this user. */
function noSpaceAdvice(dataDir: string, error: unknown): string {
  const where = `the file system that holds ${dataDir}`;
  const free =
    errorCode(error) === 'EDQUOT'
      ? `This user's disk quota on ${where} is used up. Free space or raise the quota`
      : `${where[0]!.toUpperCase()}${where.slice(1)} is full. Free space on it`;
  return `${free}, or set DATA_DIR to a folder on another file system, then run the command again.`;
}

/**
 * Turns a failed file system call on `file` in DATA_DIR into an error with one line that names
 * the file, the cause and what to do. `action` names the step that failed, such as "create the master key
 * file". A full file system or quota gives a StartupError (exit status 1), and missing
 * permissions or a read-only file system a ConfigError (exit status 2), because DATA_DIR can
 * fix them. Another error with a code gives a StartupError, and one without a code, which is
 * not a file system error, is returned as it is.
 */
export function dataFileError(dataDir: string, file: string, action: string, error: unknown): unknown {
  const code = errorCode(error);
  if (code === undefined) return error;
  const cause = `Cannot ${action} ${file}: ${describeError(error)}`;
  if (noSpaceCodes.has(code)) return new StartupError(`${cause}. ${noSpaceAdvice(dataDir, error)}`);
  if (code === 'EROFS') {
    return new ConfigError(
      `${cause}. The file system that holds ${dataDir} is read-only, so set DATA_DIR to a folder ` +
        'on a writable file system.',
    );
  }
  if (accessCodes.has(code)) {
    const user = process.getuid ? `the user that runs Fixwright (uid ${process.getuid()})` : 'the user that runs Fixwright';
    return new ConfigError(
      `${cause}. Give ${user} read and write access to ${dataDir} and the files in it, or set ` +
        'DATA_DIR to a folder it can write to.',
    );
  }
  return new StartupError(`${cause}. Check ${dataDir} and the files in it, then run the command again.`);
}

function errorCode(error: unknown): string | undefined {
  const code = typeof error === 'object' && error !== null ? (error as NodeJS.ErrnoException).code : undefined;
  return typeof code === 'string' ? code : undefined;
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
