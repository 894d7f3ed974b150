import { pino, type Logger } from 'pino';
import { toSafeError } from './errors/safe-error.ts';

/** Paths of fields that may carry a secret; pino replaces their values before writing. */
const redactedPaths = [
  'apiKey',
  '*.apiKey',
  'key',
  '*.key',
  'token',
  '*.token',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers.cookie',
  'privateKey',
  'secret',
  '*.secret',
  'apiKeys',
  '*.apiKeys',
  'ciphertext',
  '*.ciphertext',
  'masterKey',
  'masterKeys',
  'config.masterKeys',
  'MASTER_KEY',
  'MASTER_KEYS',
];

export type { Logger };

function serializeError(value: unknown): unknown {
  return value instanceof Error ? toSafeError(value) : value;
}

const streamsIgnoringBrokenPipe = new WeakSet<NodeJS.WritableStream>();

/**
 * Keeps a broken pipe on `destination` from ending the process. When the reader of a pipe
 * exits (`fixwright start | head -1`), the write fails with EPIPE and the stream is destroyed,
 * so this and every later log line are dropped. Any other error is thrown as before.
 */
function ignoreBrokenPipe(destination: NodeJS.WritableStream): void {
  // One listener per stream, because tests create many loggers on process.stdout.
  if (streamsIgnoringBrokenPipe.has(destination)) return;
  streamsIgnoringBrokenPipe.add(destination);
  destination.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

export function createLogger(level: string, destination: NodeJS.WritableStream = process.stdout): Logger {
  ignoreBrokenPipe(destination);
  return pino(
    {
      level,
      base: { service: 'fixwright' },
      redact: { paths: redactedPaths, censor: '[redacted]' },
      // pino's own serializer writes every enumerable field, and a DrizzleQueryError has its
      // query parameters (file text, keys) there. Objects that are not Errors pass unchanged.
      serializers: { err: serializeError },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
