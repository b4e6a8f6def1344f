import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { pipeline } from 'node:stream/promises';
import type { Duplex, Readable, Transform, Writable } from 'node:stream';
import { resolveTarget, type PgSettings } from '../config/index.js';
import {
  AbortedError,
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
import type { Logger } from '../logger.js';
import { locateArchive, type LocatedArchive } from '../catalog/backups.js';
import { manifestTrust } from '../catalog/manifest.js';
import {
  commentOnDatabase,
  createDatabase,
  databaseInfo,
  dropDatabase,
  renameDatabase,
  serverVersionNum,
  withAdminDb,
} from '../postgres/admin.js';
import { describeExit, type Child } from '../postgres/child.js';
import { PsqlSink, spawnRestorePsql } from '../postgres/psql.js';
import { PsqlSession } from '../postgres/psql-session.js';
import { ParallelSink } from '../archive/parallel-restore.js';
import type { QueryOptions } from '../postgres/connection.js';
import {
  claimStaging,
  dropIfAbandoned,
  holdWhileRunning,
  lockRestoreTarget,
  rolePowers,
  stagingDatabases,
} from '../postgres/restore-lock.js';
import { describeConnectError } from '../postgres/server.js';
import { createUntrustedExtensions, type ExtensionRef, type PreCreated } from '../postgres/extensions.js';
import { findTool, serverMajor } from '../postgres/tools.js';
import type { JobContext, JobDeps } from './context.js';
import {
  ArchiveCheck,
  archiveReadStages,
  asCorruptArchive,
  checkStoredSize,
  sqlGate,
} from '../archive/check.js';
import { decryptionFor, type AgeKeys } from '../archive/age.js';
import { withJobRun, type Meter } from '../archive/run.js';
import type { EndGate } from '../archive/gates.js';
import { defineJob } from './definition.js';
import { SqlGuard, type PreCreatedObjects } from '../archive/sql-filter.js';
import { restoreGlobals, type GlobalsRestoreResult } from '../archive/globals.js';
import { isGlobalsName } from '../catalog/layout.js';
import { DigestStream } from '../archive/digest.js';
import type { ResumeInfo } from '../storage/index.js';

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
  /**
   * Apply the globals (roles, memberships, tablespaces) of the backup's server and slot first, as
   * POSTGRES_ADMIN_USER: roles that exist are left as they are.
   */
  readonly withGlobals?: boolean;
  /** Owner of the new database (default POSTGRES_USER); restore-server gives the source database's owner. */
  readonly owner?: string;
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
  /** With `withGlobals`: what applying the globals did. */
  readonly globals?: GlobalsRestoreResult;
  /** Extensions created as POSTGRES_ADMIN_USER before the stream (untrusted ones a non-superuser owner cannot). */
  readonly extensions: readonly ExtensionRef[];
}

/** The most a PostgreSQL identifier can hold (NAMEDATALEN - 1). */
const MAX_NAME_BYTES = 63;

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

/** What the preflight found and decided: everything the later steps need. */
interface Plan {
  readonly input: RestoreInput;
  readonly pg: PgSettings;
  readonly q: QueryOptions;
  readonly archive: LocatedArchive;
  /** The keys that decrypt it, when it is encrypted with age. */
  readonly age: AgeKeys | undefined;
  /** Where the archive is, for messages. */
  readonly where: string;
  /** The comment that marks this restore's databases: "pgshelf restore NONCE". */
  readonly marker: string;
  readonly owner: string;
  /** The new database's owner when not POSTGRES_USER (the source's, with the globals). */
  readonly createOwner?: string;
  readonly warnings: readonly string[];
  readonly globals?: GlobalsRestoreResult;
  /** An earlier attempt of this restore (same nonce) already completed it. */
  readonly done: boolean;
  readonly createdb: string;
  readonly psql: string;
}

/** A staging database created for this attempt, and the claim that keeps other attempts from dropping it. */
interface Staging {
  readonly name: string;
  readonly claim: { release(): Promise<void> };
  /** Another attempt of this same restore (same nonce) completed it while this one got ready: nothing created. */
  readonly doneElsewhere?: boolean;
}

/** What the stream read and sent. */
interface Streamed {
  readonly bytes: number;
  readonly sha256: string;
  readonly uncompressedBytes: number;
}

/**
 * Restores an archive into a new database: preflight (find and check the archive, the target, the server) ->
 * create a staging database -> create the extensions only a superuser can -> stream the archive into it with psql,
 * in one transaction -> promote it (rename it to the target). A failed attempt drops its staging database; the target's name is taken only at the end.
 */
