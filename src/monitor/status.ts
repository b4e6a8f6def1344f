/**
 * The state an on-call engineer looks at: per database, the last success, the last attempt, whether it is
 * overdue, the last restore drill, what is stored; and the queues and the workers seen. Read from storage
 * (listing, manifests, attempt markers) and Redis (BullMQ job counts and worker list) only, so any number of
 * workers and restarts of anything give the same answer. `/metrics`, the dashboard and `pgshelf status` all
 * show this one report.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { scanBackups, type StoredBackup } from '../catalog/backups.js';
import { manifestTrust, readManifest, type DrillRecord } from '../catalog/manifest.js';
import {
  heartbeatFresh,
  readAttemptMarker,
  readVerifiedMarker,
  type AttemptRecord,
} from '../catalog/markers.js';
import { mapLimit } from '../concurrency.js';
import { knownTarget, type Config, type DatabaseTarget } from '../config/index.js';
import { missingDatabases, type MissingDatabases } from '../catalog/servers.js';
import { errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { overdueState } from '../scheduler/overdue.js';
import type { Storage } from '../storage/index.js';
import { jobLockKey, runningJobId, type JobKind } from '../queues.js';
import { maskUrl } from '../url.js';
import { within } from './cache.js';

/** The BullMQ job states counted per queue (pgshelf_jobs{queue,state}). */
export const JOB_STATES = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'waiting-children',
  'paused',
  'completed',
  'failed',
] as const;
export type JobState = (typeof JOB_STATES)[number];

export interface LastSuccess {
  readonly id: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  /** The archive's size in storage (compressed, encrypted when it is). */
  readonly bytes: number;
  /** now - finishedAt when the report was made. */
  readonly ageMs: number;
}

export interface LastAttempt {
  /**
   * As the attempt marker says; but `interrupted` for a marker still saying `running` whose attempt no longer
   * runs (its worker died before writing the outcome): see `stillRunning`.
   */
  readonly status: AttemptRecord['status'] | 'interrupted';
  readonly id: string;
  readonly at: string;
  readonly error: string | null;
  /** The BullMQ job that ran it (`<prefix>:<queue>:<id>`), null when run in-process or before markers named it. */
  readonly job: string | null;
}

export interface LastDrill {
  readonly backupId: string;
  readonly at: string;
  readonly verified: boolean;
  /** The measured recovery time: download + gunzip + psql of the drilled backup. */
  readonly restoreMs: number;
  readonly detail: string | null;
}

export interface Schedule {
  readonly schedule: string;
  readonly timezone: string;
  readonly drillSchedule: string | null;
}

export interface Overdue {
  readonly overdue: boolean;
  /** The latest slot whose grace has run out (ISO instant and local wall-clock time), or null. */
  readonly dueSlot: { readonly at: string; readonly local: string } | null;
  /** When overdue: the slot without a backup. */
  readonly missedSlot: { readonly at: string; readonly local: string } | null;
  readonly nextSlot: { readonly at: string; readonly local: string };
}

export interface DatabaseStatus {
  readonly name: string;
  /** Listed in this process's settings (POSTGRES_DB, PGSHELF_CONFIG); false: found in storage only. */
  readonly configured: boolean;
  /** null when not configured here (no schedule is known). */
  readonly schedule: Schedule | null;
  readonly lastSuccess: LastSuccess | null;
  readonly lastAttempt: LastAttempt | null;
  /** null when not configured here. */
  readonly overdue: Overdue | null;
  readonly lastDrill: LastDrill | null;
  /** The newest drill that verified its backup (the same as lastDrill unless that one failed). */
  readonly lastVerifiedDrill: LastDrill | null;
  /** Committed backups (with a manifest) and their archives' bytes; orphans are archives without a manifest. */
  readonly stored: { readonly count: number; readonly bytes: number; readonly orphans: number };
  /**
   * What needs a person, one sentence each: overdue, latest attempt failed, latest drill failed, unusable
   * manifests or markers, an interrupted attempt. Empty when all is well. `pgshelf status` exits 1 when `failing`.
   */
  readonly problems: readonly string[];
  /** Overdue, or the latest backup attempt failed or was interrupted: what `pgshelf status` exits 1 for. */
  readonly failing: boolean;
  /**
   * The `servers:` entry (`host:port`) its globs put it on, when no server that could have it has it any more
   * (dropped): its backups are kept, it is not overdue. null otherwise.
   */
  readonly missingFrom: string | null;
}

