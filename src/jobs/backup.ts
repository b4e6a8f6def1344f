import { statfs } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { resolveTarget } from '../config/index.js';
import { AbortedError, DumpFailedError, PgshelfError, StorageError, errorMessage } from '../errors.js';
import { garbageNudger } from '../archive/memory.js';
import { writeAttempt } from '../catalog/markers.js';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  manifestTrust,
  writeManifest,
  type Manifest,
} from '../catalog/manifest.js';
import { describeExit, spawnChild, type Child } from '../postgres/child.js';
import { childEnv, connectionArgs } from '../postgres/connection.js';
import { conninfoDbname } from '../postgres/psql.js';
import { inspectDatabase } from '../postgres/server.js';
import { findTool, restrictSince } from '../postgres/tools.js';
import type { ObjectWriter, Storage } from '../storage/index.js';
import { backupKeys, newBackupId } from '../catalog/layout.js';
import { throttle, type JobContext, type JobDeps } from './context.js';
import { defineJob } from './definition.js';
import { createGzipStream } from '../archive/gzip.js';
import { DUMP_COMPLETE, Tail } from '../archive/gates.js';
import { CopyRowCounter } from '../archive/copy-rows.js';
import { DigestStream } from '../archive/digest.js';

export interface BackupInput {
  /** Database to back up; default: POSTGRES_DB. */
  readonly database?: string;
  /** Dump without ownership and privileges (restorable under any owner). */
  readonly noOwner?: boolean;
}

export interface BackupResult {
  readonly id: string;
  readonly database: string;
  readonly archiveKey: string;
  readonly manifestKey: string;
  readonly archiveLocation: string;
  readonly manifestLocation: string;
  readonly bytes: number;
  readonly uncompressedBytes: number;
  readonly sha256: string;
  readonly durationMs: number;
  readonly tables: number;
  readonly rows: number;
}

/**
 * pg_dump's stdout on its way to gzip: counts bytes and COPY rows, and holds back the end of the stream until
 * pg_dump has exited. Only a dump that exited 0, is non-empty and ends with pg_dump's completion marker lets the
 * stream end; anything else errors it, so the upload is aborted instead of committed.
 */
class DumpGate extends Transform {
  bytes = 0;
  readonly rows = new CopyRowCounter();
  private readonly tail = new Tail();

  constructor(private readonly child: Child) {
    super({ highWaterMark: 1 << 20 });
  }

  private readonly nudge = garbageNudger();

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.nudge(chunk.length);
    this.rows.push(chunk);
    this.tail.push(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.child.exited.then((status) => {
      if (status.code !== 0) {
        const stderr = this.child.stderr.text(15);
        callback(new DumpFailedError(`pg_dump ${describeExit(status)}${stderr ? `:\n${stderr}` : ''}`));
      } else if (this.bytes === 0) {
        callback(new DumpFailedError('pg_dump exited 0 but wrote nothing'));
      } else if (!this.tail.complete) {
        callback(
          new DumpFailedError(`pg_dump's output ended without "${DUMP_COMPLETE}": the dump is incomplete`),
        );
      } else {
        callback();
      }
    }, callback);
  }
}