export function createRestoreJob(deps: JobDeps) {
  const now = deps.now ?? (() => new Date());
  return async function restore(input: RestoreInput, ctx: JobContext): Promise<RestoreResult> {
    const log = ctx.logger;
    const plan = await preflight(deps, input, ctx);
    const startedAt = now();
    if (plan.done) {
      log.info({ into: input.into }, 'an earlier attempt of this restore (same nonce) already completed it');
      return result(plan, 0, { bytes: plan.archive.bytes, sha256: '', uncompressedBytes: 0 });
    }
    const staging = await createStaging(deps, plan, ctx);
    if (staging.doneElsewhere) {
      log.info({ into: input.into }, 'another attempt of this restore (same nonce) completed it first');
      return result(plan, 0, { bytes: plan.archive.bytes, sha256: '', uncompressedBytes: 0 });
    }
    let streamed: Streamed | undefined;
    let doneElsewhere: boolean;
    let created: PreCreated;
    try {
      created = await createExtensions(plan, staging.name, log);
      streamed = await stream(deps, plan, staging.name, created, ctx);
      doneElsewhere = await promote(plan, staging.name, now);
    } catch (err) {
      await dropStaging(plan, staging.name, log);
      await staging.claim.release();
      // The stream explains its own failures (it has psql's stderr); promote's are explained here.
      throw streamed ? explainRestoreFailure(err, undefined, undefined, ctx.signal, plan) : err;
    }
    if (doneElsewhere) {
      await dropStaging(plan, staging.name, log);
      log.info({ into: input.into }, 'another attempt of this restore (same nonce) completed it first');
    }
    await staging.claim.release();
    const res = {
      ...result(plan, now().getTime() - startedAt.getTime(), streamed),
      extensions: created.extensions,
    };
    log.info({ into: input.into, ms: res.durationMs, bytes: res.bytes }, 'restore finished');
    return res;
  };
}

/**
 * Step 1: the archive (found, its stored size and, with verifyFirst, all of it checked), the target's name (free,
 * or taken by an earlier attempt of this same restore), leftovers of earlier attempts dropped, the server's
 * version against the backup's, and the client tools for that version.
 */
async function preflight(deps: JobDeps, input: RestoreInput, ctx: JobContext): Promise<Plan> {
  const { config, storage } = deps;
  const log = ctx.logger;
  checkTargetName(input.into);
  const target = resolveTarget(config, input.database);
  if (isGlobalsName(target.name)) {
    throw new ConfigError(
      `${target.name} holds a server's globals, not a database: restore them with \`pgshelf restore --with-globals\` ` +
        'or `pgshelf restore-server`',
    );
  }
  const pg: PgSettings = target.postgres;
  const q: QueryOptions = { echo: config.dbEcho, logger: log };
  if (ctx.signal.aborted) throw new AbortedError();

  const archive = await locateArchive(storage, target.name, input, manifestTrust(config));
  if (archive.manifest) await checkStoredSize(storage, archive.key, archive.manifest);
  // Before any database exists: an encrypted archive this host cannot open fails here.
  const age = await decryptionFor(config.age, storage, archive, log, ctx.signal);
  if (input.verifyFirst ?? input.key !== undefined) {
    log.info({ key: archive.key }, 'verifying the whole archive before restoring it');
    await new ArchiveCheck(storage, archive.key, archive.manifest, age).run(ctx.signal);
  }
  const nonce = input.nonce ?? restoreNonce();
  if (!/^[0-9A-Za-z-]{8,64}$/.test(nonce)) {
    throw new ConfigError(
      `restore nonce "${nonce}" is not 8-64 letters, digits or dashes, e.g. ${restoreNonce()}`,
    );
  }
  const marker = `pgshelf restore ${nonce}`;
  const restorer = pg.user ?? os.userInfo().username;
  // With the globals, the source's roles exist again: the database gets its source owner back.
  const sourceOwner = input.owner ?? (input.withGlobals ? archive.manifest?.databaseOwner : undefined);
  const owner = sourceOwner ?? restorer;
  const { versionNum, done, warnings } = await checkTarget(pg, q, input.into, marker, restorer, log);
  for (const w of warnings) log.warn({ role: restorer }, w);
  const major = serverMajor(versionNum);
  if (archive.manifest && serverMajor(archive.manifest.serverVersionNum) > major) {
    throw new VersionMismatchError(
      `the backup comes from PostgreSQL ${archive.manifest.serverVersion} but the target server is ` +
        `${major}: restore into a server of major version ${serverMajor(archive.manifest.serverVersionNum)} or newer`,
    );
  }
  let globals: GlobalsRestoreResult | undefined;
  if (input.withGlobals && !done) {
    if (!archive.manifest) {
      throw new ConfigError(
        '--with-globals needs a backup with a manifest (it names the server and the slot)',
      );
    }
    // The roles the database's objects belong to must exist before its SQL runs.
    globals = await restoreGlobals(
      { storage, trust: manifestTrust(config), echo: config.dbEcho, age: config.age },
      pg,
      { host: archive.manifest.host, port: archive.manifest.port },
      { near: archive.manifest },
      ctx,
    );
  }
  const plan = {
    input,
    pg,
    q,
    archive,
    age,
    where: storage.locate(archive.key),
    marker,
    owner,
    warnings,
    ...(sourceOwner !== undefined ? { createOwner: sourceOwner } : {}),
    ...(globals ? { globals } : {}),
  };
  if (done) return { ...plan, done: true, createdb: '', psql: '' };
  const [createdb, psql] = await Promise.all([
    findTool('createdb', major, { binDir: config.pgBinDir, env: config.childEnv }),
    findTool('psql', major, { binDir: config.pgBinDir, env: config.childEnv }),
  ]);
  return { ...plan, done: false, createdb: createdb.path, psql: psql.path };
}

