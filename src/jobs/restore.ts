import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { Readable, Transform } from 'node:stream';
import { resolveTarget, type PgSettings } from '../config/index.js';
import {
  AbortedError,
  BackupNotFoundError,
  ChecksumMismatchError,
  ConfigError,
  CorruptArchiveError,
  PgshelfError,
  RestoreFailedError,
  TargetExistsError,
  UnsafeArchiveError,
  VersionMismatchError,
  errorMessage,
} from '../errors.js';
import { findBackup } from '../catalog/backups.js';
import {
  MANIFEST_MAX_BYTES,
  manifestTrust,
  parseManifest,
  type Manifest,
  type ManifestTrust,
} from '../catalog/manifest.js';
import { garbageNudger } from '../archive/memory.js';
import {
  commentOnDatabase,
  databaseInfo,
  dropDatabase,
  renameDatabase,
  withAdminDb,
} from '../postgres/admin.js';
import { describeExit, spawnChild, type Child } from '../postgres/child.js';
import { conninfoDbname, PsqlSink } from '../postgres/psql.js';
import { childEnv, connectionArgs, type QueryOptions } from '../postgres/connection.js';
import {
  claimStaging,
  dropIfAbandoned,
  holdWhileRunning,
  lockRestoreTarget,
  rolePowers,
  stagingDatabases,
} from '../postgres/restore-lock.js';
import { describeConnectError } from '../postgres/server.js';
import { findTool, serverMajor } from '../postgres/tools.js';
import { parseKey } from '../catalog/layout.js';
import type { Storage } from '../storage/index.js';
import { throttle, type JobContext, type JobDeps } from './context.js';
import { defineJob } from './definition.js';
import { asCorruptArchive, checkStoredSize, SizeLimit, verifyArchive } from '../archive/restore-check.js';
import { DUMP_COMPLETE, EndGate } from '../archive/gates.js';
import { SqlGuard } from '../archive/sql-filter.js';
import { DigestStream } from '../archive/digest.js';

export interface RestoreInput {
  /** Database whose backups to look in; default: POSTGRES_DB. Its connection settings are used for the target. */
  readonly database?: string;
  /** 'latest' (default) or a backup id. */
  readonly backup?: string;
  /** Restore this storage key instead (any gzip of a plain SQL dump, with or without a manifest). */
  readonly key?: string;
  /** Name of the database to create. It must not exist. */
  readonly into: string;
  /** Drop ownership and privilege statements: every object then belongs to POSTGRES_USER. */
  readonly noOwner?: boolean;
  /**
   * This restore's identity, the same for each of its attempts (the CLI makes one per command; the job one when
   * missing). "Already done" is decided on it, never on the queue's job id, which can be reused.
   */
  readonly nonce?: string;
  /**
   * Read and check the whole archive (size, SHA-256, gunzip, completion line) before any SQL is sent. Default:
   * on for `key` restores (drills pass it too), off otherwise (the same checks then run as it streams).
   */
  readonly verifyFirst?: boolean;
}

export interface RestoreResult {
  readonly database: string;
  readonly owner: string;
  readonly backupId: string | null;
  readonly sourceDatabase: string | null;
  readonly archiveKey: string;
  readonly bytes: number;
  readonly uncompressedBytes: number;
  readonly sha256: string;
  /** Whether the archive's SHA-256 and size were checked against a manifest (false for foreign archives). */
  readonly checkedAgainstManifest: boolean;
  readonly durationMs: number;
  /** Things the operator should know, e.g. that the restoring role has more power than a restore needs. */
  readonly warnings: readonly string[];
}

/** The most a PostgreSQL identifier can hold (NAMEDATALEN - 1). */
const MAX_NAME_BYTES = 63;

/** Settings for psql's session on a brand-new database: faster index builds, no waiting on WAL flushes. */
export const RESTORE_PGOPTIONS = '-c maintenance_work_mem=256MB -c synchronous_commit=off';

