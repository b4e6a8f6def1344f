import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { chmod, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { sampleDatabase, useCleanup } from '../helpers/lifecycle.js';
import {
  AbortedError,
  DatabaseNotFoundError,
  DumpFailedError,
  StorageError,
  VersionMismatchError,
} from '../../src/errors.js';
import { createBackupJob } from '../../src/jobs/backup.js';
import { silentLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import type { Config, Env } from '../../src/config/index.js';
import { pgEnv, s3Env, tempDir, testConfig } from '../helpers/env.js';
import { dumpIsWaiting, lockTable, uniqueName, withClient } from '../helpers/pg.js';
import { waitFor } from '../helpers/cli.js';
import { createBucket, testS3Client } from '../helpers/s3.js';
import { ctx } from '../helpers/jobs.js';

const defer = useCleanup();

const sourceDatabase = (): Promise<string> => sampleDatabase(defer, 50);

async function folderConfig(env: Env): Promise<{ config: Config; dir: string }> {
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  return { config: testConfig({ PGSHELF_STORAGE: `file://${dir}`, ...env }), dir };
}

/** Every file under dir, including hidden temp files, but not the record of the last attempt. */
async function allFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile() && e.name !== '.pgshelf-last-attempt.json')
    .map((e) => e.name);
}

/** A directory with a fake `pg_dump` (a shell script), for failures real pg_dump cannot be made to show. */
async function fakePgDump(script: string): Promise<string> {
  const dir = await tempDir('pgshelf-fakebin-');
  defer(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'pg_dump');
  await writeFile(file, `#!/bin/sh\n${script}\n`);
  await chmod(file, 0o755);
  return dir;
}

