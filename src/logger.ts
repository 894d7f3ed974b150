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

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
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
    destination ?? process.stdout,
  );
}
