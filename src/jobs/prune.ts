import { resolveTarget } from '../config.js';
import { StorageError, errorMessage } from '../errors.js';
import { scanBackups } from '../manifest.js';
import { readAttempt, readVerified } from '../markers.js';
import { databasePrefix } from '../storage/layout.js';
import type { IncompleteUpload, RequestCounts } from '../storage/index.js';
import type { JobContext, JobDeps } from './context.js';
import { selectRetention } from './retention.js';

export interface PruneInput {
  readonly database?: string;
  /** Decide and report, delete nothing. */
  readonly dryRun?: boolean;
}

export interface PruneResult {
  readonly database: string;
  readonly dryRun: boolean;
  /** Backup ids kept and deleted (orphans included in `delete`), newest first. */
  readonly keep: string[];
  readonly delete: string[];
  readonly reasons: Record<string, string[]>;
  /** Archives without a manifest (left by failed or killed backups) removed because older than the grace period. */
  readonly orphans: string[];
  /** Unfinished multipart uploads or temp files removed. */
  readonly incompleteUploads: string[];
  /** Why nothing was deleted, when that was a safety rule's decision. */
  readonly blocked: string | null;
  readonly requests: RequestCounts;
}

/**
 * Applies the retention policy to one database's backups. Manifests are deleted before their archives (a
 * backup without its manifest is an orphan, never a half-deleted backup that looks whole), in requests of at
 * most 1,000 keys. Orphaned archives and incomplete uploads older than PGSHELF_ORPHAN_GRACE are removed too.
 */
export function createPruneJob(deps: JobDeps) {
  const now = deps.now ?? (() => new Date());
  return async function prune(input: PruneInput, ctx: JobContext): Promise<PruneResult> {
    const { config, storage } = deps;
    const target = resolveTarget(config, input.database);
    const before = { ...storage.requests };
    const at = now();
    const graceCutoff = at.getTime() - config.orphanGraceMs;

    const [backups, attempt, verified] = await Promise.all([
      scanBackups(storage, target.name),
      readAttempt(storage, target.name),
      readVerified(storage, target.name),
    ]);
    const complete = backups.filter((b) => b.manifestKey !== undefined);
    const latestAttemptFailed =
      attempt?.status === 'failed' ? { at: attempt.at, error: attempt.error ?? 'unknown error' } : undefined;
    const selection = selectRetention(complete, target.retention, {
      timezone: target.timezone,
      ...(verified ? { newestVerified: verified.id } : {}),
      ...(latestAttemptFailed ? { latestAttemptFailed } : {}),
    });

    // Orphans: an archive with no manifest, older than the grace period (a backup may be writing it right now).
    const orphans = backups.filter(
      (b) =>
        b.manifestKey === undefined &&
        b.archiveKey !== undefined &&
        (b.archiveModified ?? b.startedAt).getTime() < graceCutoff,
    );
    const reasons = { ...selection.reasons };
    for (const o of orphans)
      reasons[o.id] = ['orphan: archive without a manifest, older than the grace period'];

    let incomplete: IncompleteUpload[] = [];
    try {
      for await (const u of storage.listIncomplete(databasePrefix(target.name))) {
        if (u.initiated.getTime() < graceCutoff) incomplete.push(u);
      }
    } catch (err) {
      // Some S3-compatible servers cannot list multipart uploads; say so and go on.
      ctx.logger.warn({ err: errorMessage(err) }, 'cannot list incomplete uploads on this storage');
      incomplete = [];
    }

    const doomed = new Set(selection.delete);
    const deleting = complete.filter((b) => doomed.has(b.id));
    if (!input.dryRun) {
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
    const requests = Object.fromEntries(
      Object.entries(storage.requests).map(([k, v]) => [k, v - before[k as keyof RequestCounts]]),
    ) as unknown as RequestCounts;
    const result: PruneResult = {
      database: target.name,
      dryRun: input.dryRun === true,
      keep: selection.keep,
      delete: [...selection.delete, ...orphans.map((o) => o.id)],
      reasons,
      orphans: orphans.flatMap((o) => (o.archiveKey ? [o.archiveKey] : [])),
      incompleteUploads: incomplete.map((u) => u.key),
      blocked: latestAttemptFailed
        ? `the latest backup attempt failed at ${latestAttemptFailed.at} (${latestAttemptFailed.error}): nothing was deleted`
        : null,
      requests,
    };
    ctx.logger.info(
      {
        database: target.name,
        dryRun: result.dryRun,
        keep: result.keep.length,
        delete: result.delete.length,
        incomplete: result.incompleteUploads.length,
        blocked: result.blocked,
      },
      'prune finished',
    );
    return result;
  };
}