describe('a failed backup leaves nothing behind', () => {
  it('reports pg_dump errors (permission denied) and removes the partial file', async () => {
    const db = await sourceDatabase();
    const role = uniqueName('pgshelf_role');
    await withClient(db, async (c) => {
      await c.query(`CREATE ROLE ${role} LOGIN`);
      await c.query(`GRANT USAGE ON SCHEMA app TO ${role}`);
    });
    defer(() => withClient('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${role}`)).then(() => undefined));
    defer(() => withClient(db, (c) => c.query(`DROP OWNED BY ${role}`)).then(() => undefined));
    const { config, dir } = await folderConfig({ ...pgEnv(db), POSTGRES_USER: role });
    const run = createBackupJob({ config, storage: createStorage(config.storage), logger: silentLogger() });

    const backingUp = run({}, ctx());
    await expect(backingUp).rejects.toThrow(DumpFailedError);
    await expect(backingUp).rejects.toThrow(
      /pg_dump exited with code 1:[\s\S]*permission denied for (table|schema)/,
    );
    expect(await allFiles(dir)).toEqual([]);
    // The failed attempt is recorded, so that prune deletes nothing until a backup succeeds again.
    const attempt = JSON.parse(await readFile(path.join(dir, db, '.pgshelf-last-attempt.json'), 'utf8')) as {
      status: string;
      error: string;
    };
    expect(attempt.status).toBe('failed');
    expect(attempt.error).toMatch(/permission denied/);
  });

  it('fails on a database that does not exist, without retrying', async () => {
    const { config, dir } = await folderConfig(pgEnv(uniqueName('pgshelf_missing')));
    const run = createBackupJob({ config, storage: createStorage(config.storage), logger: silentLogger() });
    const attempt = run({}, ctx());
    await expect(attempt).rejects.toThrow(DatabaseNotFoundError);
    await expect(attempt).rejects.toMatchObject({ recoverable: false });
    await expect(attempt).rejects.toThrow(/database "pgshelf_missing_[0-9a-f]+" does not exist/);
    expect(await allFiles(dir)).toEqual([]);
  });

  it('rejects a dump that exits 0 but is empty', async () => {
    const db = await sourceDatabase();
    const bin = await fakePgDump(`[ "$1" = --version ] && echo "pg_dump (PostgreSQL) 15.99" ; exit 0`);
    const { config, dir } = await folderConfig({ ...pgEnv(db), PGSHELF_PG_BIN: bin });
    const run = createBackupJob({ config, storage: createStorage(config.storage), logger: silentLogger() });
    await expect(run({}, ctx())).rejects.toThrow(/pg_dump exited 0 but wrote nothing/);
    expect(await allFiles(dir)).toEqual([]);
  });

  it('rejects a dump cut short by a killed pg_dump and keeps its stderr', async () => {
    const db = await sourceDatabase();
    const bin = await fakePgDump(
      `[ "$1" = --version ] && { echo "pg_dump (PostgreSQL) 15.99"; exit 0; }\n` +
        `echo "CREATE TABLE t (a int);"; echo "pg_dump: dumping contents of table t" >&2; kill -9 $$`,
    );
    const { config, dir } = await folderConfig({ ...pgEnv(db), PGSHELF_PG_BIN: bin });
    const run = createBackupJob({ config, storage: createStorage(config.storage), logger: silentLogger() });
    await expect(run({}, ctx())).rejects.toThrow(
      /pg_dump was killed by SIGKILL:\npg_dump: dumping contents of table t/,
    );
    expect(await allFiles(dir)).toEqual([]);
  });

  it('refuses a pg_dump older than the server, naming both versions', async () => {
    const db = await sourceDatabase();
    const bin = await fakePgDump(`echo "pg_dump (PostgreSQL) 9.6.24"`);
    const { config } = await folderConfig({ ...pgEnv(db), PGSHELF_PG_BIN: bin });
    const run = createBackupJob({ config, storage: createStorage(config.storage), logger: silentLogger() });
    const attempt = run({}, ctx());
    await expect(attempt).rejects.toThrow(VersionMismatchError);
    await expect(attempt).rejects.toThrow(
      /version 9\.6\.24 but the server is PostgreSQL 15.*postgresql-client-15/,
    );
  });

  it('fails with the storage named when the folder cannot be written, before starting pg_dump', async () => {
    const db = await sourceDatabase();
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const blocker = path.join(dir, 'not-a-folder');
    await writeFile(blocker, 'a file where the storage folder should be');
    const config = testConfig({ ...pgEnv(db), PGSHELF_STORAGE: `file://${blocker}` });
    const run = createBackupJob({ config, storage: createStorage(config.storage), logger: silentLogger() });
    const attempt = run({}, ctx());
    await expect(attempt).rejects.toThrow(StorageError);
    await expect(attempt).rejects.toThrow(
      new RegExp(`cannot write the archive to file://${blocker}: ENOTDIR.*Check PGSHELF_STORAGE`),
    );
    expect(await dumpIsWaiting(db)).toBe(false);
    expect(await allFiles(dir)).toEqual(['not-a-folder']);
  });

  it('aborts a running dump: kills pg_dump and removes the temp file', async () => {
    const db = await sourceDatabase();
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const { config, dir } = await folderConfig(pgEnv(db));
    const run = createBackupJob({ config, storage: createStorage(config.storage), logger: silentLogger() });
    const abort = new AbortController();
    const running = run({}, ctx({ signal: abort.signal }));
    // Checked once it rejects; attached now so the rejection is never unhandled.
    const aborted = Promise.all([
      expect(running).rejects.toThrow(AbortedError),
      expect(running).rejects.toThrow(/backup aborted: shutdown/),
    ]);
    await waitFor('pg_dump to block on the lock', () => dumpIsWaiting(db));
    abort.abort(new Error('shutdown'));
    await aborted;
    await waitFor('pg_dump to go away', async () => !(await dumpIsWaiting(db)));
    expect(await allFiles(dir)).toEqual([]);
  });
});

describe('a failed backup to S3 leaves no object and no multipart upload', () => {
  const moto = inject('motoEndpoint');
  const MOTO_ONLY =
    'needs moto_server on PATH: s3rver can neither list nor abort incomplete multipart uploads';
  it('aborts the multipart upload when the dump is aborted midway', async (t) => {
    if (!moto) t.skip(MOTO_ONLY);
    const db = await sourceDatabase();
    // Incompressible data, so that parts are on their way when the abort comes.
    await withClient(db, (c) =>
      c.query(`CREATE TABLE bulk AS SELECT i, gen_random_bytes(100) AS b FROM generate_series(1, 600000) i`),
    );
    const bucket = await createBucket(moto!);
    const config = testConfig({ ...pgEnv(db), ...s3Env(bucket, 'p', moto!), PGSHELF_GZIP_LEVEL: '1' });
    const storage = createStorage(config.storage);
    const abort = new AbortController();
    const running = createBackupJob({ config, storage, logger: silentLogger() })(
      {},
      ctx({ signal: abort.signal }),
    );
    // Attached now so the rejection is never unhandled; checked once the abort is sent.
    const aborted = expect(running).rejects.toThrow(AbortedError);
    const watcher = testS3Client(moto!);
    await waitFor(
      'the multipart upload to start',
      async () => {
        const u = await watcher.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
        return (u.Uploads ?? []).length > 0;
      },
      60_000,
    );
    watcher.destroy();
    abort.abort(new Error('stop'));
    await aborted;

    const client = testS3Client(moto!);
    const objects = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    client.destroy();
    expect((objects.Contents ?? []).map((o) => o.Key)).toEqual([`p/${db}/.pgshelf-last-attempt.json`]);
    expect(uploads.Uploads ?? []).toEqual([]);
    await storage.close();
  });

  // s3rver (always there) does multipart uploads; only listing and aborting open ones need moto.
  it('writes a multipart archive of several parts that matches its manifest', async () => {
    const db = await sourceDatabase();
    await withClient(db, (c) =>
      c.query(`CREATE TABLE noise AS SELECT i, gen_random_bytes(64) AS b FROM generate_series(1, 150000) i`),
    );
    const bucket = await createBucket();
    const config = testConfig({ ...pgEnv(db), ...s3Env(bucket, ''), PGSHELF_GZIP_LEVEL: '1' });
    const storage = createStorage(config.storage);
    const result = await createBackupJob({ config, storage, logger: silentLogger() })({}, ctx());
    // Random bytes do not compress: more than one 5 MiB part.
    expect(result.bytes).toBeGreaterThan(10 * 1024 * 1024);
    const info = await storage.stat(result.archiveKey);
    expect(info?.size).toBe(result.bytes);
    expect(result.rows).toBeGreaterThan(150000);
    await storage.close();
  });
});
