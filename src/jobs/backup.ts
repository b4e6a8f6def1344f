import { statfs } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { resolveTarget, type PgSettings } from '../config/index.js';
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
import { inspectDatabase, type ServerInfo } from '../postgres/server.js';
import { findTool, restrictSince, type Tool } from '../postgres/tools.js';
import type { ObjectWriter, Storage } from '../storage/index.js';
import { backupKeys, newBackupId } from '../catalog/layout.js';
import type { JobContext, JobDeps } from './context.js';
import { withJobRun } from '../archive/run.js';
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

/** The server and the pg_dump that will dump it. */
interface Source {
  readonly server: ServerInfo;
  readonly pgDump: Tool;
}

/** What the dump wrote: pg_dump's bytes and COPY rows, and the archive's size and SHA-256. */
interface Dumped {
  readonly uncompressedBytes: number;
  readonly tables: Record<string, number>;
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * Backs up one database: inspect the server (and find its pg_dump) -> open the archive's writer -> dump
 * (pg_dump | gzip -> storage) -> commit the manifest. Every attempt is recorded in the attempt marker.
 */
export function createBackupJob(deps: JobDeps) {
  const now = deps.now ?? (() => new Date());
  return async function backup(input: BackupInput, ctx: JobContext): Promise<BackupResult> {
    const { config, storage } = deps;
    const log = ctx.logger;
    const target = resolveTarget(config, input.database);
    if (ctx.signal.aborted) throw new AbortedError();

    // Every attempt is recorded, including one that cannot reach the server: prune deletes nothing after a failure.
    const startedAt = now();
    const id = newBackupId();
    await writeAttempt(storage, target.name, { status: 'running', id, at: startedAt.toISOString() }, log);
    try {
      const result = await steps();
      await writeAttempt(storage, target.name, { status: 'succeeded', id, at: now().toISOString() }, log);
      return result;
    } catch (err) {
      const error = errorMessage(err).split('\n').slice(0, 3).join(' ');
      await writeAttempt(storage, target.name, { status: 'failed', id, at: now().toISOString(), error }, log);
      throw err;
    }

    async function steps(): Promise<BackupResult> {
      const source = await inspect(deps, target.postgres, ctx);
      const keys = backupKeys(target.name, startedAt, id);
      log.info(
        {
          database: target.name,
          id,
          key: keys.archive,
          server: source.server.version,
          pgDump: source.pgDump.version,
        },
        'backup started',
      );
      const writer = openWriter(storage, keys.archive, source.server.databaseSize);
      const dumped = await dump(deps, target.postgres, input, source, writer, ctx);
      const finishedAt = now();
      const manifest: Manifest = {
        format: MANIFEST_FORMAT,
        formatVersion: MANIFEST_VERSION,
        id,
        database: target.name,
        host: target.postgres.host,
        port: target.postgres.port,
        serverVersion: source.server.version,
        serverVersionNum: source.server.versionNum,
        pgDumpVersion: source.pgDump.version,
        pgDumpPath: source.pgDump.path,
        dumpOptions: { noOwner: input.noOwner === true, noPrivileges: input.noOwner === true },
        compression: { format: 'gzip', level: config.gzipLevel, threads: config.gzipThreads },
        encryption: null,
        archive: { key: keys.archive, bytes: dumped.bytes, sha256: dumped.sha256 },
        uncompressedBytes: dumped.uncompressedBytes,
        databaseSize: source.server.databaseSize,
        startedAt: startedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        durationMs: finishedAt.getTime() - startedAt.getTime(),
        tables: dumped.tables,
        drill: null,
        drills: [],
      };
      await commitManifest(deps, keys, manifest);
      const rows = Object.values(dumped.tables).reduce((a, b) => a + b, 0);
      log.info(
        {
          database: target.name,
          id,
          bytes: dumped.bytes,
          uncompressed: dumped.uncompressedBytes,
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
        bytes: dumped.bytes,
        uncompressedBytes: dumped.uncompressedBytes,
        sha256: dumped.sha256,
        durationMs: manifest.durationMs,
        tables: Object.keys(dumped.tables).length,
        rows,
      };
    }
  };
}

/** Step 1: the server's version and size, and the pg_dump for that version (warned about when it is old). */
async function inspect(deps: JobDeps, pg: PgSettings, ctx: JobContext): Promise<Source> {
  const { config } = deps;
  const server = await inspectDatabase(pg, { echo: config.dbEcho, logger: ctx.logger });
  const pgDump = await findTool('pg_dump', server.major, { binDir: config.pgBinDir, env: config.childEnv });
  if (!pgDump.restrict) {
    ctx.logger.warn(
      { pgDump: pgDump.version, path: pgDump.path },
      `pg_dump ${pgDump.version} predates the CVE-2025-8714 fix (${restrictSince(pgDump.major) ?? '18'}): ` +
        'install a newer one; it is used because nothing newer is installed',
    );
  }
  return { server, pgDump };
}

/** Step 2, before pg_dump starts: a storage that cannot be written to fails the job with nothing to clean up. */
function openWriter(storage: Storage, key: string, sizeHint: number): ObjectWriter {
  try {
    return storage.createWriter(key, { sizeHint, contentType: 'application/gzip' });
  } catch (err) {
    throw storageFailure(err, storage);
  }
}

/**
 * Step 3: pg_dump -> DumpGate -> gzip -> SHA-256 -> storage, committed only when pg_dump exited 0 with a complete
 * dump; on any failure the upload is aborted and pg_dump killed.
 */
async function dump(
  deps: JobDeps,
  pg: PgSettings,
  input: BackupInput,
  { pgDump }: Source,
  writer: ObjectWriter,
  ctx: JobContext,
): Promise<Dumped> {
  const { config, storage } = deps;
  const args = [...connectionArgs(pg), '--no-password', '--format=plain'];
  if (input.noOwner) args.push('--no-owner', '--no-privileges');
  args.push(`--dbname=${conninfoDbname(pg.database)}`);
  let gate: DumpGate | undefined;
  const digest = new DigestStream({ highWaterMark: 1 << 20 });
  const meter = { phase: 'dump', bytesIn: () => gate?.bytes ?? 0, bytesOut: () => digest.bytes };
  return withJobRun(ctx, meter, async (run) => {
    const child = spawnChild(pgDump.path, args, {
      env: childEnv(config.childEnv, pg),
      logger: ctx.logger,
      echo: config.dbEcho,
      signal: run.signal,
    });
    gate = new DumpGate(child);
    try {
      if (!child.process.stdout) throw new DumpFailedError('pg_dump has no stdout');
      await pipeline(
        child.process.stdout,
        gate,
        createGzipStream(config.gzipLevel, config.gzipThreads),
        digest,
        writer.stream,
        { signal: run.signal },
      );
      run.report();
      await writer.commit();
    } catch (err) {
      run.abort(err);
      child.kill();
      // Measured before abort() removes the partial file, so it says how full the disk was when writing failed.
      const space = await freeSpace(err, storage);
      await writer.abort();
      await child.exited;
      throw explainBackupFailure(err, child, writer, ctx.signal, storage, space);
    }
    return {
      uncompressedBytes: gate.bytes,
      tables: gate.rows.toJSON(),
      bytes: digest.bytes,
      sha256: digest.sha256,
    };
  });
}

/** Step 4: the manifest is the commit mark, written last and only for a complete archive. */
async function commitManifest(
  { config, storage }: JobDeps,
  keys: { archive: string; manifest: string },
  manifest: Manifest,
): Promise<void> {
  try {
    await writeManifest(storage, keys.manifest, manifest, manifestTrust(config));
  } catch (err) {
    await storage.deleteMany([keys.manifest, keys.archive]).catch(() => undefined);
    throw err;
  }
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