function checkTargetName(into: string): void {
  if (!into || into.trim() === '') {
    throw new ConfigError('no target database given: pass --into NEW_DB, e.g. --into fractal_db_restored');
  }
  if (Buffer.byteLength(into, 'utf8') > MAX_NAME_BYTES) {
    throw new ConfigError(
      `--into "${into}" is ${Buffer.byteLength(into, 'utf8')} bytes; PostgreSQL names hold at most ${MAX_NAME_BYTES}`,
    );
  }
  if (into.includes('\u0000')) throw new ConfigError('--into must not contain NUL characters');
}

/** A fresh scratch name for one attempt of a restore; the target's name is taken only at the end. */
export function stagingName(): string {
  return `pgshelf_restore_${randomBytes(8).toString('hex')}`;
}

/** A new restore identity. */
export function restoreNonce(): string {
  return randomBytes(12).toString('hex');
}

interface Archive {
  readonly key: string;
  readonly bytes: number;
  readonly manifest: Manifest | undefined;
  readonly backupId: string | null;
  readonly sourceDatabase: string | null;
}

async function locateArchive(
  storage: Storage,
  database: string,
  input: RestoreInput,
  trust: ManifestTrust,
): Promise<Archive> {
  if (input.key !== undefined) {
    const info = await storage.stat(input.key);
    if (!info) throw new BackupNotFoundError(`${storage.locate(input.key)} does not exist: check --key`);
    // A pgshelf archive given by key still gets its manifest checks.
    const parsed = parseKey(input.key);
    const manifestKey = parsed ? `${parsed.base}.manifest.json` : undefined;
    const manifestBody = manifestKey
      ? await storage.getObject(manifestKey, { maxBytes: MANIFEST_MAX_BYTES })
      : undefined;
    const manifest =
      manifestBody && manifestKey
        ? parseManifest(manifestBody, manifestKey, trust, storage.locate(manifestKey))
        : undefined;
    return {
      key: input.key,
      bytes: info.size,
      manifest,
      backupId: manifest?.id ?? null,
      sourceDatabase: manifest?.database ?? null,
    };
  }
  const { backup, manifest } = await findBackup(storage, database, input.backup ?? 'latest', trust);
  return {
    key: manifest.archive.key,
    bytes: manifest.archive.bytes,
    manifest,
    backupId: backup.id,
    sourceDatabase: manifest.database,
  };
}

