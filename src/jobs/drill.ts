import { randomBytes } from 'node:crypto';
import { resolveTarget } from '../config/index.js';
import { ConfigError, DecryptionError, DrillFailedError, errorMessage } from '../errors.js';
import { findBackup } from '../catalog/backups.js';
import { manifestTrust, readManifest, writeManifest, type DrillRecord } from '../catalog/manifest.js';
import { writeVerified } from '../catalog/markers.js';
import { dropDatabase, withAdminDb } from '../postgres/admin.js';
import { withDb } from '../postgres/connection.js';
import { countRows } from '../postgres/row-counts.js';
import type { JobContext, JobDeps } from './context.js';
import { defineJob } from './definition.js';

export interface DrillInput {
  readonly database?: string;
  /** 'latest' (default) or a backup id. */
  readonly backup?: string;
  /** The `servers:` entry (`host:port`) that discovered the database. */
  readonly server?: string;
}

export interface TableMismatch {
  readonly table: string;
  readonly expected: number;
  readonly restored: number | null;
}

export interface DrillResult {
  readonly database: string;
  readonly backupId: string;
  readonly verified: boolean;
  readonly restoreMs: number;
  readonly tables: number;
  readonly rows: number;
  readonly mismatches: readonly TableMismatch[];
  readonly scratchDatabase: string;
}

/** The restore job, given by the registry (jobs/registry.ts): a job never imports another job. */
export type RestoreFn = (
  input: {
    readonly database?: string;
    readonly backup?: string;
    readonly into: string;
    readonly verifyFirst?: boolean;
  },
  ctx: JobContext,
) => Promise<{ readonly durationMs: number }>;

export interface DrillDeps extends JobDeps {
  readonly restore: RestoreFn;
}

/**
 * Restores a backup (the latest by default) into a scratch database, counts every table's rows and compares
 * them with the counts the backup recorded, records the outcome and the restore time in the manifest, and drops
 * the scratch database, whatever happened.
 */
export function createDrillJob(deps: DrillDeps) {
  const now = deps.now ?? (() => new Date());
  const { restore } = deps;
  return async function drill(input: DrillInput, ctx: JobContext): Promise<DrillResult> {
    const { config, storage } = deps;
    const target = resolveTarget(config, input.database, input.server);
    const trust = manifestTrust(config);
    const { backup } = await findBackup(storage, target.name, input.backup ?? 'latest', trust);
    const scratch = `pgshelf_drill_${randomBytes(6).toString('hex')}`;
    const q = { echo: config.dbEcho, logger: ctx.logger };
    ctx.logger.info({ database: target.name, backup: backup.id, scratch }, 'restore drill started');
    let restoreMs = 0;
    let mismatches: TableMismatch[] = [];
    let rows = 0;
    let detail: string | undefined;
    let expected: Record<string, number> = {};
    try {
      // 1. Restore. A drill runs with nobody watching: the archive is checked whole before any of it reaches psql.
      const restored = await restore(
        { database: target.name, backup: backup.id, into: scratch, verifyFirst: true },
        ctx,
      );
      restoreMs = restored.durationMs;
      // 2. Count every table's rows and compare them with the backup's counts.
      expected = (await readManifest(storage, backup.manifestKey!, trust)).tables;
      const counts = await withDb(target.postgres, { ...q, database: scratch }, (db) =>
        countRows(db, Object.keys(expected)),
      );
      ({ mismatches, rows } = compareCounts(expected, counts));
      if (mismatches.length > 0) {
        detail = mismatches
          .slice(0, 10)
          .map((m) => `${m.table}: ${m.restored ?? 'missing'} rows, expected ${m.expected}`)
          .join('; ');
      }
    } catch (err) {
      // This host cannot decrypt the backup (no or another age key): nothing about the backup was learnt.
      if (err instanceof ConfigError || err instanceof DecryptionError) throw err;
      detail = `restore failed: ${errorMessage(err)}`;
    } finally {
      // 3. Drop the scratch database, whatever happened.
      await withAdminDb(target.postgres, q, (db) => dropDatabase(db, scratch)).catch((err: unknown) =>
        ctx.logger.error(
          { err: errorMessage(err), scratch },
          'could not drop the drill database; drop it by hand',
        ),
      );
    }

    // 4. Record the outcome in the manifest (and the verified marker).
    const verified = detail === undefined;
    const record: DrillRecord = {
      verified,
      at: now().toISOString(),
      restoreMs,
      scratchDatabase: scratch,
      ...(detail ? { detail } : {}),
    };
    // Re-read just before writing: keep whatever else changed the manifest meanwhile.
    const manifest = await readManifest(storage, backup.manifestKey!, trust);
    await writeManifest(
      storage,
      backup.manifestKey!,
      { ...manifest, drill: record, drills: [...manifest.drills, record] },
      trust,
    );
    ctx.logger.info(
      { database: target.name, backup: backup.id, verified, restoreMs },
      'restore drill finished',
    );
    if (verified) await writeVerified(storage, target.name, { id: backup.id, at: record.at });
    if (!verified) {
      throw new DrillFailedError(
        `restore drill of backup ${backup.id} of "${target.name}" failed: ${detail}`,
      );
    }
    return {
      database: target.name,
      backupId: backup.id,
      verified,
      restoreMs,
      tables: Object.keys(expected).length,
      rows,
      mismatches,
      scratchDatabase: scratch,
    };
  };
}

/** Tables whose restored count differs from the recorded one (null: missing), and the rows counted in all. */
function compareCounts(
  expected: Record<string, number>,
  counts: Map<string, number | null>,
): { mismatches: TableMismatch[]; rows: number } {
  const mismatches: TableMismatch[] = [];
  let rows = 0;
  for (const [table, count] of Object.entries(expected)) {
    const n = counts.get(table) ?? null;
    if (n !== null) rows += n;
    if (n !== count) mismatches.push({ table, expected: count, restored: n });
  }
  return { mismatches, rows };
}

/** Built by the registry, which gives it the restore job (DrillDeps.restore). */
export const drillJob = defineJob({ kind: 'drill', create: createDrillJob });
