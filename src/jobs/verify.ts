import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { resolveTarget } from '../config/index.js';
import { CorruptArchiveError, errorMessage } from '../errors.js';
import { findBackup } from '../catalog/backups.js';
import { archiveMismatch, manifestTrust } from '../catalog/manifest.js';
import { throttle, type JobContext, type JobDeps } from './context.js';
import { asCorruptArchive } from '../archive/restore-check.js';
import { DUMP_COMPLETE, EndGate } from '../archive/gates.js';
import { DigestStream } from '../archive/digest.js';

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
    const key = manifest.archive.key;
    const where = storage.locate(key);
    const label = `backup ${backup.id} of "${database}"`;
    const t0 = Date.now();
    const digest = new DigestStream({ highWaterMark: 1 << 20 });
    // Checked when the stored bytes end, before gunzip sees the end: a short file is "truncated", not a gzip error.
    const stored = new EndGate(() => archiveMismatch(manifest, where, digest));
    const sql = new EndGate(() => undefined);
    const report = throttle(ctx.progress);
    const ticker = setInterval(() => {
      const elapsedMs = Date.now() - t0;
      report({
        phase: 'verify',
        bytesIn: digest.bytes,
        bytesOut: sql.bytes,
        totalBytes: manifest.archive.bytes,
        elapsedMs,
        rate: elapsedMs > 0 ? (digest.bytes * 1000) / elapsedMs : 0,
      });
    }, 1000);
    try {
      await pipeline(
        await storage.openRead(key, { signal: ctx.signal }),
        digest,
        stored,
        createGunzip({ chunkSize: 128 * 1024 }),
        sql,
        new Writable({ write: (_chunk, _enc, cb) => cb() }),
        { signal: ctx.signal },
      );
    } catch (err) {
      const corrupt = asCorruptArchive(err);
      if (!corrupt) throw err;
      throw new CorruptArchiveError(`${label}: ${where} cannot be decompressed (${errorMessage(err)})`, {
        cause: err,
      });
    } finally {
      clearInterval(ticker);
    }
    const mismatch = archiveMismatch(manifest, where, digest);
    if (mismatch) throw mismatch;
    if (sql.bytes !== manifest.uncompressedBytes) {
      throw new CorruptArchiveError(
        `${label}: ${where} gunzips to ${sql.bytes} bytes of SQL, but the manifest recorded ${manifest.uncompressedBytes}`,
      );
    }
    if (!sql.tail.complete) {
      throw new CorruptArchiveError(`${label}: ${where} ends without "${DUMP_COMPLETE}"`);
    }
    return {
      backupId: backup.id,
      database,
      archive: where,
      bytes: digest.bytes,
      sha256: digest.sha256,
      uncompressedBytes: sql.bytes,
      durationMs: Date.now() - t0,
    };
  };
}
