/** SQL that keeps concurrent restores apart: advisory locks per target name and per staging database. */
import type { PgSettings } from '../config/index.js';
import { withAdminDb } from './admin.js';
import { quoteIdent, type Db, type QueryOptions } from './connection.js';

/**
 * Takes the session-level advisory lock for restores into `target` (released when `db` closes). Waits at most a
 * minute: holders keep it only while checking, creating or renaming a database.
 */
export async function lockRestoreTarget(db: Db, target: string): Promise<void> {
  await db.query(`SET lock_timeout = '60s'`);
  await db.query(`SELECT pg_advisory_lock(hashtext('pgshelf restore'), hashtext($1))`, [target]);
}

/** Staging databases whose comment starts with `marker` (a restore's nonce): its attempts' databases. */
export async function stagingDatabases(db: Db, marker: string): Promise<string[]> {
  const rows = await db.query<{ name: string }>(
    `SELECT datname AS name FROM pg_database
     WHERE datname LIKE 'pgshelf\\_restore\\_%' AND starts_with(shobj_description(oid, 'pg_database'), $1)`,
    [marker],
  );
  return rows.map((r) => r.name);
}

/** The lock an attempt holds on its staging database for as long as it runs (its connection's life). */
export async function claimStaging(db: Db, staging: string): Promise<void> {
  await db.query(`SELECT pg_advisory_lock(hashtext('pgshelf staging'), hashtext($1))`, [staging]);
}

/**
 * Drops a staging database whose attempt is gone (its claim is free: the worker died), ending an orphaned psql
 * still attached to it. A running attempt's database is left alone; returns whether it was dropped.
 */
export async function dropIfAbandoned(db: Db, staging: string): Promise<boolean> {
  const [row] = await db.query<{ free: boolean }>(
    `SELECT pg_try_advisory_lock(hashtext('pgshelf staging'), hashtext($1)) AS free`,
    [staging],
  );
  if (!row?.free) return false;
  try {
    await db.query(`DROP DATABASE IF EXISTS ${quoteIdent(staging)} WITH (FORCE)`);
  } finally {
    await db.query(`SELECT pg_advisory_unlock(hashtext('pgshelf staging'), hashtext($1))`, [staging]);
  }
  return true;
}

/** Which of SUPERUSER and CREATEROLE `role` has (through none of its memberships: these are not inherited). */
export async function rolePowers(db: Db, role: string): Promise<string[]> {
  const [row] = await db.query<{ rolsuper: boolean; rolcreaterole: boolean }>(
    'SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = $1',
    [role],
  );
  return [...(row?.rolsuper ? ['SUPERUSER'] : []), ...(row?.rolcreaterole ? ['CREATEROLE'] : [])];
}

/**
 * Runs `take` on an admin connection and keeps that connection (and so its session locks) open until release.
 */
export async function holdWhileRunning(
  pg: PgSettings,
  q: QueryOptions,
  take: (db: Db) => Promise<void>,
): Promise<{ release(): Promise<void> }> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let taken!: () => void;
  const ready = new Promise<void>((resolve) => (taken = resolve));
  const held = withAdminDb(pg, q, async (db) => {
    await take(db);
    taken();
    await released;
  });
  held.catch(() => undefined); // a lost connection only frees the claim early
  await Promise.race([ready, held]);
  return {
    release: async () => {
      release();
      await held.catch(() => undefined);
    },
  };
}