export function createBackupJob(deps: JobDeps) {
  const now = deps.now ?? (() => new Date());
  return async function backup(input: BackupInput, ctx: JobContext): Promise<BackupResult> {
    const { config, storage } = deps;
    const log = ctx.logger;
    const target = resolveTarget(config, input.database);
    const pg = target.postgres;
    const echo = { echo: config.dbEcho, logger: log };
    if (ctx.signal.aborted) throw new AbortedError();

    // Every attempt is recorded, including one that cannot reach the server: prune deletes nothing after a failure.
    const startedAt = now();
    const id = newBackupId();
    await writeAttempt(storage, target.name, { status: 'running', id, at: startedAt.toISOString() }, log);
    try {
      const result = await dump();
      await writeAttempt(storage, target.name, { status: 'succeeded', id, at: now().toISOString() }, log);
      return result;
    } catch (err) {
      const error = errorMessage(err).split('\n').slice(0, 3).join(' ');
      await writeAttempt(storage, target.name, { status: 'failed', id, at: now().toISOString(), error }, log);
      throw err;
    }

    async function dump(): Promise<BackupResult> {
      const server = await inspectDatabase(pg, echo);
      const pgDump = await findTool('pg_dump', server.major, {
        binDir: config.pgBinDir,
        env: config.childEnv,
      });
      if (!pgDump.restrict) {
        log.warn(
          { pgDump: pgDump.version, path: pgDump.path },
          `pg_dump ${pgDump.version} predates the CVE-2025-8714 fix (${restrictSince(pgDump.major) ?? '18'}): ` +
            'install a newer one; it is used because nothing newer is installed',
        );
      }
      const keys = backupKeys(target.name, startedAt, id);
      log.info(
        { database: target.name, id, key: keys.archive, server: server.version, pgDump: pgDump.version },
        'backup started',
      );
      const args = [...connectionArgs(pg), '--no-password', '--format=plain'];
      if (input.noOwner) args.push('--no-owner', '--no-privileges');
      args.push(`--dbname=${conninfoDbname(pg.database)}`);

      // Before pg_dump starts, so a storage that cannot be written to fails the job with nothing to clean up.
      let writer: ObjectWriter;
      try {
        writer = storage.createWriter(keys.archive, {
          sizeHint: server.databaseSize,
          contentType: 'application/gzip',
        });
      } catch (err) {
        throw storageFailure(err, storage);
      }
      const abort = new AbortController();
      const onAbort = (): void => abort.abort(ctx.signal.reason);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      const child = spawnChild(pgDump.path, args, {
        env: childEnv(config.childEnv, pg),
        logger: log,
        echo: config.dbEcho,
        signal: abort.signal,
      });
      const gate = new DumpGate(child);
      const digest = new DigestStream({ highWaterMark: 1 << 20 });
      const t0 = Date.now();
      const report = throttle(ctx.progress);
      const progress = (force = false): void => {
        const elapsedMs = Date.now() - t0;
        report(
          {
            phase: 'dump',
            bytesIn: gate.bytes,
            bytesOut: digest.bytes,
            elapsedMs,
            rate: elapsedMs > 0 ? (gate.bytes * 1000) / elapsedMs : 0,
          },
          force,
        );
      };
      const ticker = setInterval(progress, 1000);

      try {
        if (!child.process.stdout) throw new DumpFailedError('pg_dump has no stdout');
        await pipeline(
          child.process.stdout,
          gate,
          createGzipStream(config.gzipLevel, config.gzipThreads),
          digest,
          writer.stream,
          { signal: abort.signal },
        );
        progress(true);
        await writer.commit();
      } catch (err) {
        abort.abort(err);
        child.kill();
        // Measured before abort() removes the partial file, so it says how full the disk was when writing failed.
        const space = await freeSpace(err, storage);
        await writer.abort();
        await child.exited;
        throw explainBackupFailure(err, child, writer, ctx.signal, storage, space);
      } finally {
        clearInterval(ticker);
        ctx.signal.removeEventListener('abort', onAbort);
      }

      const finishedAt = now();
      const tables = gate.rows.toJSON();
      const manifest: Manifest = {
        format: MANIFEST_FORMAT,
        formatVersion: MANIFEST_VERSION,
        id,
        database: target.name,
        host: pg.host,
        port: pg.port,
        serverVersion: server.version,
        serverVersionNum: server.versionNum,
        pgDumpVersion: pgDump.version,
        pgDumpPath: pgDump.path,
        dumpOptions: { noOwner: input.noOwner === true, noPrivileges: input.noOwner === true },
        compression: { format: 'gzip', level: config.gzipLevel, threads: config.gzipThreads },
        encryption: null,
        archive: { key: keys.archive, bytes: digest.bytes, sha256: digest.sha256 },
        uncompressedBytes: gate.bytes,
        databaseSize: server.databaseSize,
        startedAt: startedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        durationMs: finishedAt.getTime() - startedAt.getTime(),
        tables,
        drill: null,
        drills: [],
      };
      try {
        // The manifest is the commit mark: written last, and only for a complete archive.
        await writeManifest(storage, keys.manifest, manifest, manifestTrust(config));
      } catch (err) {
        await storage.deleteMany([keys.manifest, keys.archive]).catch(() => undefined);
        throw err;
      }
      const rows = Object.values(tables).reduce((a, b) => a + b, 0);
      log.info(
        {
          database: target.name,
          id,
          bytes: digest.bytes,
          uncompressed: gate.bytes,
          ms: manifest.durationMs,
          rows,
        },
        'backup finished',
      );
      return {
        id,
        database: target.name,
        archiveKey: keys.archive,
        manifestKey: keys.manifest,
        archiveLocation: storage.locate(keys.archive),
        manifestLocation: storage.locate(keys.manifest),
        bytes: digest.bytes,
        uncompressedBytes: gate.bytes,
        sha256: digest.sha256,
        durationMs: manifest.durationMs,
        tables: Object.keys(tables).length,
        rows,
      };
    }
  };
}

