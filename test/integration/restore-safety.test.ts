import { existsSync } from 'node:fs';
import { chmod, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import {
  ChecksumMismatchError,
  CorruptArchiveError,
  UnsafeArchiveError,
  VersionMismatchError,
} from '../../src/errors.js';
import { createBackupJob, type BackupResult } from '../../src/jobs/backup.js';
import { silentLogger } from '../../src/logger.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { pgEnv, tempDir, testConfig } from '../helpers/env.js';
import { useCleanup } from '../helpers/lifecycle.js';
import {
  createDatabase,
  createSampleSchema,
  dropDatabase,
  snapshotDatabase,
  uniqueName,
  withClient,
} from '../helpers/pg.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { noRestoreLeftovers } from '../helpers/restore.js';

const defer = useCleanup();

interface SafetyFixture {
  source: string;
  env: Env;
  storage: Storage;
  backup: BackupResult;
  dir: string;
  sql: string;
}

/** A sample database with routines whose bodies hold COMMIT, backslashes and dollar quotes, and its backup. */
async function fixture(): Promise<SafetyFixture> {
  const source = uniqueName();
  await createDatabase(source);
  defer(() => dropDatabase(source), { keepOnFailure: true });
  await createSampleSchema(source, 50);
  await withClient(source, (c) =>
    c.query(`
      CREATE TABLE app.log (id int, v text);
      INSERT INTO app.log VALUES (1, E'back\\\\slash \\\\! id'), (2, 'it''s $$ -- /* COMMIT;');
      CREATE PROCEDURE app.batch() LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO app.log VALUES (3, 'x'); COMMIT; ROLLBACK; END $$;
      CREATE FUNCTION app.shout() RETURNS text LANGUAGE sql AS $body$ SELECT 'COMMIT; \\! id' $body$;
      CREATE FUNCTION app.atomic() RETURNS int LANGUAGE sql
        BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 ELSE 3 END; END;
      CREATE PROCEDURE app.atomic_p() LANGUAGE sql BEGIN ATOMIC INSERT INTO app.log VALUES (4, 'y'); END;
      COMMENT ON TABLE app.log IS E'a \\\\ backslash, a ''quote'' and /* not a comment';
      SELECT lo_from_bytea(0, convert_to('a large object, restored inside pg_dump''s BEGIN/COMMIT block', 'UTF8'));
      CREATE VIEW app.slices AS SELECT (ARRAY[1,2,3])[1:2] AS s, 'x\\y'::text AS t, 1.5e3 AS f;
    `),
  );
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const env = { ...pgEnv(source), PGSHELF_STORAGE: dir };
  const config = testConfig(env);
  const storage = createStorage(config.storage);
  const backup = await createBackupJob({ config, storage, logger: silentLogger() })({}, ctx());
  const sql = gunzipSync(await readFile(backup.archiveLocation)).toString('utf8');
  return { source, env, storage, backup, dir, sql };
}

async function roleExists(name: string): Promise<boolean> {
  return withClient(
    'postgres',
    async (c) => (await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).rowCount === 1,
  );
}

describe('a restore runs only SQL', () => {
  it("restores pg_dump's own output of routines with COMMIT, backslashes and dollar quotes unchanged", async () => {
    const f = await fixture();
    // pg_dump 15 wrote these, and none of them is a top-level statement start or a meta-command.
    expect(f.sql).toMatch(/^\\restrict /m);
    expect(f.sql).toContain('BEGIN ATOMIC');
    expect(f.sql).toMatch(/COMMIT; ROLLBACK; END \$\$;/);
    expect(f.sql).toMatch(/^BEGIN;\n\nSELECT pg_catalog\.lo_open/m);
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    await jobs(f.env).restore({ into }, ctx());
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(f.source));
    const rows = await withClient(
      into,
      async (c) => (await c.query<{ id: number; v: string }>('SELECT id, v FROM app.log ORDER BY id')).rows,
    );
    const objects = await withClient(
      into,
      async (c) =>
        (
          await c.query<{ t: string }>(
            `SELECT convert_from(lo_get(oid), 'UTF8') AS t FROM pg_catalog.pg_largeobject_metadata`,
          )
        ).rows,
    );
    expect(objects).toEqual([{ t: "a large object, restored inside pg_dump's BEGIN/COMMIT block" }]);
    expect(rows).toEqual([
      { id: 1, v: 'back\\slash \\! id' },
      { id: 2, v: "it's $$ -- /* COMMIT;" },
    ]);
  });

  const marker = (dir: string): string => path.join(dir, 'pwned');

  it.each([
    ['at the top of the file', (sql: string, m: string) => `\\! touch ${m}\n${sql}`, 1],
    [
      'mid-line after a statement',
      (sql: string, m: string) =>
        sql.replace('SET lock_timeout = 0;', `SET lock_timeout = 0; \\! touch ${m}`),
      -1,
    ],
  ])('refuses a meta-command %s before psql sees it', async (_where, inject, line) => {
    const f = await fixture();
    const sql = inject(f.sql, marker(f.dir));
    const expectedLine = line > 0 ? line : sql.split('\n').findIndex((l) => l.includes('\\! touch')) + 1;
    await writeFile(path.join(f.dir, 'evil.sql.gz'), gzipSync(sql));
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const attempt = jobs(f.env).restore({ into, key: 'evil.sql.gz' }, ctx());
    await expect(attempt).rejects.toThrow(UnsafeArchiveError);
    await expect(attempt).rejects.toThrow(new RegExp(`^line ${expectedLine} of the archive `));
    expect(existsSync(marker(f.dir))).toBe(false);
    await noRestoreLeftovers(into);
  });

  it('refuses a meta-command in an archive whose manifest has another SHA-256, before the checksum is known', async () => {
    const f = await fixture();
    await writeFile(f.backup.archiveLocation, gzipSync(`\\! touch ${marker(f.dir)}\n${f.sql}`));
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const attempt = jobs(f.env).restore({ into }, ctx());
    await expect(attempt).rejects.toSatisfy(
      (e) => e instanceof UnsafeArchiveError || e instanceof ChecksumMismatchError,
    );
    expect(existsSync(marker(f.dir))).toBe(false);
    await noRestoreLeftovers(into);
  });

  it.each([
    ['CREATE ROLE', (role: string) => `COMMIT; CREATE ROLE ${role};`],
    ['ALTER ROLE', (role: string) => `COMMIT; ALTER ROLE ${role} LOGIN CREATEDB;`],
  ])('refuses COMMIT; %s, and the role is untouched afterwards', async (_what, statement) => {
    const f = await fixture();
    const role = uniqueName('pgshelf_role');
    const existing = uniqueName('pgshelf_role');
    await withClient('postgres', (c) => c.query(`CREATE ROLE ${existing} NOLOGIN`));
    defer(() => withClient('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${existing}`)));
    defer(() => withClient('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${role}`)));
    const at = f.sql.indexOf('CREATE TABLE app.users');
    const evil =
      f.sql.slice(0, at) + statement(_what === 'CREATE ROLE' ? role : existing) + '\n' + f.sql.slice(at);
    const line = evil.slice(0, at).split('\n').length;
    await writeFile(path.join(f.dir, 'evil.sql.gz'), gzipSync(evil));
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const attempt = jobs(f.env).restore({ into, key: 'evil.sql.gz' }, ctx());
    await expect(attempt).rejects.toThrow(UnsafeArchiveError);
    await expect(attempt).rejects.toThrow(
      new RegExp(`^line ${line} of the archive starts a COMMIT statement`),
    );
    expect(await roleExists(role)).toBe(false);
    const [after] = await withClient(
      'postgres',
      async (c) =>
        (
          await c.query<{ l: boolean; d: boolean }>(
            'SELECT rolcanlogin AS l, rolcreatedb AS d FROM pg_roles WHERE rolname = $1',
            [existing],
          )
        ).rows,
    );
    expect(after).toEqual({ l: false, d: false });
    await noRestoreLeftovers(into);
  });
});

describe('client tools', () => {
  it('refuses a psql too old for \\restrict, naming its version and the one to install', async () => {
    const f = await fixture();
    const bin = await tempDir();
    defer(() => rm(bin, { recursive: true, force: true }));
    await writeFile(path.join(bin, 'psql'), "#!/bin/sh\necho 'psql (PostgreSQL) 15.13'\n");
    await chmod(path.join(bin, 'psql'), 0o755);
    await symlink('/usr/lib/postgresql/15/bin/createdb', path.join(bin, 'createdb'));
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const attempt = jobs({ ...f.env, PGSHELF_PG_BIN: bin }).restore({ into }, ctx());
    await expect(attempt).rejects.toThrow(VersionMismatchError);
    await expect(attempt).rejects.toThrow(/is psql 15\.13, which cannot take the \\restrict line/);
    await expect(attempt).rejects.toThrow(/needs psql 15\.14 or newer/);
    await noRestoreLeftovers(into);
  });
});

describe('nothing unverified is applied', () => {
  it('checks the stored size against the manifest before reading', async () => {
    const f = await fixture();
    const bytes = await readFile(f.backup.archiveLocation);
    await writeFile(f.backup.archiveLocation, Buffer.concat([bytes, gzipSync('SELECT 1;\n')]));
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const attempt = jobs(f.env).restore({ into }, ctx());
    await expect(attempt).rejects.toThrow(ChecksumMismatchError);
    await expect(attempt).rejects.toThrow(
      new RegExp(
        `is too long: ${bytes.length + gzipSync('SELECT 1;\n').length} bytes in storage, the manifest says ${bytes.length}`,
      ),
    );
    await noRestoreLeftovers(into);
  });

  it('with verifyFirst, reads the whole archive and refuses a changed one before any SQL is sent', async () => {
    const f = await fixture();
    const bytes = await readFile(f.backup.archiveLocation);
    bytes[5]! ^= 0x01; // gzip MTIME: same size, gunzips cleanly, another SHA-256
    await writeFile(f.backup.archiveLocation, bytes);
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const attempt = jobs(f.env).restore({ into, verifyFirst: true }, ctx());
    await expect(attempt).rejects.toThrow(ChecksumMismatchError);
    // The same message as the streaming check and verify (one checkAgainstManifest).
    await expect(attempt).rejects.toThrow(
      /does not match its manifest: SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64} \(\d+ bytes\)/,
    );
    await noRestoreLeftovers(into);
  });

  it('verifies a --key archive first by default: a dump cut short never reaches psql', async () => {
    const f = await fixture();
    const cut = f.sql.slice(0, f.sql.indexOf('COPY app.log'));
    await writeFile(path.join(f.dir, 'cut.sql.gz'), gzipSync(cut));
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const attempt = jobs(f.env).restore({ into, key: 'cut.sql.gz' }, ctx());
    await expect(attempt).rejects.toThrow(CorruptArchiveError);
    await expect(attempt).rejects.toThrow(/ends without pg_dump's .* line: the dump is incomplete/);
    await noRestoreLeftovers(into);
  });
});

describe('row data in errors', () => {
  it.each([
    [
      'a value of the wrong type',
      '1\tsk_live_SECRET_1\nnot_a_number_SECRET_2\tsk_live_SECRET_3\n',
      /invalid input syntax/,
    ],
    [
      'a duplicate key',
      '1\tsk_live_SECRET_1\n2\tsk_live_SECRET_1\n',
      /duplicate key value violates unique constraint/,
    ],
  ])('a restore failing on %s names table and line, not the row', async (_what, rows, reason) => {
    const f = await fixture();
    const sql =
      'CREATE TABLE public.secrets (id integer, token text UNIQUE);\n' +
      `COPY public.secrets (id, token) FROM stdin;\n${rows}\\.\n\n-- PostgreSQL database dump complete\n`;
    await writeFile(path.join(f.dir, 'rows.sql.gz'), gzipSync(sql));
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const attempt = jobs(f.env).restore({ into, key: 'rows.sql.gz' }, ctx());
    await expect(attempt).rejects.toThrow(reason);
    await expect(attempt).rejects.toThrow(/COPY secrets, line 2/);
    await expect(attempt).rejects.not.toThrow(/SECRET/);
    await noRestoreLeftovers(into);
  });
});
