import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createDatabase, PG_HOST, PG_PORT, PG_USER } from './pg.js';

const execFileAsync = promisify(execFile);

/**
 * The manual procedure from the docs, run literally: createdb, then `gunzip -c archive | psql`. The shell is
 * the point here: this is what an operator types.
 */
export async function restoreByHand(archive: string, database: string): Promise<void> {
  await createDatabase(database);
  await execFileAsync(
    'bash',
    [
      '-o',
      'pipefail',
      '-c',
      'gunzip -c "$1" | psql -X -q -v ON_ERROR_STOP=1 --host="$3" --port="$4" --username="$5" --dbname="$2" >/dev/null',
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
