/** Database-level operations for restores, run as POSTGRES_ADMIN_USER on the maintenance database. */
import pg from 'pg';
import type { PgSettings } from '../config/index.js';
import { RestoreFailedError } from '../errors.js';
import { describeExit, spawnChild } from './child.js';
import { childEnv, connectionArgs, Db, quoteIdent, type QueryOptions } from './connection.js';
import type { ToolOptions } from './psql.js';

/** Connects as the admin role to `postgres`, or to `template1` where there is no `postgres` database. */
export async function withAdminDb<T>(
  settings: PgSettings,
  options: QueryOptions,
  fn: (db: Db) => Promise<T>,
): Promise<T> {
  let db: Db;
  try {
    db = await Db.connect(settings, { ...options, role: 'admin', database: 'postgres' });
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err;
    db = await Db.connect(settings, { ...options, role: 'admin', database: 'template1' });
  }
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

export async function databaseInfo(
  db: Db,
  name: string,
): Promise<{ owner: string; comment: string | null } | undefined> {
  const [row] = await db.query<{ owner: string; comment: string | null }>(
    `SELECT pg_get_userbyid(d.datdba) AS owner, shobj_description(d.oid, 'pg_database') AS comment
     FROM pg_database d WHERE d.datname = $1`,
    [name],
  );
  return row;
}

export async function dropDatabase(db: Db, name: string): Promise<void> {
  // FORCE ends sessions still attached (a psql left behind by a killed worker).
  await db.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
}

export async function renameDatabase(db: Db, from: string, to: string): Promise<void> {
  await db.query(`ALTER DATABASE ${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`);
}

export async function commentOnDatabase(db: Db, name: string, comment: string): Promise<void> {
  // COMMENT takes a literal, not a parameter. The driver's escaping writes E'...' when there is a backslash, so the
  // literal means the same whatever standard_conforming_strings says.
  await db.query(`COMMENT ON DATABASE ${quoteIdent(name)} IS ${pg.escapeLiteral(comment)}`);
}

/** The server's version as a number (150004 for 15.4). */
export async function serverVersionNum(db: Db): Promise<number> {
  const [row] = await db.query<{ num: string }>(`SELECT current_setting('server_version_num') AS num`);
  return Number(row?.num);
}

/**
 * Creates database `name` with the createdb at `createdb`, as POSTGRES_ADMIN_USER, owned by `owner` (default
 * POSTGRES_USER), from
 * template0 (nothing in it), with `comment` as its description.
 */
export async function createDatabase(
  createdb: string,
  settings: PgSettings,
  tool: ToolOptions,
  name: string,
  comment: string,
  owner = settings.user,
): Promise<void> {
  const args = [...connectionArgs(settings, 'admin'), '--no-password', '--template=template0'];
  if (owner !== undefined) args.push(`--owner=${owner}`);
  args.push('--', name, comment);
  const created = spawnChild(createdb, args, {
    env: childEnv(tool.env, settings, 'admin'),
    logger: tool.logger,
    echo: tool.echo,
    stdout: 'ignore',
  });
  const status = await created.exited;
  if (status.code !== 0) {
    throw new RestoreFailedError(
      `createdb ${describeExit(status)}: ${created.stderr.text(5)}. Check that POSTGRES_ADMIN_USER ` +
        `(${settings.adminUser ?? 'default'}) may create databases`,
    );
  }
}
