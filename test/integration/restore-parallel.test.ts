import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { RestoreFailedError } from '../../src/errors.js';
import type { BackupResult } from '../../src/jobs/backup.js';
import { pgEnv, tempDir } from '../helpers/env.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { useCleanup } from '../helpers/lifecycle.js';
import {
  createDatabase,
  createSampleSchema,
  dropDatabase,
  snapshotDatabase,
  uniqueName,
  withClient,
} from '../helpers/pg.js';
import { noRestoreLeftovers, restoreByHand } from '../helpers/restore.js';

const defer = useCleanup();

function dropLater(name: string): void {
  defer(() => dropDatabase(name), { keepOnFailure: true });
}

/** Large objects: oid, size and md5 of each. */
async function largeObjects(database: string): Promise<string[]> {
  return withClient(database, async (c) => {
    const r = await c.query<{ x: string }>(
      `SELECT oid::text || ' ' || length(lo_get(oid)) || ' ' || md5(lo_get(oid)) AS x
       FROM pg_largeobject_metadata ORDER BY oid`,
    );
    return r.rows.map((row) => row.x);
  });
}

/** Rows in physical order of one table: a restore on several sessions loads them side by side. */
async function everything(database: string) {
  return { ...(await snapshotDatabase(database)), largeObjects: await largeObjects(database) };
}

let source: string;
let env: Env;
let backup: BackupResult;
let dir: string;
let expected: Awaited<ReturnType<typeof everything>>;

beforeAll(async () => {
  source = uniqueName('pgshelf_par');
  await createDatabase(source);
  dir = await tempDir();
  await createSampleSchema(source, 500);
  await withClient(source, async (c) => {
    await c.query(`
      -- A table large enough to be cut over several sessions, with an FK, a unique and a plain index.
      CREATE TABLE public.many (id bigint PRIMARY KEY, code text NOT NULL, user_id integer REFERENCES app.users(id),
        body text);
      INSERT INTO public.many SELECT i, 'c' || i, 1 + i % 500,
        CASE i % 4 WHEN 0 THEN E'tab\\there\\nnewline \\\\ backslash' WHEN 1 THEN E'\\\\.'
          WHEN 2 THEN NULL ELSE repeat('é', i % 300) END
        FROM generate_series(1, 200000) i;
      CREATE UNIQUE INDEX many_code ON public.many (code);
      CREATE INDEX many_user ON public.many (user_id, id);
      -- A row of 64 MiB: one COPY line, streamed through, never held.
      CREATE TABLE public.huge (id int PRIMARY KEY, v text);
      INSERT INTO public.huge VALUES (1, repeat('0123456789abcdef', 4 * 1024 * 1024)), (2, 'small');
      SELECT lo_from_bytea(0, decode(repeat('00ff', 200000), 'hex'));
      SELECT lo_from_bytea(0, convert_to('a small large object', 'UTF8'));
      SELECT setval('app.ticket_seq', 4242);
    `);
  });
  env = { ...pgEnv(source), PGSHELF_STORAGE: dir };
  backup = await jobs(env).backup({}, ctx());
  expected = await everything(source);
}, 300_000);

afterAll(async () => {
  await dropDatabase(source);
  await rm(dir, { recursive: true, force: true });
});

