import { mapLimit } from '../concurrency.js';
import { resolveTarget } from '../config/index.js';
import { StorageError, errorMessage } from '../errors.js';
import { scanBackups, type StoredBackup } from '../catalog/backups.js';
import { manifestTrust, readManifest } from '../catalog/manifest.js';
import { readAttemptMarker, readVerifiedMarker } from '../catalog/markers.js';
import { databasePrefix } from '../catalog/layout.js';
import type { IncompleteUpload, RequestCounts, Storage } from '../storage/index.js';
import type { JobContext, JobDeps } from './context.js';
import { defineJob } from './definition.js';
import { selectRetention, type RetentionCandidate } from '../catalog/retention.js';

/** Clocks differ a little between hosts; a date further ahead than this is not believed. */
export const FUTURE_SKEW_MS = 5 * 60_000;
/** Manifests read at once: each is a GET, and a prune of thousands of backups must not open thousands at once. */
const MANIFEST_READS = 16;

export interface PruneInput {
  readonly database?: string;
  /** Decide and report, delete nothing. */
  readonly dryRun?: boolean;
  /** The `servers:` entry (`host:port`) that discovered the database: its retention applies. */
  readonly server?: string;
}

/** Something prune found and left alone, neither kept as a backup nor deleted. */
export interface IgnoredObject {
  readonly id: string;
  readonly key: string;
  readonly reason: string;
}

export interface PruneResult {
  readonly database: string;
  readonly dryRun: boolean;
  /** Backup ids kept and deleted (orphans included in `delete`), newest first. */
  readonly keep: string[];
  readonly delete: string[];
  readonly reasons: Record<string, string[]>;
  /** Objects not counted as backups and not deleted: future dates, unreadable or untrusted manifests. */
  readonly ignored: IgnoredObject[];
  /** Archives without a manifest (left by failed or killed backups) removed because older than the grace period. */
  readonly orphans: string[];
  /** Unfinished multipart uploads or temp files removed. */
  readonly incompleteUploads: string[];
  /** Why nothing was deleted, when that was a safety rule's decision. */
  readonly blocked: string | null;
  readonly requests: RequestCounts;
}

/**
 * Applies the retention policy to one database's backups. Ages come from the manifests (their startedAt), not
 * from key names anyone with write access could choose; anything dated in the future, or whose manifest cannot
 * be read or trusted, is ignored and reported. Manifests are deleted before their archives (a backup without
 * its manifest is an orphan, never a half-deleted backup that looks whole), in requests of at most 1,000 keys.
 * Orphaned archives and incomplete uploads older than PGSHELF_ORPHAN_GRACE are removed too.
 */
export function createPruneJob(deps: JobDeps) {
  const now = deps.now ?? (() => new Date());
  return async function prune(input: PruneInput, ctx: JobContext): Promise<PruneResult> {
    const { config, storage } = deps;
    const target = resolveTarget(config, input.database, input.server);
    const before = { ...storage.requests };
    const at = now();
    const graceCutoff = at.getTime() - config.orphanGraceMs;

    // 1. Scan: the backups in storage, the attempt and verified markers.
    const [backups, attempt, verified] = await Promise.all([
      scanBackups(storage, target.name),
      readAttemptMarker(storage, target.name),
      readVerifiedMarker(storage, target.name),
    ]);
    // 2. Count: the backups whose manifests are readable, trusted and dated; the rest is ignored.
    const { present, complete, ignored } = await countBackups(deps, backups, at);

    // 3. Decide what retention keeps, and what it may delete.
    const holds: string[] = [];
    if (attempt.state === 'invalid') {
      holds.push(
        `${attempt.problem}: prune cannot tell whether the latest backup failed, so it deletes nothing ` +
          '(the next backup rewrites this marker)',
      );
    }
    if (verified.state === 'invalid') {
      ctx.logger.warn({ problem: verified.problem }, 'ignoring an unusable marker');
    }
    const latestAttemptFailed =
      attempt.state === 'ok' && attempt.record.status === 'failed'
        ? { at: attempt.record.at, error: attempt.record.error ?? 'unknown error' }
        : undefined;
    const candidates: RetentionCandidate[] = complete.map((r) => ({
      id: r.backup.id,
      startedAt: r.startedAt,
    }));
    const selection = selectRetention(candidates, target.retention, {
      timezone: target.timezone,
      ...(verified.state === 'ok' ? { newestVerified: verified.record.id } : {}),
      ...(latestAttemptFailed ? { latestAttemptFailed } : {}),
      ...(holds[0] !== undefined ? { hold: holds[0] } : {}),
    });
    // "Unknown" deletes nothing at all; a known failure still lets orphans of the failed attempts go.
    const held = holds.length > 0;

    // Orphans: an archive with no manifest, older than the grace period (a backup may be writing it right now).
    const orphans = held
      ? []
      : present.filter(
          (b) =>
            b.manifestKey === undefined &&
            b.archiveKey !== undefined &&
            (b.archiveModified ?? b.startedAt).getTime() < graceCutoff,
        );
    const reasons = { ...selection.reasons };
    for (const o of orphans)
      reasons[o.id] = ['orphan: archive without a manifest, older than the grace period'];
    // Listed even when held, so what prune requested does not depend on the markers.
    const incomplete = await staleUploads(storage, target.name, held ? -Infinity : graceCutoff, ctx);

    // 4. Delete: manifests first, then archives, then unfinished uploads.
    const doomed = new Set(selection.delete);
    const deleting = complete.map((r) => r.backup).filter((b) => doomed.has(b.id));
    if (!input.dryRun) await deleteAll(storage, deleting, orphans, incomplete);

    // 5. Report.
    const requests = Object.fromEntries(
      Object.entries(storage.requests).map(([k, v]) => [k, v - before[k as keyof RequestCounts]]),
    ) as unknown as RequestCounts;
    const result: PruneResult = {
      database: target.name,
      dryRun: input.dryRun === true,
      keep: selection.keep,
      delete: [...selection.delete, ...orphans.map((o) => o.id)],
      reasons,
      ignored,
      orphans: orphans.flatMap((o) => (o.archiveKey ? [o.archiveKey] : [])),
      incompleteUploads: incomplete.map((u) => u.key),
      blocked: latestAttemptFailed
        ? `the latest backup attempt failed at ${latestAttemptFailed.at} (${latestAttemptFailed.error}): nothing was deleted`
        : (holds[0] ?? null),
      requests,
    };
    logResult(ctx, result);
    return result;
  };
}

