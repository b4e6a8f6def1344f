// Untrusted extensions (dblink, postgres_fdw) in a dump restored by a non-superuser owner: the restore creates them
// as POSTGRES_ADMIN_USER before the stream, which skips the dump's lines for them.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { RestoreFailedError } from '../../src/errors.js';
import { baseEnv, pgEnv, tempDir } from '../helpers/env.js';
import { useCleanup } from '../helpers/lifecycle.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { runCli } from '../helpers/cli.js';
import { createDatabase, dropDatabase, snapshotDatabase, uniqueName, withClient } from '../helpers/pg.js';

const defer = useCleanup();

/** A database owned by a non-superuser role, with dblink (public) and postgres_fdw (own schema) and a function using dblink. */
async function sourceWithExtensions(): Promise<{ source: string; owner: string; dir: string }> {
  const owner = uniqueName('pgshelf_owner');
  await withClient('postgres', (c) => c.query(`CREATE ROLE ${owner} LOGIN CREATEDB`));
  defer(() => withClient('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${owner}`)));
  const source = uniqueName();
  await createDatabase(source, owner);
  defer(() => dropDatabase(source), { keepOnFailure: true });
  await withClient(source, async (c) => {
    await c.query(`CREATE EXTENSION dblink`);
    await c.query(`CREATE SCHEMA fdw AUTHORIZATION ${owner}`);
    await c.query(`CREATE EXTENSION postgres_fdw WITH SCHEMA fdw`);
    await c.query(`SET ROLE ${owner}`);
    await c.query(`CREATE TABLE notes (id int PRIMARY KEY, body text)`);
    await c.query(`INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 250) i`);
    await c.query(
      `CREATE FUNCTION remote_ids(conn text) RETURNS SETOF int LANGUAGE sql
       AS $$ SELECT id FROM public.dblink(conn, 'SELECT id FROM notes') AS t(id int) $$`,
    );
    await c.query(`CREATE VIEW open_connections AS SELECT public.dblink_get_connections() AS names`);
  });
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  return { source, owner, dir };
}

const extensionsOf = (database: string): Promise<string[]> =>
  withClient(database, async (c) =>
    (
      await c.query<{ x: string }>(
        `SELECT e.extname || ' ' || n.nspname || ' ' || pg_get_userbyid(e.extowner) AS x FROM pg_extension e
         JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 1`,
      )
    ).rows.map((r) => r.x),
  );

describe('extensions only a superuser can create', () => {
  it('records them in the manifest, creates them as the admin, restores as the non-superuser owner', async () => {
    const { source, owner, dir } = await sourceWithExtensions();
    const base = { ...pgEnv(source), PGSHELF_STORAGE: dir };
    const backup = await jobs(base).backup({}, ctx());
    const manifest = JSON.parse(await readFile(backup.manifestLocation, 'utf8')) as { extensions: unknown };
    expect(manifest.extensions).toEqual([
      { name: 'dblink', schema: 'public' },
      { name: 'postgres_fdw', schema: 'fdw' },
    ]);

    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const env = { ...base, POSTGRES_USER: owner, POSTGRES_ADMIN_USER: 'postgres' };
    const cli = await runCli(['restore', '--into', into, '--in-process'], { ...baseEnv(), ...env });
    expect(cli.code).toBe(0);
    expect(cli.stderr).not.toMatch(/warning/);
    expect(cli.stdout).toMatch(`(owner ${owner})`);
    expect(cli.stdout.split('\n').filter((l) => l.startsWith('extension '))).toEqual([
      'extension dblink (schema public) created as POSTGRES_ADMIN_USER',
      'extension postgres_fdw (schema fdw) created as POSTGRES_ADMIN_USER',
    ]);

    expect(await extensionsOf(into)).toEqual([
      'dblink public postgres',
      'plpgsql pg_catalog postgres',
      'postgres_fdw fdw postgres',
    ]);
    const [a, b] = [await snapshotDatabase(into), await snapshotDatabase(source)];
    expect(a).toEqual(b);
    expect(a.tables['public.notes']?.rows).toBe(250);
    expect(a.functions.some((f) => f.startsWith('remote_ids(conn text)'))).toBe(true);
    const schemaOwner = await withClient(
      into,
      async (c) =>
        (
          await c.query<{ o: string }>(
            `SELECT nspowner::regrole::text AS o FROM pg_namespace WHERE nspname = 'fdw'`,
          )
        ).rows[0]?.o,
    );
    expect(schemaOwner).toBe(owner);
  });

  it('a manifest without the list (older pgshelf) streams as before: psql is refused, and the error says why', async () => {
    const { source, owner, dir } = await sourceWithExtensions();
    const base = { ...pgEnv(source), PGSHELF_STORAGE: dir };
    const backup = await jobs(base).backup({}, ctx());
    const manifest = JSON.parse(await readFile(backup.manifestLocation, 'utf8')) as Record<string, unknown>;
    delete manifest.extensions;
    await writeFile(backup.manifestLocation, JSON.stringify(manifest));
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const env = { ...base, POSTGRES_USER: owner, POSTGRES_ADMIN_USER: 'postgres' };
    const attempt = jobs(env).restore({ into }, ctx());
    await expect(attempt).rejects.toThrow(RestoreFailedError);
    await expect(attempt).rejects.toThrow(/permission denied to create extension "dblink"/);
    await expect(attempt).rejects.toThrow(/restore as a superuser/);
  });

  it('an admin that is not a superuser either: refused before any SQL of the archive runs, naming the extension', async () => {
    const { source, owner, dir } = await sourceWithExtensions();
    const base = { ...pgEnv(source), PGSHELF_STORAGE: dir };
    await jobs(base).backup({}, ctx());
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const env = { ...base, POSTGRES_USER: owner, POSTGRES_ADMIN_USER: owner };
    const attempt = jobs(env).restore({ into }, ctx());
    await expect(attempt).rejects.toThrow(
      /could not create extension "dblink" as POSTGRES_ADMIN_USER .*set POSTGRES_ADMIN_USER to a superuser/,
    );
    const left = await withClient(
      'postgres',
      async (c) =>
        (
          await c.query(
            `SELECT 1 FROM pg_database WHERE datname = $1 OR datname LIKE 'pgshelf_restore_%' AND pg_get_userbyid(datdba) = $2`,
            [into, owner],
          )
        ).rowCount,
    );
    expect(left).toBe(0);
  });
});
