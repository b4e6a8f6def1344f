import { statfs } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { findServer, resolveTarget, type PgSettings } from '../config/index.js';
import { AbortedError, DumpFailedError, PgshelfError, StorageError, errorMessage } from '../errors.js';
import { garbageNudger } from '../archive/memory.js';
import { heartbeatAttempt, writeAttempt } from '../catalog/markers.js';
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
import { backupKeys, newBackupId, parseGlobalsName, type Compression } from '../catalog/layout.js';
import type { JobContext, JobDeps } from './context.js';
import { withJobRun } from '../archive/run.js';
import { defineJob } from './definition.js';
import { createCompressor, ZSTD_LEVEL } from '../archive/compression.js';
import { CLUSTER_DUMP_COMPLETE, DUMP_COMPLETE, Tail } from '../archive/gates.js';
import { CopyRowCounter } from '../archive/copy-rows.js';
import { DigestStream } from '../archive/digest.js';
import { encryptStages, encryptionRecord } from '../archive/age.js';

export interface BackupInput {
  /** Database to back up; default: POSTGRES_DB. */
  readonly database?: string;
  /** Dump without ownership and privileges (restorable under any owner). */
  readonly noOwner?: boolean;
  /** The `servers:` entry (`host:port`) that discovered the database, when it did. */
  readonly server?: string;
  /** The scheduler's slot (local time) this backup is for; recorded in the manifest (restore-server --slot). */
  readonly slot?: string;
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
  /** The age public keys the archive is encrypted to, or null when it is plain gzip. */
  readonly encryption: Manifest['encryption'];
  readonly durationMs: number;
  readonly tables: number;
  readonly rows: number;
}

/**
 * What each pass-through stage of the dump's pipeline holds: one pipe read. The compressor's blocks read ahead (see
 * BlockCompressor) and the storage writer hold what is worth holding; when S3 sends a large part alone the whole
 * pipeline waits, and every stage's buffer sits full on top of the part (1 MiB each cost 7-15 MB of peak RSS at 96 MiB parts).
 */
const STAGE_BUFFER = 64 * 1024;

/**
 * pg_dump's stdout on its way to gzip: counts bytes and COPY rows, and holds back the end of the stream until
 * pg_dump has exited. Only a dump that exited 0, is non-empty and ends with pg_dump's completion marker lets the
 * stream end; anything else errors it, so the upload is aborted instead of committed.
 */
class DumpGate extends Transform {
  bytes = 0;
  readonly rows = new CopyRowCounter();
  private readonly tail: Tail;

  constructor(
    private readonly child: Child,
    private readonly tool: Tool,
  ) {
    super({ highWaterMark: STAGE_BUFFER });
    this.tail = new Tail(this.marker);
  }

  private get marker(): string {
    return this.tool.name === 'pg_dumpall' ? CLUSTER_DUMP_COMPLETE : DUMP_COMPLETE;
  }