/**
 * The server's version, a warning when the restoring role has more power than a restore needs, and the target's
 * name: free, or taken by an earlier attempt of this same restore (done). Leftovers of earlier attempts are
 * dropped. Under the target's advisory lock (released when the connection closes).
 */
async function checkTarget(
  pg: PgSettings,
  q: QueryOptions,
  into: string,
  marker: string,
  owner: string,
  log: Logger,
): Promise<{ versionNum: number; done: boolean; warnings: string[] }> {
  return withAdminDb(pg, q, async (db) => {
    const versionNum = await serverVersionNum(db);
    const warnings: string[] = [];
    const power = await rolePowers(db, owner);
    if (power.length > 0) {
      // An archive's SQL runs with this role's rights: a superuser's restore can reach the whole server.
      warnings.push(
        `the restoring role "${owner}" (POSTGRES_USER) has ${power.join(' and ')}: the archive's SQL runs with ` +
          'those rights. Restore with a role that only has CREATEDB (see "Restoring" in the README)',
      );
    }
    await lockRestoreTarget(db, into);
    const existing = await databaseInfo(db, into);
    if (existing) {
      // An earlier attempt of this restore renamed the database and then died: the restore is done.
      if (existing.comment?.startsWith(`${marker} completed`)) return { versionNum, done: true, warnings };
      throw targetExists(into, existing.owner);
    }
    for (const name of await stagingDatabases(db, `${marker} `)) {
      if (await dropIfAbandoned(db, name)) {
        log.warn(
          { staging: name },
          'dropped the unfinished restore left by an earlier attempt of this restore',
        );
      }
    }
    return { versionNum, done: false, warnings };
  }).catch((err: unknown) => {
    if (err instanceof PgshelfError) throw err;
    throw describeConnectError(err, pg, 'postgres');
  });
}

/**
 * Step 2: a fresh database, owned by POSTGRES_USER, created by POSTGRES_ADMIN_USER (template0: nothing in it),
 * and this attempt's claim on it, held until the attempt ends: a retry drops only abandoned ones.
 */
async function createStaging(deps: JobDeps, plan: Plan, ctx: JobContext): Promise<Staging> {
  const { config } = deps;
  const { pg, q, input, archive } = plan;
  const log = ctx.logger;
  const name = stagingName();
  log.info(
    { into: input.into, staging: name, key: archive.key, backup: archive.backupId, bytes: archive.bytes },
    'restore started',
  );
  const claim = await holdWhileRunning(pg, q, (db) => claimStaging(db, name));
  // Under the target's lock, so no restore finishing meanwhile is missed.
  const creating = withAdminDb(pg, q, async (db) => {
    await lockRestoreTarget(db, input.into);
    const existing = await databaseInfo(db, input.into);
    if (existing?.comment?.startsWith(`${plan.marker} completed`)) return true;
    if (existing) throw targetExists(input.into, existing.owner, ' (another restore finished first)');
    // The description is the in-progress marker: a staging database is never there without its restore's nonce.
    const comment = `${plan.marker} in progress: restoring ${archive.key} into ${input.into}`;
    await createDatabase(
      plan.createdb,
      pg,
      { env: config.childEnv, logger: log, echo: config.dbEcho },
      name,
      comment,
      plan.createOwner,
    );
    return false;
  });
  const doneElsewhere = await creating.catch(async (err: unknown) => {
    await claim.release();
    throw err;
  });
  if (doneElsewhere) await claim.release();
  return { name, claim, doneElsewhere };
}