/** The most useful error for a failed pipeline: pg_dump's own stderr beats a downstream "premature close". */
function explainBackupFailure(
  err: unknown,
  child: Child,
  writer: ObjectWriter,
  signal: AbortSignal,
  storage: Storage,
  space = '',
): Error {
  if (signal.aborted) {
    return new AbortedError(
      `backup aborted: ${String((signal.reason as Error | undefined)?.message ?? signal.reason)}`,
    );
  }
  if (err instanceof PgshelfError) return err;
  // A failed write (disk full, S3 unreachable) made us kill pg_dump: its "terminated by user" is not the cause.
  const writeFailure = writer.failure?.();
  if (writeFailure) return writeFailure;
  if ((err as NodeJS.ErrnoException).syscall) return storageFailure(err, storage, space);
  const stderr = child.stderr.text(15);
  if (stderr) return new DumpFailedError(`pg_dump failed:\n${stderr}`, { cause: err });
  if ((err as NodeJS.ErrnoException).code) return storageFailure(err, storage);
  return err instanceof Error ? err : new Error(String(err));
}

/** A file-system error while writing the archive, named with the storage it happened in. */
function storageFailure(err: unknown, storage: Storage, space = ''): Error {
  if (err instanceof PgshelfError) return err;
  return new StorageError(
    `cannot write the archive to ${storage.url}: ${errorMessage(err)}${space}. ` +
      'Check PGSHELF_STORAGE and free space',
    { cause: err },
  );
}

const MiB = 1024 * 1024;

/** " (0.1 MiB free of 16.0 MiB)" for a full or over-quota folder storage, else "". */
async function freeSpace(err: unknown, storage: Storage): Promise<string> {
  const code = (err as NodeJS.ErrnoException).code;
  if ((code !== 'ENOSPC' && code !== 'EDQUOT') || !storage.url.startsWith('file://')) return '';
  try {
    const fs = await statfs(storage.locate(''));
    return ` (${((fs.bavail * fs.bsize) / MiB).toFixed(1)} MiB free of ${((fs.blocks * fs.bsize) / MiB).toFixed(1)} MiB)`;
  } catch {
    return '';
  }
}

/** One dump per database and at most PGSHELF_HOST_CONCURRENCY per server; retention (prune) after each success. */
export const backupJob = defineJob({
  kind: 'backup',
  create: createBackupJob,
  acts: 'back up',
  excludes: { database: { waiting: 'another backup of this database is running: waiting' }, host: true },
  followedBy: { kind: 'prune', key: (result) => result.id },
});
