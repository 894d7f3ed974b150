import postgres from 'postgres';
import { baseClientOptions } from './client.ts';
import { maskUrlPassword, maskUrlValue } from '../config/env.ts';
import { StartupError } from '../errors/startup-error.ts';

/** Seconds the start-up check waits for PostgreSQL to accept the connection. */
const connectTimeoutSeconds = 10;

/**
 * Connects to `url` and runs `SELECT 1`, so an unreachable server, a wrong password or a
 * missing database stops the command with one line that names the cause and what to check.
 * The line calls the server `name`. Throws StartupError.
 */
export async function checkDatabaseUrl(url: string, name = 'DATABASE_URL'): Promise<void> {
  let sql: postgres.Sql | undefined;
  try {
    // postgres() parses the URL at once and throws TypeError for one it cannot parse.
    sql = postgres(url, {
      ...baseClientOptions,
      max: 1,
      connect_timeout: connectTimeoutSeconds,
      connection: { application_name: 'fixwright' },
    });
    await sql`SELECT 1`;
  } catch (error) {
    throw new StartupError(describeConnectionFailure(url, error, name));
  } finally {
    await sql?.end({ timeout: 5 }).catch(() => {});
  }
}

/** Builds the one-line message for a failed connection to `url`, calling the server `name`. */
export function describeConnectionFailure(url: string, error: unknown, name = 'DATABASE_URL'): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  const reason = typeof message === 'string' ? message : String(error);
  const address = describeServerAddress(url);
  const maskedUrl = maskUrlValue(url);
  const prefix = `Cannot connect to ${name} ${JSON.stringify(maskedUrl)} at ${address}`;
  const suffix = typeof code === 'string' ? ` (${code})` : '';

  // The bundled server belongs to another Fixwright process, so DATABASE_URL advice does not fit.
  if (name !== 'DATABASE_URL' && code !== '57P03') {
    return (
      `${prefix}: ${reason}${suffix}. The Fixwright process that runs it may be stopping: ` +
      'run the command again once that process has stopped, or restart it with "npm start".'
    );
  }

  switch (code) {
    case 'ECONNREFUSED':
      return (
        `${prefix}: connection refused (ECONNREFUSED). Check that PostgreSQL is running and ` +
        `listens on ${address}, or correct the host and port in DATABASE_URL.`
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${prefix}: the host name was not found (${code}). Correct the host in DATABASE_URL.`;
    case 'CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return (
        `${prefix}: no answer within ${connectTimeoutSeconds} s (${code}). Check that PostgreSQL ` +
        'is running and that no firewall drops connections to that host and port.'
      );
    case '28P01':
      return `${prefix}: ${reason} (28P01). Check the user name and password in DATABASE_URL.`;
    case '3D000':
      return (
        `${prefix}: ${reason} (3D000). Create the database on that server, or correct the ` +
        'database name in DATABASE_URL.'
      );
    case '57P03':
      // PostgreSQL rejects new connections with cannot_connect_now while it starts up, recovers
      // or shuts down. A smart shutdown waits until every session has ended.
      return (
        `${prefix}: ${reason} (SQLSTATE 57P03 cannot_connect_now). PostgreSQL is shutting down ` +
        'or starting up: retry once it has started. A smart shutdown (SIGTERM) waits for every ' +
        'client to disconnect, so stop the processes connected to it, such as "npm start", then ' +
        'start it again.'
      );
    case '28000':
      return (
        `${prefix}: ${reason} (28000). Allow this user and host in the server's pg_hba.conf, ` +
        'or use another user in DATABASE_URL.'
      );
    default: {
      // maskUrlPassword finds only URLs with "scheme://" in the reason, so a copy of the URL
      // itself is masked first, whatever its form.
      const unmasked = url === '' ? reason : reason.replaceAll(url, maskedUrl);
      const maskedReason = maskUrlPassword(unmasked);
      return (
        `${prefix}: ${maskedReason}${suffix}. Check DATABASE_URL and that the ` +
        'server accepts connections from this machine.'
      );
    }
  }
}

/** host:port of the first server in `url`, with PostgreSQL's default port 5432. */
export function describeServerAddress(url: string): string {
  try {
    const parsed = new URL(url);
    const host = parsed.hostname || 'localhost';
    return `${host}:${parsed.port || '5432'}`;
  } catch {
    return 'the host in DATABASE_URL';
  }
}