export interface WorkerSeen {
  /** The worker's name (host:pid for pgshelf workers), or its Redis client address when unnamed. */
  readonly name: string;
  readonly addr: string;
  readonly queues: readonly string[];
  /** Seconds its connections have been open (the oldest). */
  readonly ageSeconds: number;
}

export type QueuesStatus =
  | {
      readonly ok: true;
      readonly counts: Readonly<Record<string, Readonly<Record<JobState, number>>>>;
      readonly workers: readonly WorkerSeen[];
    }
  | { readonly ok: false; readonly error: string };

export interface StatusReport {
  readonly generatedAt: string;
  readonly storage: string;
  readonly databases: readonly DatabaseStatus[];
  readonly queues: QueuesStatus;
  /** Per `servers:` entry: its databases that have backups but no longer exist (catalog/servers.ts). */
  readonly servers: readonly MissingDatabases[];
}

/** What a manifest contributes, kept between refreshes by key, listing time and size (a drill rewrites it). */
interface ManifestSummary {
  readonly version: string;
  readonly ok: boolean;
  readonly problem: string | null;
  readonly archiveKey: string | null;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  readonly bytes: number;
  readonly drill: LastDrill | null;
  readonly verifiedDrill: LastDrill | null;
}

/** Manifest summaries by key: a refresh reads only the manifests that are new or changed since the last one. */
export type ManifestCache = Map<string, ManifestSummary>;

export interface StatusDeps {
  readonly config: Config;
  readonly storage: Storage;
  readonly logger?: Logger;
  /** BullMQ queues by kind, for job counts and workers; without them the report says Redis was not asked. */
  readonly queues?: ReadonlyMap<JobKind, Queue>;
  /** Most time a Redis query may take (default 3 s): the report is made from storage alone past it. */
  readonly redisTimeoutMs?: number;
  readonly manifests?: ManifestCache;
}

const iso = (d: Date): string => d.toISOString();
const silent = silentLogger();
const slot = (s: { at: Date; local: string }): { at: string; local: string } => ({
  at: iso(s.at),
  local: s.local,
});

async function summarize(
  deps: StatusDeps,
  backup: StoredBackup,
  cache: ManifestCache,
): Promise<ManifestSummary | undefined> {
  const key = backup.manifestKey;
  if (key === undefined) return undefined;
  const version = `${backup.manifestModified?.getTime() ?? 0}/${backup.manifestBytes ?? 0}`;
  const cached = cache.get(key);
  if (cached && cached.version === version) return cached;
  let summary: ManifestSummary;
  try {
    const m = await readManifest(deps.storage, key, manifestTrust(deps.config));
    const asDrill = (d: DrillRecord): LastDrill => ({
      backupId: m.id,
      at: d.at,
      verified: d.verified,
      restoreMs: d.restoreMs,
      detail: d.detail ?? null,
    });
    const verified = [...m.drills, ...(m.drill ? [m.drill] : [])].filter((d) => d.verified);
    const newestVerified = verified.reduce<DrillRecord | undefined>(
      (a, d) => (!a || d.at > a.at ? d : a),
      undefined,
    );
    summary = {
      version,
      ok: true,
      problem: null,
      archiveKey: m.archive.key,
      startedAt: m.startedAt,
      finishedAt: m.finishedAt,
      durationMs: m.durationMs,
      bytes: m.archive.bytes,
      drill: m.drill ? asDrill(m.drill) : null,
      verifiedDrill: newestVerified ? asDrill(newestVerified) : null,
    };
  } catch (err) {
    const problem = errorMessage(err);
    deps.logger?.warn({ manifest: deps.storage.locate(key), problem }, 'unusable manifest');
    summary = {
      version,
      ok: false,
      problem,
      archiveKey: null,
      startedAt: iso(backup.startedAt),
      finishedAt: iso(backup.startedAt),
      durationMs: 0,
      bytes: 0,
      drill: null,
      verifiedDrill: null,
    };
  }
  cache.set(key, summary);
  return summary;
}

