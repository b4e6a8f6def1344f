import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { createDatabase, databaseExists, PG_HOST, PG_PORT, PG_USER, withClient } from './pg.js';

const execFileAsync = promisify(execFile);

/**
 * The manual procedure from the docs, run literally: createdb, then `gunzip -c archive | psql` (`zstd -dc` for a
 * `.zst` archive). The shell is the point here: this is what an operator types.
 */
export async function restoreByHand(archive: string, database: string): Promise<void> {
  await createDatabase(database);
  await execFileAsync(
    'bash',
    [
      '-o',
      'pipefail',
      '-c',
      `${archive.endsWith('.zst') ? 'zstd -dc' : 'gunzip -c'} "$1" | ` +
        'psql -X -q -v ON_ERROR_STOP=1 --host="$3" --port="$4" --username="$5" --dbname="$2" >/dev/null',
      'restore',
      archive,
      database,
      PG_HOST,
      String(PG_PORT),
      PG_USER,
    ],
    { maxBuffer: 16 << 20 },
  );
}

/** Runs one shell line as an operator types it (in `cwd` when given), against the test server. */
export async function shell(line: string, cwd?: string): Promise<void> {
  await execFileAsync('bash', ['-o', 'pipefail', '-c', line], {
    cwd,
    env: { ...process.env, PGHOST: PG_HOST, PGPORT: String(PG_PORT), PGUSER: PG_USER },
    maxBuffer: 16 << 20,
  });
}

/** Staging databases of restores into `into` still there (a staging database's comment names its target). */
export async function stagingFor(into: string): Promise<string[]> {
  return withClient('postgres', async (c) => {
    const r = await c.query<{ d: string }>(
      `SELECT datname AS d FROM pg_database
       WHERE datname LIKE 'pgshelf\\_restore\\_%' AND shobj_description(oid, 'pg_database') LIKE $1`,
      [`%into ${into}%`],
    );
    return r.rows.map((row) => row.d);
  });
}

/** No database of pgshelf's making is left: neither the target nor a staging database of a restore into it. */
export async function noRestoreLeftovers(into: string): Promise<void> {
  expect(await databaseExists(into)).toBe(false);
  // Other tests may be mid-restore; only staging databases commented with this target count.
  expect(await stagingFor(into)).toEqual([]);
}