export function createRestoreJob(deps: JobDeps) {
  const now = deps.now ?? (() => new Date());
  return async function restore(input: RestoreInput, ctx: JobContext): Promise<RestoreResult> {
    const { config, storage } = deps;
    const log = ctx.logger;
    checkTargetName(input.into);
    const target = resolveTarget(config, input.database);
    const pg: PgSettings = target.postgres;
    const q: QueryOptions = { echo: config.dbEcho, logger: log };
    if (ctx.signal.aborted) throw new AbortedError();

    const archive = await locateArchive(storage, target.name, input, manifestTrust(config));
    if (archive.manifest) await checkStoredSize(storage, archive.key, archive.manifest);
    if (input.verifyFirst ?? input.key !== undefined) {
      log.info({ key: archive.key }, 'verifying the whole archive before restoring it');
      await verifyArchive(storage, archive.key, archive.manifest, ctx.signal);
    }
    const nonce = input.nonce ?? restoreNonce();
    if (!/^[0-9A-Za-z-]{8,64}$/.test(nonce)) {
      throw new ConfigError(
        `restore nonce "${nonce}" is not 8-64 letters, digits or dashes, e.g. ${restoreNonce()}`,
      );
    }
    const staging = stagingName();
    const marker = `pgshelf restore ${nonce}`;
    const owner = pg.user ?? os.userInfo().username;
    const warnings: string[] = [];

    // Server version, the target's existence, and leftovers of earlier attempts of this same restore, under the
    // target's advisory lock (released when the connection closes).
    const server = await withAdminDb(pg, q, async (db) => {
      const [row] = await db.query<{ num: string }>(`SELECT current_setting('server_version_num') AS num`);
      const power = await rolePowers(db, owner);
      if (power.length > 0) {
        // An archive's SQL runs with this role's rights: a superuser's restore can reach the whole server.
        warnings.push(
          `the restoring role "${owner}" (POSTGRES_USER) has ${power.join(' and ')}: the archive's SQL runs with ` +
            'those rights. Restore with a role that only has CREATEDB (see "Restoring" in the README)',
        );
      }
      await lockRestoreTarget(db, input.into);
      const existing = await databaseInfo(db, input.into);
      if (existing) {
        // An earlier attempt of this restore renamed the database and then died: the restore is done.
        if (existing.comment?.startsWith(`${marker} completed`))
          return { versionNum: Number(row?.num), done: true };
        throw targetExists(input.into, existing.owner);
      }
      for (const name of await stagingDatabases(db, `${marker} `)) {
        if (await dropIfAbandoned(db, name)) {
          log.warn(
            { staging: name },
            'dropped the unfinished restore left by an earlier attempt of this restore',
          );
        }
      }
      return { versionNum: Number(row?.num), done: false };
    }).catch((err: unknown) => {
      if (err instanceof PgshelfError) throw err;
      throw describeConnectError(err, pg, 'postgres');
    });
    for (const w of warnings) log.warn({ role: owner }, w);
    const major = serverMajor(server.versionNum);
    if (archive.manifest && serverMajor(archive.manifest.serverVersionNum) > major) {
      throw new VersionMismatchError(
        `the backup comes from PostgreSQL ${archive.manifest.serverVersion} but the target server is ` +
          `${major}: restore into a server of major version ${serverMajor(archive.manifest.serverVersionNum)} or newer`,
      );
    }
    const startedAt = now();
    if (server.done) {
      log.info({ into: input.into }, 'an earlier attempt of this restore (same nonce) already completed it');
      return result(0, 0, '');
    }

    const [createdb, psql] = await Promise.all([
      findTool('createdb', major, { binDir: config.pgBinDir, env: config.childEnv }),
      findTool('psql', major, { binDir: config.pgBinDir, env: config.childEnv }),
    ]);
    log.info(
      { into: input.into, staging, key: archive.key, backup: archive.backupId, bytes: archive.bytes },
      'restore started',
    );

    // 1. A fresh database, owned by POSTGRES_USER, created by POSTGRES_ADMIN_USER (template0: nothing in it).
    const createArgs = [...connectionArgs(pg, 'admin'), '--no-password', '--template=template0'];
    if (pg.user !== undefined) createArgs.push(`--owner=${pg.user}`);
    // The description is the in-progress marker: a staging database is never there without its restore's nonce.
    createArgs.push('--', staging, `${marker} in progress: restoring ${archive.key} into ${input.into}`);
    // This attempt's claim on its staging database, held until it ends: a retry drops only abandoned ones.
    const claim = await holdWhileRunning(pg, q, (db) => claimStaging(db, staging));
    // Under the target's lock, so no restore finishing meanwhile is missed.
    const creating = withAdminDb(pg, q, async (db) => {
      await lockRestoreTarget(db, input.into);
      const existing = await databaseInfo(db, input.into);
      if (existing) throw targetExists(input.into, existing.owner, ' (another restore finished first)');
      const created = spawnChild(createdb.path, createArgs, {
        env: childEnv(config.childEnv, pg, 'admin'),
        logger: log,
        echo: config.dbEcho,
        stdout: 'ignore',
      });
      const createdStatus = await created.exited;
      if (createdStatus.code !== 0) {
        throw new RestoreFailedError(
          `createdb ${describeExit(createdStatus)}: ${created.stderr.text(5)}. Check that POSTGRES_ADMIN_USER ` +
            `(${pg.adminUser ?? 'default'}) may create databases`,
        );
      }
    });
    await creating.catch(async (err: unknown) => {
      await claim.release();
      throw err;
    });
    const cleanup = async (): Promise<void> => {
      await withAdminDb(pg, q, (db) => dropDatabase(db, staging)).catch((err: unknown) =>
        log.error(
          { err: errorMessage(err), staging },
          'could not drop the unfinished restore; drop it by hand',
        ),
      );
    };

    let doneElsewhere: boolean;
    let digest: DigestStream | undefined;
    let sqlGate: EndGate | undefined;
    let child: Child | undefined;
    try {
      // 2. storage -> SHA-256 -> gunzip -> [ownership filter] -> psql, in one transaction.
      const abort = new AbortController();
      const onAbort = (): void => abort.abort(ctx.signal.reason);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      const psqlArgs = [
        ...connectionArgs(pg),
        '--no-password',
        '--no-psqlrc',
        '--quiet',
        '--set=ON_ERROR_STOP=1',
        '--single-transaction',
        `--dbname=${conninfoDbname(staging)}`,
      ];
      child = spawnChild(psql.path, psqlArgs, {
        env: { ...childEnv(config.childEnv, pg), PGOPTIONS: RESTORE_PGOPTIONS },
        logger: log,
        echo: config.dbEcho,
        stdin: 'pipe',
        stdout: 'ignore',
        signal: abort.signal,
      });
      const source: Readable = await storage.openRead(archive.key, { signal: abort.signal });
      digest = new DigestStream({ highWaterMark: 1 << 20 });
      const d = digest;
      const manifest = archive.manifest;
      const archiveGate = new EndGate(() => {
        if (!manifest) return undefined;
        if (d.bytes !== manifest.archive.bytes) {
          return new ChecksumMismatchError(
            `${storage.locate(archive.key)} is ${d.bytes < manifest.archive.bytes ? 'truncated' : 'too long'}: ` +
              `read ${d.bytes} bytes, the manifest says ${manifest.archive.bytes}. Restore another backup (\`pgshelf list\`)`,
          );
        }
        if (d.sha256 !== manifest.archive.sha256) {
          return new ChecksumMismatchError(
            `${storage.locate(archive.key)} does not match its manifest: SHA-256 ${d.sha256}, expected ` +
              `${manifest.archive.sha256} (${manifest.archive.bytes} bytes). The archive is damaged; restore ` +
              'another backup (`pgshelf list`)',
          );
        }
        return undefined;
      });
      const nudge = garbageNudger();
      sqlGate = new EndGate(
        (g) =>
          g.tail.complete
            ? undefined
            : new CorruptArchiveError(
                `${storage.locate(archive.key)} ends without pg_dump's "${DUMP_COMPLETE}" line: the dump is ` +
                  'incomplete; restore another backup',
              ),
        (chunk) => nudge(chunk.length),
      );
      const report = throttle(ctx.progress);
      const t0 = Date.now();
      const progress = (force = false): void => {
        const elapsedMs = Date.now() - t0;
        report(
          {
            phase: 'restore',
            bytesIn: d.bytes,
            bytesOut: sqlGate?.bytes ?? 0,
            totalBytes: archive.bytes,
            elapsedMs,
            rate: elapsedMs > 0 ? (d.bytes * 1000) / elapsedMs : 0,
          },
          force,
        );
      };
      const ticker = setInterval(progress, 1000);
      const stages: (Readable | Transform | Writable)[] = [source];
      if (manifest) stages.push(new SizeLimit(manifest.archive.bytes, storage.locate(archive.key)));
      stages.push(digest, archiveGate, createGunzip({ chunkSize: 128 * 1024 }));
      // Only SQL reaches psql: its own \restrict first (a key the archive cannot know), then the lexed archive.
      stages.push(
        sqlGate,
        new SqlGuard({ noOwner: input.noOwner, restrictKey: randomBytes(32).toString('hex') }),
      );
      stages.push(new PsqlSink(child));
      try {
        await pipeline(stages as [Readable, ...Transform[], Writable], { signal: abort.signal });
        const status = await child.exited;
        if (status.code !== 0) throw new RestoreFailedError(`psql ${describeExit(status)}`);
        progress(true);
      } finally {
        clearInterval(ticker);
        ctx.signal.removeEventListener('abort', onAbort);
      }

      // 3. Only a complete, verified, committed restore gets the target's name.
      doneElsewhere = await withAdminDb(pg, q, async (db) => {
        await lockRestoreTarget(db, input.into);
        const existing = await databaseInfo(db, input.into);
        // Another attempt of this same restore (a worker that lost its lock) finished first: done all the same.
        if (existing?.comment?.startsWith(`${marker} completed`)) return true;
        if (existing) throw targetExists(input.into, existing.owner, ' (another restore finished first)');
        await renameDatabase(db, staging, input.into);
        await commentOnDatabase(
          db,
          input.into,
          `${marker} completed ${now().toISOString()}: restored from ${archive.key}`,
        );
        return false;
      });
    } catch (err) {
      child?.kill('SIGKILL');
      const status = child ? await child.exited : undefined;
      await cleanup();
      await claim.release();
      throw explainRestoreFailure(err, child, status, ctx.signal, input);
    }
    if (doneElsewhere) {
      await cleanup();
      log.info({ into: input.into }, 'another attempt of this restore (same nonce) completed it first');
    }
    await claim.release();
    const finished = now();
    const res = result(finished.getTime() - startedAt.getTime(), sqlGate.bytes, digest.sha256, digest.bytes);
    log.info({ into: input.into, ms: res.durationMs, bytes: res.bytes }, 'restore finished');
    return res;

    function result(
      durationMs: number,
      uncompressedBytes: number,
      sha256: string,
      bytes = archive.bytes,
    ): RestoreResult {
      return {
        database: input.into,
        owner,
        backupId: archive.backupId,
        sourceDatabase: archive.sourceDatabase,
        archiveKey: archive.key,
        bytes,
        uncompressedBytes,
        sha256: sha256 || (archive.manifest?.archive.sha256 ?? ''),
        checkedAgainstManifest: archive.manifest !== undefined,
        warnings,
        durationMs,
      };
    }
  };
}

