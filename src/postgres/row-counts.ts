/** Row counts of restored tables, for a drill to compare with the counts its backup recorded. */
import type { Db } from './connection.js';

/** Table names as pg_dump prints them in COPY lines: identifiers, plain or double-quoted, joined by dots. */
const QUALIFIED_NAME =
  /^(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)(?:\.(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*))*$/;

/**
 * Each table's row count (its own rows, not its children's), or null for a table that is missing or whose name
 * is not one pg_dump would print (the names come from a manifest: never SQL of anyone's choosing).
 */
export async function countRows(db: Db, tables: readonly string[]): Promise<Map<string, number | null>> {
  const counts = new Map<string, number | null>();
  for (const table of tables) {
    if (!QUALIFIED_NAME.test(table)) {
      counts.set(table, null);
      continue;
    }
    const [row] = await db
      .query<{ n: string }>(`SELECT count(*)::text AS n FROM ONLY ${table}`)
      .catch(() => [] as { n: string }[]);
    counts.set(table, row ? Number(row.n) : null);
  }
  return counts;
}