async function databaseStatus(
  deps: StatusDeps,
  name: string,
  target: DatabaseTarget | undefined,
  backups: readonly StoredBackup[],
  cache: ManifestCache,
  now: Date,
  missingFrom: string | null = null,
): Promise<DatabaseStatus> {
  const { storage } = deps;
  const problems: string[] = [];
  const committed = backups.filter((b) => b.manifestKey !== undefined);
  const [summaries, attemptRead, verifiedRead] = await Promise.all([
    mapLimit(committed, 16, (b) => summarize(deps, b, cache)),
    readAttemptMarker(storage, name),
    readVerifiedMarker(storage, name),
  ]);

  let lastSuccess: LastSuccess | null = null;
  let lastDrill: LastDrill | null = null;
  let lastVerifiedDrill: LastDrill | null = null;
  let invalid = 0;
  committed.forEach((b, i) => {
    const s = summaries[i]!;
    if (!s.ok) {
      invalid++;
      return;
    }
    // A manifest whose archive is gone is not a backup anyone can restore.
    if (s.archiveKey !== b.archiveKey) return;
    if (!lastSuccess || s.finishedAt > lastSuccess.finishedAt) {
      lastSuccess = {
        id: b.id,
        startedAt: s.startedAt,
        finishedAt: s.finishedAt,
        durationMs: s.durationMs,
        bytes: s.bytes,
        ageMs: now.getTime() - Date.parse(s.finishedAt),
      };
    }
    if (s.drill && (!lastDrill || s.drill.at > lastDrill.at)) lastDrill = s.drill;
    if (s.verifiedDrill && (!lastVerifiedDrill || s.verifiedDrill.at > lastVerifiedDrill.at)) {
      lastVerifiedDrill = s.verifiedDrill;
    }
  });
  if (invalid > 0) {
    problems.push(
      `${invalid} backup manifest(s) cannot be read or trusted (see \`pgshelf list --db ${name}\`)`,
    );
  }
  if (verifiedRead.state === 'invalid') problems.push(verifiedRead.problem);

  let lastAttempt: LastAttempt | null = null;
  if (attemptRead.state === 'ok') {
    lastAttempt = await attemptNow(deps, name, attemptRead.record, now);
  } else if (attemptRead.state === 'invalid') {
    problems.push(attemptRead.problem);
  }
  const success = lastSuccess as LastSuccess | null;
  // Backups made before attempt markers existed: the newest success is the last attempt known.
  lastAttempt ??= success
    ? { status: 'succeeded', id: success.id, at: success.finishedAt, error: null, job: null }
    : null;

  let overdue: Overdue | null = null;
  if (missingFrom !== null) {
    problems.push(`no longer exists on ${missingFrom}: its backups are kept, no new ones are made`);
  } else if (target) {
    const state = overdueState({
      schedule: target.schedule,
      timezone: target.timezone,
      graceMs: deps.config.overdueGraceMs,
      lastSuccess: success ? new Date(success.finishedAt) : undefined,
      now,
    });
    overdue = {
      overdue: state.overdue,
      dueSlot: state.dueSlot ? slot(state.dueSlot) : null,
      missedSlot: state.missedSlot ? slot(state.missedSlot) : null,
      nextSlot: slot(state.nextSlot),
    };
    if (state.overdue) {
      problems.push(
        `overdue: no successful backup since the ${state.missedSlot!.local.replace('T', ' ')} ` +
          `${target.timezone} slot` +
          (success ? `; the last one finished ${success.finishedAt}` : '; there is none'),
      );
    }
  }
  const attemptFailed = lastAttempt?.status === 'failed' || lastAttempt?.status === 'interrupted';
  if (lastAttempt?.status === 'failed')
    problems.push(`the latest backup attempt failed: ${lastAttempt.error ?? 'no reason recorded'}`);
  if (lastAttempt?.status === 'interrupted') problems.push(interruptedProblem(lastAttempt));
  const drill = lastDrill as LastDrill | null;
  if (drill && !drill.verified) {
    problems.push(
      `the latest restore drill (backup ${drill.backupId}) failed: ${drill.detail ?? 'no detail'}`,
    );
  }

  const stored = { count: 0, bytes: 0, orphans: 0 };
  for (const b of backups) {
    if (b.manifestKey === undefined) stored.orphans++;
    else {
      stored.count++;
      stored.bytes += b.archiveBytes ?? 0;
    }
  }
  return {
    name,
    configured: target !== undefined,
    schedule: target
      ? { schedule: target.schedule, timezone: target.timezone, drillSchedule: target.drillSchedule ?? null }
      : null,
    lastSuccess: success,
    lastAttempt,
    overdue,
    lastDrill: drill,
    lastVerifiedDrill,
    stored,
    problems,
    failing: (overdue?.overdue ?? false) || attemptFailed,
    missingFrom,
  };
}