/**
 * The backups whose names and manifests are dated no later than now (plus a little skew), whose manifests can be
 * read and trusted and point at their archive, and whose ids no other backup shares. The rest is `ignored`.
 */
async function countBackups(
  { config, storage }: JobDeps,
  backups: readonly StoredBackup[],
  at: Date,
): Promise<{
  present: StoredBackup[];
  complete: { backup: StoredBackup; startedAt: Date }[];
  ignored: IgnoredObject[];
}> {
  const futureCutoff = at.getTime() + FUTURE_SKEW_MS;
  const ignored: IgnoredObject[] = [];
  const ignore = (b: StoredBackup, reason: string): void => {
    ignored.push({ id: b.id, key: storage.locate((b.manifestKey ?? b.archiveKey)!), reason });
  };
  const future = (d: Date): string => `dated ${d.toISOString()}, in the future (now ${at.toISOString()})`;

  const present = backups.filter((b) => {
    if (b.startedAt.getTime() <= futureCutoff) return true;
    ignore(b, `its name is ${future(b.startedAt)}`);
    return false;
  });
  const trust = manifestTrust(config);
  const read = await mapLimit(
    present.filter((b) => b.manifestKey !== undefined),
    MANIFEST_READS,
    async (b) => {
      try {
        const manifest = await readManifest(storage, b.manifestKey!, trust);
        const startedAt = new Date(manifest.startedAt);
        if (startedAt.getTime() > futureCutoff) return ignore(b, `its manifest is ${future(startedAt)}`);
        if (b.archiveKey !== manifest.archive.key) return ignore(b, 'its archive is missing');
        return { backup: b, startedAt };
      } catch (err) {
        if (err instanceof StorageError) throw err;
        return ignore(b, errorMessage(err));
      }
    },
  );
  const counted = read.filter((r) => r !== undefined);
  // Ids name what is deleted: two backups sharing one must not take each other down.
  const seen = new Map<string, number>();
  for (const r of counted) seen.set(r.backup.id, (seen.get(r.backup.id) ?? 0) + 1);
  const complete = counted.filter((r) => {
    if (seen.get(r.backup.id) === 1) return true;
    ignore(r.backup, `its id ${r.backup.id} is shared by another backup`);
    return false;
  });
  return { present, complete, ignored };
}

/** Unfinished multipart uploads (or temp files) of this database started before `cutoff` (ms). */
async function staleUploads(
  storage: Storage,
  database: string,
  cutoff: number,
  ctx: JobContext,
): Promise<IncompleteUpload[]> {
  const incomplete: IncompleteUpload[] = [];
  try {
    for await (const u of storage.listIncomplete(databasePrefix(database))) {
      if (u.initiated.getTime() < cutoff) incomplete.push(u);
    }
  } catch (err) {
    // Some S3-compatible servers cannot list multipart uploads; say so and go on.
    ctx.logger.warn({ err: errorMessage(err) }, 'cannot list incomplete uploads on this storage');
    return [];
  }
  return incomplete;
}

/**
 * Manifests are deleted before their archives: a backup without its manifest is an orphan, never a half-deleted
 * backup that looks whole.
 */
async function deleteAll(
  storage: Storage,
  deleting: readonly StoredBackup[],
  orphans: readonly StoredBackup[],
  incomplete: readonly IncompleteUpload[],
): Promise<void> {
  const manifests = deleting.map((b) => b.manifestKey!);
  const archives = [...deleting, ...orphans].flatMap((b) => (b.archiveKey ? [b.archiveKey] : []));
  if (manifests.length > 0) await storage.deleteMany(manifests);
  if (archives.length > 0) await storage.deleteMany(archives);
  for (const u of incomplete) {
    await storage.abortIncomplete(u).catch((err: unknown) => {
      throw new StorageError(`cannot abort the incomplete upload of ${u.key}: ${errorMessage(err)}`);
    });
  }
}

function logResult(ctx: JobContext, result: PruneResult): void {
  const { database, ignored } = result;
  // The first few one by one, then a count: thousands of planted files must not flood the log.
  for (const i of ignored.slice(0, 20)) ctx.logger.warn({ database, ...i }, 'prune ignored an object');
  if (ignored.length > 20) {
    ctx.logger.warn({ database, more: ignored.length - 20 }, 'prune ignored more objects');
  }
  ctx.logger.info(
    {
      database,
      dryRun: result.dryRun,
      keep: result.keep.length,
      delete: result.delete.length,
      ignored: result.ignored.length,
      incomplete: result.incompleteUploads.length,
      blocked: result.blocked,
    },
    'prune finished',
  );
}

/** The database guard only (no dump, no server place): never deletes beside a running backup. Tried once. */
export const pruneJob = defineJob({
  kind: 'prune',
  create: createPruneJob,
  excludes: { database: { waiting: 'a backup or prune of this database is running: prune waiting' } },
  attempts: 1,
});