describe('restore on several sessions (PGSHELF_RESTORE_JOBS)', () => {
  it.each([1, 2, 4])(
    'with %i sessions gives the source again: rows, sequences, indexes, constraints, FKs, triggers, large objects',
    async (n) => {
      const into = uniqueName('pgshelf_par_into');
      dropLater(into);
      const result = await jobs({ ...env, PGSHELF_RESTORE_JOBS: String(n) }).restore({ into }, ctx());
      expect(result).toMatchObject({ database: into, sha256: backup.sha256, checkedAgainstManifest: true });
      const restored = await everything(into);
      expect(restored).toEqual(expected);
      expect(restored.tables['public.many']!.rows).toBe(200000);
      expect(restored.largeObjects).toHaveLength(2);
      await dropDatabase(into);
    },
    300_000,
  );

  it('leaves the archive restorable by hand with gunzip | psql', async () => {
    const into = uniqueName('pgshelf_par_hand');
    dropLater(into);
    await restoreByHand(backup.archiveLocation, into);
    expect(await everything(into)).toEqual(expected);
    await dropDatabase(into);
  }, 300_000);

  it("replays the dump's session settings on every session: a LATIN1 archive loads the same rows", async () => {
    const small = uniqueName('pgshelf_par_latin1');
    await createDatabase(small);
    dropLater(small);
    await withClient(small, (c) =>
      c.query(`CREATE TABLE public.words (id int PRIMARY KEY, w text);
        INSERT INTO public.words SELECT i, repeat('été über façade ', 1 + i % 20) FROM generate_series(1, 100000) i`),
    );
    const smallEnv = { ...pgEnv(small), PGSHELF_STORAGE: dir };
    const made = await jobs(smallEnv).backup({}, ctx());
    const sql = gunzipSync(await readFile(made.archiveLocation)).toString('utf8');
    expect(sql).toContain("SET client_encoding = 'UTF8';");
    const latin1 = Buffer.from(
      sql.replace("SET client_encoding = 'UTF8';", "SET client_encoding = 'LATIN1';"),
      'latin1',
    );
    await writeFile(path.join(dir, 'latin1.sql.gz'), gzipSync(latin1));
    const into = uniqueName('pgshelf_par_into');
    dropLater(into);
    await jobs({ ...smallEnv, PGSHELF_RESTORE_JOBS: '4' }).restore({ into, key: 'latin1.sql.gz' }, ctx());
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(small));
    await dropDatabase(into);
  }, 300_000);

  it('fails on a bad row deep in a table loaded by several sessions, and leaves no database', async () => {
    const sql = gunzipSync(await readFile(backup.archiveLocation)).toString('utf8');
    const at = sql.indexOf('\n150000\tc150000\t');
    expect(at).toBeGreaterThan(0);
    const broken = `${sql.slice(0, at)}\nnot-a-number${sql.slice(at + '\n150000'.length)}`;
    await writeFile(path.join(dir, 'bad-row.sql.gz'), gzipSync(broken));
    const into = uniqueName('pgshelf_par_into');
    dropLater(into);
    const attempt = jobs({ ...env, PGSHELF_RESTORE_JOBS: '4' }).restore(
      { into, key: 'bad-row.sql.gz' },
      ctx(),
    );
    await expect(attempt).rejects.toThrow(RestoreFailedError);
    await expect(attempt).rejects.toThrow(
      /psql exited with code 3:[\s\S]*invalid input syntax for type bigint[\s\S]*COPY many[\s\S]*\(psql session \d of 4, loading rows of the COPY of line \d+ of the archive \(COPY public\.many/,
    );
    await noRestoreLeftovers(into);
  }, 300_000);

  it('fails when an index build side by side fails (a duplicate key), and leaves no database', async () => {
    const sql = gunzipSync(await readFile(backup.archiveLocation)).toString('utf8');
    const at = sql.indexOf('\n150000\tc150000\t');
    const broken = `${sql.slice(0, at)}\n150001${sql.slice(at + '\n150000'.length)}`;
    await writeFile(path.join(dir, 'duplicate.sql.gz'), gzipSync(broken));
    const into = uniqueName('pgshelf_par_into');
    dropLater(into);
    const attempt = jobs({ ...env, PGSHELF_RESTORE_JOBS: '2' }).restore(
      { into, key: 'duplicate.sql.gz' },
      ctx(),
    );
    await expect(attempt).rejects.toThrow(
      /psql exited with code 3:[\s\S]*could not create unique index "many_pkey"[\s\S]*building the index of line \d+ of the archive/,
    );
    await noRestoreLeftovers(into);
  }, 300_000);
});