/**
 * Step 3: the extensions the backup recorded that only a superuser can create, created as POSTGRES_ADMIN_USER
 * (the stream then skips the dump's lines for them). The list comes from the manifest, which the archive is
 * checked against: never from unverified archive bytes. Archives without one (older pgshelf, `--key`) stream as
 * they are.
 */
async function createExtensions(plan: Plan, staging: string, log: Logger): Promise<PreCreated> {
  const wanted = plan.archive.manifest?.extensions ?? [];
  const created = await createUntrustedExtensions(plan.pg, plan.q, staging, plan.owner, wanted);
  for (const ext of created.extensions) {
    log.info(
      { extension: ext.name, schema: ext.schema, staging },
      'created extension as POSTGRES_ADMIN_USER: POSTGRES_USER is not a superuser',
    );
  }
  return created;
}

/**
 * Step 4: storage -> [size limit] -> SHA-256 -> archive checks -> [age] -> gunzip -> SQL checks -> SQL guard -> psql, in one
 * transaction: psql commits only when its input ends, and the gates hold that end back until every check passed.
 * Explains its own failures (psql's stderr is here).
 */
async function stream(
  deps: JobDeps,
  plan: Plan,
  staging: string,
  created: PreCreated,
  ctx: JobContext,
): Promise<Streamed> {
  const { config, storage } = deps;
  const { pg, archive, where } = plan;
  const manifest = archive.manifest;
  const digest = new DigestStream({ highWaterMark: 1 << 20 });
  // No forced collections here (a backup has them, see archive/memory.ts): on a restore they cost 7-30% more
  // client CPU and lowered no peak (927 MB database: ~115-120 MB either way).
  const sql = sqlGate(manifest, where);
  const meter = {
    phase: 'restore',
    totalBytes: archive.bytes,
    bytesIn: () => digest.bytes,
    bytesOut: () => sql.bytes,
  };
  // The dump's extensions this attempt created as POSTGRES_ADMIN_USER: their lines are skipped in the stream.
  const preCreated =
    created.extensions.length > 0
      ? { extensions: new Set(created.extensions.map((e) => e.name)), schemas: new Set(created.schemas) }
      : undefined;
  if (config.restoreJobs > 1) {
    return streamParallel(deps, plan, staging, ctx, { digest, sql, meter, preCreated });
  }
  return withJobRun(ctx, meter, async (run) => {
    let child: Child | undefined;
    try {
      const tool = { env: config.childEnv, logger: ctx.logger, echo: config.dbEcho };
      child = spawnRestorePsql(plan.psql, pg, staging, tool, run.signal);
      const source: Readable = await storage.openRead(archive.key, {
        signal: run.signal,
        onResume: logResume(ctx, archive.key),
      });
      const stages: (Readable | Duplex | Writable)[] = [source];
      stages.push(...archiveReadStages(manifest, where, digest, plan.age));
      // Only SQL reaches psql: its own \restrict first (a key the archive cannot know), then the lexed archive.
      stages.push(
        sql,
        new SqlGuard({
          noOwner: plan.input.noOwner,
          restrictKey: randomBytes(32).toString('hex'),
          preCreated,
        }),
      );
      stages.push(new PsqlSink(child));
      await pipeline(stages as [Readable, ...Transform[], Writable], { signal: run.signal });
      const status = await child.exited;
      if (status.code !== 0) throw new RestoreFailedError(`psql ${describeExit(status)}`);
      run.report();
      return { bytes: digest.bytes, sha256: digest.sha256, uncompressedBytes: sql.bytes };
    } catch (err) {
      child?.kill('SIGKILL');
      const status = child ? await child.exited : undefined;
      throw explainRestoreFailure(err, child, status, ctx.signal, plan);
    }
  });
}

/** Logs each time the archive's download picks up again after the connection dropped (S3). */
function logResume(ctx: JobContext, key: string): (info: ResumeInfo) => void {
  return (info) =>
    ctx.logger.warn(
      {
        key,
        position: info.position,
        total: info.total,
        attempt: info.attempt,
        err: errorMessage(info.cause),
      },
      'the archive download stopped midway; asking for the rest from where it stopped',
    );
}

