/** SQL that keeps concurrent restores apart: an advisory lock per target name, and finding a restore's leftovers. */
import { quoteIdent, type Db } from './connection.js';

/**
 * Takes the session-level advisory lock for restores into `target` (released when `db` closes). Waits at most a
 * minute: holders keep it only while checking, creating or renaming a database.
 */
export async function lockRestoreTarget(db: Db, target: string): Promise<void> {
  await db.query(`SET lock_timeout = '60s'`);
  await db.query(`SELECT pg_advisory_lock(hashtext('pgshelf restore'), hashtext($1))`, [target]);
}

/** Staging databases whose comment starts with `marker` (a restore's nonce): leftovers of its earlier attempts. */
export async function stagingDatabases(db: Db, marker: string): Promise<string[]> {
  const rows = await db.query<{ name: string }>(
    `SELECT datname AS name FROM pg_database
     WHERE datname LIKE 'pgshelf\\_restore\\_%' AND starts_with(shobj_description(oid, 'pg_database'), $1)`,
    [marker],
  );
  return rows.map((r) => r.name);
}

/** Drops a database nobody is connected to; false when someone is (an attempt that may still be running). */
export async function dropIfIdle(db: Db, name: string): Promise<boolean> {
  try {
    await db.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)}`);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === '55006') return false;
    throw err;
  }
}
