/**
 * Small per-database records next to the backups, read by prune without opening every manifest:
 *   <database>/.pgshelf-last-attempt.json   the latest backup attempt: running, succeeded or failed
 *   <database>/.pgshelf-last-verified.json  the newest backup a restore drill verified
 */
import type { Logger } from './logger.js';
import type { Storage } from './storage/index.js';
import { databasePrefix } from './storage/layout.js';

export interface AttemptRecord {
  readonly status: 'running' | 'succeeded' | 'failed';
  readonly id: string;
  readonly at: string;
  readonly error?: string;
}

export interface VerifiedRecord {
  readonly id: string;
  readonly at: string;
}

export const attemptKey = (database: string): string =>
  `${databasePrefix(database)}.pgshelf-last-attempt.json`;
export const verifiedKey = (database: string): string =>
  `${databasePrefix(database)}.pgshelf-last-verified.json`;

async function readJson<T>(storage: Storage, key: string): Promise<T | undefined> {
  const body = await storage.getObject(key);
  if (!body) return undefined;
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

export const readAttempt = (storage: Storage, database: string): Promise<AttemptRecord | undefined> =>
  readJson<AttemptRecord>(storage, attemptKey(database));

export const readVerified = (storage: Storage, database: string): Promise<VerifiedRecord | undefined> =>
  readJson<VerifiedRecord>(storage, verifiedKey(database));

/** Best effort: a record that cannot be written is logged, never a reason to fail a backup. */
export async function writeAttempt(
  storage: Storage,
  database: string,
  record: AttemptRecord,
  log: Logger,
): Promise<void> {
  await storage
    .putObject(attemptKey(database), JSON.stringify(record) + '\n')
    .catch((err: unknown) => log.warn({ err: String(err) }, 'could not record the backup attempt'));
}

export async function writeVerified(
  storage: Storage,
  database: string,
  record: VerifiedRecord,
): Promise<void> {
  await storage.putObject(verifiedKey(database), JSON.stringify(record) + '\n');
}
