import { resolveTarget } from '../config/index.js';
import { findBackup } from '../catalog/backups.js';
import { manifestTrust } from '../catalog/manifest.js';
import type { JobContext, JobDeps } from './context.js';
import { ArchiveCheck } from '../archive/check.js';
import { decryptionFor } from '../archive/age.js';
import { withJobRun } from '../archive/run.js';

export interface VerifyInput {
  readonly database?: string;
  /** 'latest' (default) or a backup id. */
  readonly backup?: string;
}

export interface VerifyResult {
  readonly backupId: string;
  readonly database: string;
  readonly archive: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly uncompressedBytes: number;
  readonly durationMs: number;
}

/**
 * Re-reads an archive from storage and checks it against its manifest: size and SHA-256 of the stored bytes,
 * that it gunzips to the end, the size of the SQL inside, and pg_dump's completion line. No PostgreSQL needed.
 * Steps: find the backup -> read and check the whole archive.
 */
export function createVerifyJob(deps: JobDeps) {
  return async function verify(input: VerifyInput, ctx: JobContext): Promise<VerifyResult> {
    const { storage } = deps;
    const database = input.database ?? resolveTarget(deps.config).name;
    const { backup, manifest } = await findBackup(
      storage,
      database,
      input.backup ?? 'latest',
      manifestTrust(deps.config),
    );
    const t0 = Date.now();
    const archive = { key: manifest.archive.key, manifest };
    const age = await decryptionFor(deps.config.age, storage, archive, ctx.logger, ctx.signal);
    const check = new ArchiveCheck(storage, manifest.archive.key, manifest, age);
    const meter = {
      phase: 'verify',
      totalBytes: manifest.archive.bytes,
      bytesIn: () => check.digest.bytes,
      bytesOut: () => check.sql.bytes,
    };
    const read = await withJobRun(ctx, meter, (run) => check.run(run.signal));
    return {
      backupId: backup.id,
      database,
      archive: check.where,
      ...read,
      durationMs: Date.now() - t0,
    };
  };
}
