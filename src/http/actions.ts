/**
 * What the dashboard's buttons do: put a backup, drill or restore job on its queue, as `pgshelf backup --no-wait`
 * and friends do (queues.ts builds the data and the ids), without running one twice.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { resolveTarget, type Config } from '../config/index.js';
import { restoreNonce } from '../jobs/restore.js';
import { lastSlotJobsKey, manualJobId, queuedJobData, type JobKind } from '../queues.js';

/** States of a job that a click should join rather than add another behind. */
const PENDING = new Set(['waiting', 'prioritized', 'paused', 'delayed', 'active', 'waiting-children']);

/** How long the "last job of this database" record lives when no scheduler has given it a lifetime. */
const LAST_JOB_TTL_S = 8 * 86_400;

export interface Enqueued {
  readonly jobId: string;
  readonly kind: JobKind;
  readonly database: string;
  /** true: a job of this kind for this database was already waiting or running, and is the one returned. */
  readonly existing: boolean;
  /** Its state when it already existed ('waiting', 'active', ...). */
  readonly state?: string;
}

/**
 * Queues a backup or drill of `database`, unless one is already pending: the job the scheduler (or an earlier
 * click) queued, if it has not finished, is returned instead, and the scheduler's next slot in turn joins a
 * click's job that still waits. So a click and a slot never run the same backup twice.
 */
export async function enqueueNow(
  config: Config,
  queue: Queue,
  kind: Extract<JobKind, 'backup' | 'drill'>,
  database: string,
  now: Date = new Date(),
): Promise<Enqueued> {
  const name = resolveTarget(config, database).name;
  const client = (await queue.client) as unknown as Redis;
  const lastKey = lastSlotJobsKey(config.queuePrefix, kind);
  const lastId = await client.hget(lastKey, name);
  if (lastId) {
    const state = await queue.getJobState(lastId);
    if (PENDING.has(state)) return { jobId: lastId, kind, database: name, existing: true, state };
  }
  const jobId = manualJobId(kind, name, now);
  const input = kind === 'backup' ? { database: name } : { database: name, backup: 'latest' };
  const job = await queue.add(kind, queuedJobData(config, input), { jobId });
  const ttl = await client.ttl(lastKey);
  // The object form: in a MULTI on BullMQ's client, hset(key, field, value) spreads `field` into characters.
  const write = client.multi().hset(lastKey, { [name]: jobId });
  // The scheduler sets this hash's lifetime; alone here, give it one so it does not stay in Redis for ever.
  if (ttl < 0) write.expire(lastKey, LAST_JOB_TTL_S);
  await write.exec();
  return { jobId: job.id ?? jobId, kind, database: name, existing: false };
}

/** Queues a restore of `backup` ('latest' or an id) of `database` into the new database `into`. */
export async function enqueueRestore(
  config: Config,
  queue: Queue,
  database: string,
  backup: string,
  into: string,
): Promise<Enqueued> {
  const name = resolveTarget(config, database).name;
  // As the CLI does: the restore's identity for every attempt of this job, whatever id the queue gives it.
  const data = queuedJobData(config, { database: name, backup, into, nonce: restoreNonce() });
  const job = await queue.add('restore', data);
  return { jobId: String(job.id), kind: 'restore', database: name, existing: false };
}

/** PostgreSQL's own limit on a name (NAMEDATALEN - 1 bytes). */
const MAX_NAME_BYTES = 63;

/**
 * Checks the name typed into "restore into a new database": letters, digits and underscores (a dash allowed
 * after the first character), starting with a letter or underscore, at most 63 bytes, and not the database
 * whose backup it is. Returns the problem and a good example, or undefined when it is fine.
 */
export function checkNewDatabaseName(into: string, source: string): string | undefined {
  const example = `e.g. ${suggestedRestoreName(source)}`;
  if (into === '') return `give the name of the database to create, ${example}`;
  if (Buffer.byteLength(into, 'utf8') > MAX_NAME_BYTES) {
    return `"${into}" is ${Buffer.byteLength(into, 'utf8')} bytes long; PostgreSQL names hold at most 63: ${example}`;
  }
  if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(into)) {
    return (
      `"${into}" is not a plain database name: use letters, digits, "_" and "-", starting with a letter or ` +
      `"_", ${example}`
    );
  }
  if (into === source) return `"${into}" is the database being restored; restore into a new one, ${example}`;
  return undefined;
}

/** A name to offer for a restore of `source`: `<source>_restored`, cut to fit 63 bytes. */
export function suggestedRestoreName(source: string): string {
  const plain = source.replace(/[^A-Za-z0-9_]/g, '_').replace(/^([^A-Za-z_])/, '_$1');
  return `${plain.slice(0, MAX_NAME_BYTES - '_restored'.length)}_restored`;
}