const interruptedProblem = (a: LastAttempt): string =>
  `the latest backup attempt was interrupted: ${a.job ? `job ${a.job}` : 'it'} (backup ${a.id}, started ` +
  `${a.at}) stopped without recording an outcome (its worker was killed or its host went down); the job is run ` +
  'again when its attempts allow, else by the next slot or `pgshelf backup`';

/**
 * Whether a "running" attempt still runs. Its BullMQ job, when the marker names one of this prefix's: active with
 * its lock held (a dead worker's lock expires after PGSHELF_LOCK_DURATION). When Redis cannot tell (not asked, no
 * answer, run in-process): the marker's heartbeat, renewed every half lock duration, within HEARTBEAT_MISSES
 * beats. undefined when neither can tell (a marker from an older pgshelf): it is taken at its word.
 */
async function stillRunning(
  deps: StatusDeps,
  record: AttemptRecord,
  now: Date,
): Promise<boolean | undefined> {
  const queue = deps.queues?.get('backup');
  const head = runningJobId(deps.config.queuePrefix, 'backup', '');
  if (queue && record.job?.startsWith(head)) {
    const id = record.job.slice(head.length);
    const held = async (): Promise<boolean> => {
      if ((await queue.getJobState(id)) !== 'active') return false;
      const client = (await queue.client) as unknown as Redis;
      return (await client.exists(jobLockKey(queue, id))) === 1;
    };
    const answer = await within(held(), deps.redisTimeoutMs ?? 3000, 'Redis').catch(() => undefined);
    if (answer !== undefined) return answer;
  }
  return heartbeatFresh(record, now);
}

/** The last attempt as the marker records it, `interrupted` when it says running but no longer runs. */
async function attemptNow(
  deps: StatusDeps,
  name: string,
  record: AttemptRecord,
  now: Date,
): Promise<LastAttempt> {
  let r = record;
  if (r.status === 'running' && (await stillRunning(deps, r, now)) === false) {
    // The job may have ended between the marker's read and the check: its outcome is then written.
    const again = await readAttemptMarker(deps.storage, name);
    const ended = again.state === 'ok' && (again.record.id !== r.id || again.record.status !== 'running');
    if (ended) r = again.record;
    else return { status: 'interrupted', id: r.id, at: r.at, error: null, job: r.job ?? null };
  }
  return { status: r.status, id: r.id, at: r.at, error: r.error ?? null, job: r.job ?? null };
}