function explainRestoreFailure(
  err: unknown,
  child: Child | undefined,
  status: { code: number | null; signal: NodeJS.Signals | null } | undefined,
  signal: AbortSignal,
  { into, noOwner }: RestoreInput,
): Error {
  if (signal.aborted) {
    return new AbortedError(`restore aborted: ${errorMessage(signal.reason)}; "${into}" was not created`);
  }
  if (
    err instanceof ChecksumMismatchError ||
    err instanceof CorruptArchiveError ||
    err instanceof UnsafeArchiveError ||
    err instanceof TargetExistsError
  ) {
    return err;
  }
  const corrupt = asCorruptArchive(err);
  if (corrupt) return corrupt;
  // psql's own words are the useful part of an SQL failure.
  const stderr = child?.stderr.text(15);
  if (stderr && status && status.code !== 0 && status.signal !== 'SIGKILL') {
    // Objects given to roles this server lacks, or that POSTGRES_USER cannot act as.
    const hint =
      !noOwner &&
      /role ".*" does not exist|must be (owner|member|able to SET ROLE)|permission denied to (set role|grant)/.test(
        stderr,
      )
        ? '\nThe dump gives objects to roles this server lacks or POSTGRES_USER cannot act as: restore with ' +
          '--no-owner, and every object will belong to POSTGRES_USER'
        : '';
    return new RestoreFailedError(`psql ${describeExit(status)}:\n${stderr}${hint}`, { cause: err });
  }
  if (stderr) return new RestoreFailedError(`${errorMessage(err)}\npsql said:\n${stderr}`, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}

function targetExists(into: string, owner: string, why = ''): TargetExistsError {
  return new TargetExistsError(
    `database "${into}" already exists (owner ${owner})${why}: pgshelf restores only into a new database and ` +
      'never overwrites one. Choose another --into, or drop it yourself first',
  );
}

export const restoreJob = defineJob({ kind: 'restore', create: createRestoreJob });