  // Minor collections every 2 MiB rather than 8: while S3 sends a large part alone, the pipe reads that fill the
  // compressor's read-ahead are garbage on top of the part until the next one.
  private readonly nudge = garbageNudger(2 * 1024 * 1024);

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
        const name = this.tool.name;
        callback(new DumpFailedError(`${name} ${describeExit(status)}${stderr ? `:\n${stderr}` : ''}`));
      } else if (this.bytes === 0) {
        callback(new DumpFailedError(`${this.tool.name} exited 0 but wrote nothing`));
      } else if (!this.tail.complete) {
        callback(
          new DumpFailedError(
            `${this.tool.name}'s output ended without "${this.marker}": the dump is incomplete`,
          ),
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
 * (pg_dump | gzip -> storage) -> commit the manifest. Every attempt is recorded in the attempt marker. A server's
 * globals (the name `_servers/<host>-<port>/globals`) go the same way, with `pg_dumpall --globals-only`.
 */
export function createBackupJob(deps: JobDeps) {
  const now = deps.now ?? (() => new Date());
  return async function backup(input: BackupInput, ctx: JobContext): Promise<BackupResult> {
    const { config, storage } = deps;
    const log = ctx.logger;
    const target = resolveTarget(config, input.database, input.server);
    const globals = parseGlobalsName(target.name);
    const dumpInput: DumpInput = {
      noOwner: input.noOwner === true && !globals,
      globals: globals !== undefined,
      noRolePasswords:
        globals !== undefined &&
        findServer(config, `${globals.host}:${globals.port}`)?.noRolePasswords === true,
    };
    if (ctx.signal.aborted) throw new AbortedError();

    // Every attempt is recorded, including one that cannot reach the server: prune deletes nothing after a failure.
    const startedAt = now();
    const id = newBackupId();
    // A worker that dies never writes the outcome: the job id and the heartbeat let readers tell (monitor/status).
    const running = {
      status: 'running' as const,
      id,
      at: startedAt.toISOString(),
      ...(ctx.jobId !== undefined ? { job: ctx.jobId } : {}),
      renewEveryMs: Math.max(1000, Math.floor(config.lockDurationMs / 2)),
    };
    await writeAttempt(storage, target.name, running, log);
    const heartbeat = heartbeatAttempt(storage, target.name, running, now, log);
    try {
      const result = await steps();
      await heartbeat.stop();
      await writeAttempt(storage, target.name, { status: 'succeeded', id, at: now().toISOString() }, log);
      return result;
    } catch (err) {
      await heartbeat.stop();
      const error = errorMessage(err).split('\n').slice(0, 3).join(' ');
      await writeAttempt(storage, target.name, { status: 'failed', id, at: now().toISOString(), error }, log);
      throw err;
    }

    async function steps(): Promise<BackupResult> {
      const source = await inspect(deps, target.postgres, ctx, dumpInput.globals ? 'pg_dumpall' : 'pg_dump');
      const encryption = encryptionRecord(config.age);
      const keys = backupKeys(target.name, startedAt, id, encryption !== null, config.compression);
      log.info(
        {
          database: target.name,
          id,
          key: keys.archive,
          server: source.server.version,
          pgDump: source.pgDump.version,
          encryptedTo: encryption?.recipients,
        },
        'backup started',
      );
      const writer = openWriter(
        storage,
        keys.archive,
        source.server.databaseSize,
        encryption !== null,
        config.compression,
      );
      const dumped = await dump(deps, target.postgres, dumpInput, source, writer, encryption, ctx);
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
        dumpOptions: {
          noOwner: dumpInput.noOwner,
          noPrivileges: dumpInput.noOwner,
          ...(dumpInput.globals ? { globalsOnly: true, noRolePasswords: dumpInput.noRolePasswords } : {}),
        },
        ...(input.slot !== undefined ? { slot: input.slot } : {}),
        compression:
          config.compression === 'zstd'
            ? { format: 'zstd', level: ZSTD_LEVEL }
            : { format: 'gzip', level: config.gzipLevel, threads: config.gzipThreads },
        encryption,
        archive: { key: keys.archive, bytes: dumped.bytes, sha256: dumped.sha256 },
        uncompressedBytes: dumped.uncompressedBytes,
        databaseSize: source.server.databaseSize,
        ...(dumpInput.globals ? {} : { databaseOwner: source.server.owner }),
        startedAt: startedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        durationMs: finishedAt.getTime() - startedAt.getTime(),
        tables: dumped.tables,
        extensions: source.server.extensions,
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
        encryption,
        durationMs: manifest.durationMs,
        tables: Object.keys(dumped.tables).length,
        rows,
      };
    }
  };
}

/** What `dump` runs: pg_dump (noOwner: without ownership and privileges) or pg_dumpall --globals-only. */
interface DumpInput {
  readonly noOwner: boolean;
  readonly globals: boolean;
  readonly noRolePasswords: boolean;
}

/** Step 1: the server's version and size, and the pg_dump for that version (warned about when it is old). */
async function inspect(
  deps: JobDeps,
  pg: PgSettings,
  ctx: JobContext,
  tool: 'pg_dump' | 'pg_dumpall',
): Promise<Source> {
  const { config } = deps;
  const server = await inspectDatabase(pg, { echo: config.dbEcho, logger: ctx.logger });
  const pgDump = await findTool(tool, server.major, { binDir: config.pgBinDir, env: config.childEnv });
  if (!pgDump.restrict) {
    ctx.logger.warn(
      { pgDump: pgDump.version, path: pgDump.path },
      `${tool} ${pgDump.version} predates the CVE-2025-8714 fix (${restrictSince(pgDump.major) ?? '18'}): ` +
        'install a newer one; it is used because nothing newer is installed',
    );
  }
  return { server, pgDump };
}

/** Step 2, before pg_dump starts: a storage that cannot be written to fails the job with nothing to clean up. */
function openWriter(
  storage: Storage,
  key: string,
  sizeHint: number,
  encrypted: boolean,
  compression: Compression,
): ObjectWriter {
  try {
    const contentType = encrypted
      ? 'application/octet-stream'
      : compression === 'zstd'
        ? 'application/zstd'
        : 'application/gzip';
    return storage.createWriter(key, { sizeHint, contentType });
  } catch (err) {
    throw storageFailure(err, storage);
  }
}

/**
 * Step 3: pg_dump -> DumpGate -> gzip (or zstd) -> [age] -> SHA-256 -> storage, committed only when pg_dump exited 0 with a complete
 * dump; on any failure the upload is aborted and pg_dump killed.
 */
async function dump(
  deps: JobDeps,
  pg: PgSettings,
  input: DumpInput,
  { pgDump, server }: Source,
  writer: ObjectWriter,
  encryption: Manifest['encryption'],
  ctx: JobContext,
): Promise<Dumped> {
  const { config, storage } = deps;
  const args = [...connectionArgs(pg), '--no-password'];
  if (input.globals) {
    // Roles, memberships, role settings and tablespaces; pg_dumpall connects to `--database` for them.
    args.push('--globals-only', `--database=${pg.database}`);
    if (input.noRolePasswords) args.push('--no-role-passwords');
  } else {
    args.push('--format=plain');
    if (input.noOwner) args.push('--no-owner', '--no-privileges');
    args.push(`--dbname=${conninfoDbname(pg.database)}`);
  }
  let gate: DumpGate | undefined;
  const digest = new DigestStream({ highWaterMark: STAGE_BUFFER });
  const meter = {
    phase: 'dump',
    // The SQL's size is not known beforehand; the database's size on disk is the progress bar's guess.
    estimatedBytes: server.databaseSize,
    bytesIn: () => gate?.bytes ?? 0,
    bytesOut: () => digest.bytes,
  };
  return withJobRun(ctx, meter, async (run) => {
    const child = spawnChild(pgDump.path, args, {
      env: childEnv(config.childEnv, pg),
      logger: ctx.logger,
      echo: config.dbEcho,
      signal: run.signal,
    });
    gate = new DumpGate(child, pgDump);
    try {
      if (!child.process.stdout) throw new DumpFailedError(`${pgDump.name} has no stdout`);
      await pipeline(
        child.process.stdout,
        gate,
        config.compression === 'zstd'
          ? createCompressor('zstd', ZSTD_LEVEL, 1)
          : createCompressor('gzip', config.gzipLevel, config.gzipThreads),
        ...encryptStages(encryption),
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
