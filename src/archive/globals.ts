/**
 * A server's globals back on a server: find the globals backup of a slot, read and check the whole archive (size,
 * SHA-256, gunzip, pg_dumpall's completion line) before anything runs, read its SQL as pg_dumpall writes it
 * (globals-sql.ts), and create the roles and tablespaces the server does not have. Roles that exist are left as
 * they are, and reported. Runs as POSTGRES_ADMIN_USER.
 */
import { Writable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AgeSettings, PgSettings } from '../config/index.js';
import { CorruptArchiveError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Manifest, ManifestTrust } from '../catalog/manifest.js';
import { findGlobals, type PickedBackup, type SlotPick } from '../catalog/servers.js';
import { applyGlobalsSql } from '../postgres/globals.js';
import type { Storage } from '../storage/index.js';
import { decryptionFor } from './age.js';
import { archiveReadStages, asCorruptArchive, checkStoredSize, sqlGate } from './check.js';
import { DigestStream } from './digest.js';
import { parseGlobals, planGlobals, type GlobalsStatement } from './globals-sql.js';

/** Globals of thousands of roles stay far below this; it bounds memory against a planted archive. */
const MAX_GLOBALS_SQL = 64 * 1024 * 1024;

/** Which globals backup: of a slot, the newest at or before a time, the one of a database backup, or given. */
export type GlobalsPick = SlotPick & { readonly near?: Manifest; readonly picked?: PickedBackup };

export interface GlobalsRestoreResult {
  readonly backupId: string;
  /** The source server, `host:port`. */
  readonly server: string;
  readonly slot: string | null;
  readonly startedAt: string;
  readonly createdRoles: readonly string[];
  /** Roles the archive has that already existed: not altered. */
  readonly existingRoles: readonly string[];
  readonly createdTablespaces: readonly string[];
  readonly existingTablespaces: readonly string[];
  /** Statements run, and statements dropped because they concern an existing role or tablespace. */
  readonly statements: number;
  readonly skipped: number;
}

/** The whole SQL of a globals archive, read only once every check of the archive passed. */
export async function readGlobalsSql(
  storage: Storage,
  manifest: Manifest,
  age: AgeSettings,
  ctx: { readonly signal: AbortSignal; readonly logger: Logger },
): Promise<string> {
  const { signal } = ctx;
  const key = manifest.archive.key;
  const where = storage.locate(key);
  await checkStoredSize(storage, key, manifest);
  // Encrypted like every archive when PGSHELF_AGE_RECIPIENTS is set: opened with PGSHELF_AGE_IDENTITY_FILE.
  const keys = await decryptionFor(age, storage, { key, manifest }, ctx.logger, signal);
  const digest = new DigestStream({ highWaterMark: 1 << 20 });
  const chunks: Buffer[] = [];
  let size = 0;
  const collect = new Writable({
    write(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > MAX_GLOBALS_SQL) {
        cb(new CorruptArchiveError(`${where} holds more than ${MAX_GLOBALS_SQL} bytes of SQL: not globals`));
        return;
      }
      chunks.push(chunk);
      cb();
    },
  });
  try {
    await pipeline(
      await storage.openRead(key, { signal }),
      ...(archiveReadStages(manifest, where, digest, keys) as [Duplex]),
      sqlGate(manifest, where),
      collect,
      { signal },
    );
  } catch (err) {
    throw asCorruptArchive(err, manifest, where) ?? err;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** What DB_ECHO and error messages may show of a statement: never a password. */
function shown(s: GlobalsStatement): string {
  return s.sql.replace(/PASSWORD\s+'(?:[^']|'')*'/gi, "PASSWORD '***'");
}

/**
 * Applies the globals of server `source` picked by `pick` onto the server of `target` (its admin role): the roles
 * and tablespaces it does not have are created; existing ones are left alone and reported. `dryRun`: everything
 * but applying them (the archive read and checked, the target's roles compared).
 */
export async function restoreGlobals(
  deps: {
    readonly storage: Storage;
    readonly trust: ManifestTrust;
    readonly echo: boolean;
    readonly age: AgeSettings;
  },
  target: PgSettings,
  source: { readonly host: string; readonly port: number },
  pick: GlobalsPick,
  ctx: { readonly signal: AbortSignal; readonly logger: Logger },
  dryRun = false,
): Promise<GlobalsRestoreResult> {
  const { backup, manifest } = pick.picked ?? (await findGlobals(deps.storage, deps.trust, source, pick));
  const sql = await readGlobalsSql(deps.storage, manifest, deps.age, ctx);
  const statements = parseGlobals(sql);
  let plan: ReturnType<typeof planGlobals> | undefined;
  const q = { echo: deps.echo, logger: ctx.logger };
  await applyGlobalsSql(
    target,
    q,
    (now) => {
      plan = planGlobals(statements, now.roles, now.tablespaces);
      const as = (s: GlobalsStatement) => ({ sql: s.sql, shown: shown(s), line: s.line });
      return { roles: plan.roleStatements.map(as), tablespaces: plan.tablespaceStatements.map(as) };
    },
    dryRun,
  );
  const p = plan!;
  const result: GlobalsRestoreResult = {
    backupId: backup.id,
    server: `${source.host}:${source.port}`,
    slot: manifest.slot ?? null,
    startedAt: manifest.startedAt,
    createdRoles: p.createRoles,
    existingRoles: p.existingRoles,
    createdTablespaces: p.createTablespaces,
    existingTablespaces: p.existingTablespaces,
    statements: p.roleStatements.filter((s) => s.kind !== 'set').length + p.tablespaceStatements.length,
    skipped: p.skipped,
  };
  if (dryRun) return result;
  ctx.logger.info(
    {
      backup: result.backupId,
      server: result.server,
      created: result.createdRoles.length,
      existing: result.existingRoles,
      tablespaces: result.createdTablespaces,
    },
    'globals applied',
  );
  return result;
}
