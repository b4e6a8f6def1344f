import { pino, type Logger } from 'pino';

export type { Logger };

/** Field paths that may carry secrets; pino replaces their values before anything is written. */
export const REDACT_PATHS = [
  'password',
  'adminPassword',
  '*.password',
  '*.adminPassword',
  '*.*.password',
  'env.PGPASSWORD',
  'PGPASSWORD',
  'secretAccessKey',
  '*.secretAccessKey',
  'manifestKey',
  '*.manifestKey',
  'PGSHELF_MANIFEST_KEY',
  '*.PGSHELF_MANIFEST_KEY',
  '*.*.PGSHELF_MANIFEST_KEY',
  'webhookSecret',
  '*.webhookSecret',
  'PGSHELF_WEBHOOK_SECRET',
  '*.PGSHELF_WEBHOOK_SECRET',
];

/** JSON lines on stderr, so that stdout stays free for `--json` documents. */
export function createLogger(level = 'info', destination: number | NodeJS.WritableStream = 2): Logger {
  const stream =
    typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination;
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    stream,
  );
}

/** A logger that drops everything (tests and library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
