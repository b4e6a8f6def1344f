/** A server's databases (for discovery) and its roles and tablespaces (for applying globals), and applying them. */
import type { PgSettings } from '../config/index.js';
import { RestoreFailedError, errorMessage } from '../errors.js';
import { withAdminDb } from './admin.js';
import { Db, type QueryOptions } from './connection.js';
import { describeConnectError } from './server.js';

/**
 * The databases a `servers:` entry may back up: every database but templates and those that take no
 * connections (datallowconn = false), by name. Connects as the user to `postgres` (or `template1`).
 */
export async function listDatabases(settings: PgSettings, options: QueryOptions): Promise<string[]> {
  let db: Db;
  try {
    db = await Db.connect(settings, { ...options, database: 'postgres' }).catch((err: unknown) => {
      if ((err as { code?: string }).code !== '3D000') throw err;
      return Db.connect(settings, { ...options, database: 'template1' });
    });
  } catch (err) {
    throw describeConnectError(err, settings, 'postgres');
  }
  try {
    const rows = await db.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname',
    );
    return rows.map((r) => r.datname);
  } finally {
    await db.close();
  }
}

/** The roles and tablespaces a server has now. */
export async function serverGlobals(db: Db): Promise<{ roles: Set<string>; tablespaces: Set<string> }> {
  const roles = await db.query<{ name: string }>('SELECT rolname AS name FROM pg_roles');
  const tablespaces = await db.query<{ name: string }>('SELECT spcname AS name FROM pg_tablespace');
  return { roles: new Set(roles.map((r) => r.name)), tablespaces: new Set(tablespaces.map((r) => r.name)) };
}

/** A statement to run, and how DB_ECHO and errors may show it (passwords left out). */
export interface GlobalsSql {
  readonly sql: string;
  readonly shown: string;
  readonly line: number;
}

/**
 * Runs the role statements in one transaction (all or none), then the tablespace statements one by one (CREATE
 * TABLESPACE cannot run inside one), as POSTGRES_ADMIN_USER on the maintenance database. `plan` gets the server's
 * roles and tablespaces first, under the same connection, and says what to run (`dryRun`: and nothing runs).
 */
export async function applyGlobalsSql(
  settings: PgSettings,
  options: QueryOptions,
  plan: (now: { roles: Set<string>; tablespaces: Set<string> }) => {
    roles: readonly GlobalsSql[];
    tablespaces: readonly GlobalsSql[];
  },
  dryRun = false,
): Promise<void> {
  await withAdminDb(settings, options, async (db) => {
    const { roles, tablespaces } = plan(await serverGlobals(db));
    if (dryRun) return;
    const run = async (s: GlobalsSql): Promise<void> => {
      try {
        await db.statement(s.sql, s.shown);
      } catch (err) {
        throw new RestoreFailedError(
          `applying the globals failed at line ${s.line} (${s.shown.slice(0, 80)}): ${errorMessage(err)}` +
            (/tablespace/i.test(s.shown)
              ? ". A tablespace needs its directory on the new server: create it (owned by the server's OS user) first"
              : ''),
        );
      }
    };
    if (roles.length > 0) {
      await db.statement('BEGIN');
      try {
        for (const s of roles) await run(s);
        await db.statement('COMMIT');
      } catch (err) {
        await db.statement('ROLLBACK').catch(() => undefined);
        throw err;
      }
    }
    for (const s of tablespaces) await run(s);
  }).catch((err: unknown) => {
    if (err instanceof RestoreFailedError) throw err;
    throw describeConnectError(err, settings, 'postgres');
  });
}