/** Job counts per queue and the workers seen on any of them (BullMQ's client list). */
export async function collectQueues(queues: ReadonlyMap<JobKind, Queue>): Promise<QueuesStatus> {
  try {
    const counts: Record<string, Record<JobState, number>> = {};
    const workers = new Map<string, { name: string; addr: string; queues: string[]; ageSeconds: number }>();
    for (const [kind, queue] of queues) {
      const [c, seen] = await Promise.all([queue.getJobCounts(...JOB_STATES), queue.getWorkers()]);
      counts[kind] = Object.fromEntries(JOB_STATES.map((s) => [s, c[s] ?? 0])) as Record<JobState, number>;
      for (const w of seen) {
        // BullMQ names a worker's connections `<prefix>:<queue>:w:<name>` (rawname); unnamed ones by address.
        const named = /:w:(.+)$/.exec(w['rawname'] ?? '');
        const addr = w['addr'] ?? '?';
        const name = named?.[1] ?? addr;
        const age = Number(w['age'] ?? 0);
        const entry = workers.get(name) ?? { name, addr, queues: [], ageSeconds: 0 };
        if (!entry.queues.includes(kind)) entry.queues.push(kind);
        entry.ageSeconds = Math.max(entry.ageSeconds, age);
        workers.set(name, entry);
      }
    }
    return { ok: true, counts, workers: [...workers.values()].sort((a, b) => (a.name < b.name ? -1 : 1)) };
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  }
}

/**
 * The whole report at `now`: one storage listing, the attempt and verified markers of each database, and only
 * the manifests not already in `deps.manifests`. Storage failures are thrown; a Redis failure is reported in
 * `queues` (backups can be judged from storage alone).
 */
export async function collectStatus(deps: StatusDeps, now: Date = new Date()): Promise<StatusReport> {
  const cache = deps.manifests ?? new Map<string, ManifestSummary>();
  const [backups, queues] = await Promise.all([
    scanBackups(deps.storage),
    deps.queues
      ? within(collectQueues(deps.queues), deps.redisTimeoutMs ?? 3000, 'Redis').catch(
          (err: unknown): QueuesStatus => ({ ok: false, error: errorMessage(err) }),
        )
      : Promise.resolve<QueuesStatus>({ ok: false, error: 'Redis was not consulted' }),
  ]);
  const byDatabase = new Map<string, StoredBackup[]>();
  for (const t of deps.config.databases) byDatabase.set(t.name, []);
  for (const b of backups) {
    const list = byDatabase.get(b.database);
    if (list) list.push(b);
    else byDatabase.set(b.database, [b]);
  }
  // Forget manifests that are gone (pruned), so the cache does not grow with history.
  const present = new Set(backups.map((b) => b.manifestKey));
  for (const key of cache.keys()) if (!present.has(key)) cache.delete(key);

  // Listed databases, and those a `servers:` entry discovers (and its globals): their schedules are known.
  const targets = new Map(deps.config.databases.map((t) => [t.name, t]));
  for (const name of byDatabase.keys()) {
    const t = targets.has(name) ? undefined : knownTarget(deps.config, name);
    if (t) targets.set(name, t);
  }
  const servers = await missingDatabases(deps.config, deps.storage, deps.logger ?? silent, byDatabase.keys());
  const missingFrom = new Map(servers.flatMap((s) => s.missing.map((d) => [d, s.server] as const)));
  const names = [...byDatabase.keys()].sort((a, b) => {
    const ca = targets.has(a) ? 0 : 1;
    const cb = targets.has(b) ? 0 : 1;
    return ca - cb || (a < b ? -1 : a > b ? 1 : 0);
  });
  const databases = await mapLimit(names, 4, (name) =>
    databaseStatus(
      deps,
      name,
      targets.get(name),
      byDatabase.get(name)!,
      cache,
      now,
      missingFrom.get(name) ?? null,
    ),
  );
  return { generatedAt: iso(now), storage: maskUrl(deps.storage.url), databases, queues, servers };
}