/**
 * Step 4 on PGSHELF_RESTORE_JOBS sessions: the same stages up to the SQL guard, which cuts the SQL into pieces
 * for ParallelSink (statements in order on one session, COPY rows and index builds spread over all of them).
 * Not one transaction: the staging database, dropped on any failure, keeps the restore all-or-nothing, and the
 * gates still fail the stream before its end when a check fails, so no session ends its input cleanly.
 */
async function streamParallel(
  deps: JobDeps,
  plan: Plan,
  staging: string,
  ctx: JobContext,
  {
    digest,
    sql,
    meter,
    preCreated,
  }: { digest: DigestStream; sql: EndGate; meter: Meter; preCreated: PreCreatedObjects | undefined },
): Promise<Streamed> {
  const { config, storage } = deps;
  const { pg, archive, where } = plan;
  const manifest = archive.manifest;
  return withJobRun(ctx, meter, async (run) => {
    let sink: ParallelSink | undefined;
    try {
      const tool = { env: config.childEnv, logger: ctx.logger, echo: config.dbEcho };
      const onFailure = (s: PsqlSession): void => sink?.onSessionFailure(s);
      sink = new ParallelSink(
        config.restoreJobs,
        (i) => new PsqlSession(i, plan.psql, pg, staging, tool, run.signal, onFailure),
      );
      const source: Readable = await storage.openRead(archive.key, {
        signal: run.signal,
        onResume: logResume(ctx, archive.key),
      });
      const stages: (Readable | Duplex | Writable)[] = [source];
      stages.push(...archiveReadStages(manifest, where, digest, plan.age));
      stages.push(sql, new SqlGuard({ noOwner: plan.input.noOwner, split: true, preCreated }), sink);
      await pipeline(stages as [Readable, ...Transform[], Writable], { signal: run.signal });
      run.report();
      return { bytes: digest.bytes, sha256: digest.sha256, uncompressedBytes: sql.bytes };
    } catch (err) {
      sink?.killAll();
      if (sink?.failed) await sink.failed.child.exited;
      const failed = sink?.failure();
      throw explainRestoreFailure(err, failed?.child, failed?.status, ctx.signal, plan, failed?.where);
    }
  });
}

/**
 * Step 5: only a complete, verified, committed restore gets the target's name. Returns true when another attempt
 * of this same restore (a worker that lost its lock) finished first: done all the same.
 */
async function promote(plan: Plan, staging: string, now: () => Date): Promise<boolean> {
  const { pg, q, input, marker, archive } = plan;
  return withAdminDb(pg, q, async (db) => {
    await lockRestoreTarget(db, input.into);
    const existing = await databaseInfo(db, input.into);
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
}

/** Drops a staging database this attempt created; a failure to is logged, never thrown over the real error. */
async function dropStaging(plan: Plan, staging: string, log: Logger): Promise<void> {
  await withAdminDb(plan.pg, plan.q, (db) => dropDatabase(db, staging)).catch((err: unknown) =>
    log.error({ err: errorMessage(err), staging }, 'could not drop the unfinished restore; drop it by hand'),
  );
}

function result(plan: Plan, durationMs: number, streamed: Streamed): RestoreResult {
  const { archive } = plan;
  return {
    database: plan.input.into,
    owner: plan.owner,
    backupId: archive.backupId,
    sourceDatabase: archive.sourceDatabase,
    archiveKey: archive.key,
    bytes: streamed.bytes,
    uncompressedBytes: streamed.uncompressedBytes,
    sha256: streamed.sha256 || (archive.manifest?.archive.sha256 ?? ''),
    checkedAgainstManifest: archive.manifest !== undefined,
    warnings: plan.warnings,
    extensions: [],
    durationMs,
    ...(plan.globals ? { globals: plan.globals } : {}),
  };
}

function explainRestoreFailure(
  err: unknown,
  child: Child | undefined,
  status: { code: number | null; signal: NodeJS.Signals | null } | undefined,
  signal: AbortSignal,
  { input: { into, noOwner }, archive, where }: Pick<Plan, 'input' | 'archive' | 'where'>,
  session?: string,
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
  const corrupt = asCorruptArchive(err, archive.manifest, where);
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
        : /permission denied to create extension/.test(stderr)
          ? "\nOnly a superuser can create that extension, and this backup's manifest does not list its " +
            'extensions (made before pgshelf recorded them, or no manifest): restore as a superuser ' +
            '(POSTGRES_USER), or restore a newer backup, whose extensions are created as POSTGRES_ADMIN_USER'
          : '';
    const which = session ? `\n(psql ${session})` : '';
    return new RestoreFailedError(`psql ${describeExit(status)}:\n${stderr}${which}${hint}`, { cause: err });
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
