/**
 * Small per-database records next to the backups, read by prune without opening every manifest:
 *   <database>/.pgshelf-last-attempt.json   the latest backup attempt: running, succeeded or failed; while running,
 *                                           the BullMQ job running it and a heartbeat (renewedAt), so a reader can
 *                                           tell an attempt whose worker died (it never writes its outcome)
 *   <database>/.pgshelf-last-verified.json  the newest backup a restore drill verified
 * Read with a size cap and a schema: a marker that fails them counts as absent, and is reported.
 */
import { z } from 'zod';
import { errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Storage } from '../storage/index.js';
import { databasePrefix } from './layout.js';

/** Markers are a few hundred bytes; anything much larger was not written by pgshelf. */
export const MARKER_MAX_BYTES = 64 * 1024;

const AttemptSchema = z.object({
  status: z.enum(['running', 'succeeded', 'failed']),
  id: z.string().min(1).max(200),
  at: z.iso.datetime({ offset: true }),
  error: z.string().optional(),
  /** The job running the attempt, `<prefix>:<queue>:<id>` (runningJobId); absent when run in-process. */
  job: z.string().min(1).max(400).optional(),
  /** While running: rewritten every `renewEveryMs` (the writer's clock) until the attempt ends. */
  renewedAt: z.iso.datetime({ offset: true }).optional(),
  renewEveryMs: z.number().int().positive().max(86_400_000).optional(),
});

const VerifiedSchema = z.object({
  id: z.string().min(1).max(200),
  at: z.iso.datetime({ offset: true }),
});

export type AttemptRecord = Readonly<z.infer<typeof AttemptSchema>>;
export type VerifiedRecord = Readonly<z.infer<typeof VerifiedSchema>>;

/** A marker as found: absent, valid, or present but unusable (with why, naming the object and the field). */
export type MarkerRead<T> =
  | { readonly state: 'absent' }
  | { readonly state: 'ok'; readonly record: T }
  | { readonly state: 'invalid'; readonly problem: string };

export const attemptKey = (database: string): string =>
  `${databasePrefix(database)}.pgshelf-last-attempt.json`;
export const verifiedKey = (database: string): string =>
  `${databasePrefix(database)}.pgshelf-last-verified.json`;

async function readMarker<T>(storage: Storage, key: string, schema: z.ZodType<T>): Promise<MarkerRead<T>> {
  const where = storage.locate(key);
  // A storage failure is thrown (the job is retried), not mistaken for a bad marker.
  const body = await storage.getObject(key, { maxBytes: MARKER_MAX_BYTES });
  if (!body) return { state: 'absent' };
  if (body.length > MARKER_MAX_BYTES) {
    return { state: 'invalid', problem: `${where} is larger than ${MARKER_MAX_BYTES} bytes` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return { state: 'invalid', problem: `${where} is not valid JSON (${errorMessage(err)})` };
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`)
      .join('; ');
    return { state: 'invalid', problem: `${where} is invalid: ${issues}` };
  }
  return { state: 'ok', record: result.data };
}

export const readAttemptMarker = (storage: Storage, database: string): Promise<MarkerRead<AttemptRecord>> =>
  readMarker(storage, attemptKey(database), AttemptSchema);

export const readVerifiedMarker = (storage: Storage, database: string): Promise<MarkerRead<VerifiedRecord>> =>
  readMarker(storage, verifiedKey(database), VerifiedSchema);

/** The record, or undefined when absent or unusable (then logged: a bad marker never passes unnoticed). */
function recordOrWarn<T>(read: MarkerRead<T>, log: Logger | undefined): T | undefined {
  if (read.state === 'invalid') log?.warn({ problem: read.problem }, 'ignoring an unusable marker');
  return read.state === 'ok' ? read.record : undefined;
}

export const readAttempt = async (
  storage: Storage,
  database: string,
  log?: Logger,
): Promise<AttemptRecord | undefined> => recordOrWarn(await readAttemptMarker(storage, database), log);

export const readVerified = async (
  storage: Storage,
  database: string,
  log?: Logger,
): Promise<VerifiedRecord | undefined> => recordOrWarn(await readVerifiedMarker(storage, database), log);

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

/**
 * Keeps a running attempt's marker alive: rewrites `record` with a fresh `renewedAt` every `record.renewEveryMs`
 * (a write still under way skips a beat) until `stop()`, which waits for the write in flight, so the outcome
 * written next is never overwritten by a late beat.
 */
export function heartbeatAttempt(
  storage: Storage,
  database: string,
  record: AttemptRecord & { readonly renewEveryMs: number },
  now: () => Date,
  log: Logger,
): { stop(): Promise<void> } {
  let writing: Promise<void> | undefined;
  const timer = setInterval(() => {
    writing ??= writeAttempt(storage, database, { ...record, renewedAt: now().toISOString() }, log).finally(
      () => (writing = undefined),
    );
  }, record.renewEveryMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await writing;
    },
  };
}

/** Beats a running attempt's heartbeat may miss (a slow or refused write) before it reads as stopped. */
export const HEARTBEAT_MISSES = 3;

/**
 * Whether a "running" marker's heartbeat is still beating at `now`: renewed (or started) within HEARTBEAT_MISSES
 * beats. undefined for a marker without a heartbeat (written by an older pgshelf): it cannot be told.
 */
export function heartbeatFresh(record: AttemptRecord, now: Date): boolean | undefined {
  if (record.renewEveryMs === undefined) return undefined;
  const last = Date.parse(record.renewedAt ?? record.at);
  return now.getTime() - last <= HEARTBEAT_MISSES * record.renewEveryMs;
}

export async function writeVerified(
  storage: Storage,
  database: string,
  record: VerifiedRecord,
): Promise<void> {
  await storage.putObject(verifiedKey(database), JSON.stringify(record) + '\n');
}
