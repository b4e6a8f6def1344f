import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/lifecycle.js';
import type { Env } from '../../src/config/index.js';
import {
  BackupNotFoundError,
  ChecksumMismatchError,
  CorruptArchiveError,
  DrillFailedError,
  RestoreFailedError,
  TargetExistsError,
  VersionMismatchError,
} from '../../src/errors.js';
import { createBackupJob, type BackupResult } from '../../src/jobs/backup.js';
import type { Progress } from '../../src/jobs/context.js';
import { silentLogger } from '../../src/logger.js';
import { readManifest, writeManifest } from '../../src/catalog/manifest.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { pgEnv, s3Env, tempDir, testConfig } from '../helpers/env.js';
import {
  awkwardName,
  createDatabase,
  createSampleSchema,
  databaseExists,
  databaseOwner,
  dropDatabase,
  PG_HOST,
  PG_PORT,
  PG_USER,
  snapshotDatabase,
  uniqueName,
  withClient,
} from '../helpers/pg.js';
import { createBucket } from '../helpers/s3.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { noRestoreLeftovers } from '../helpers/restore.js';

const execFileAsync = promisify(execFile);

const defer = useCleanup();

function dropLater(name: string): void {
  defer(() => dropDatabase(name), { keepOnFailure: true });
}

interface Fixture {
  source: string;
  env: Env;
  storage: Storage;
  backup: BackupResult;
  dir: string;
}

async function fixture(options: { name?: string; rows?: number; env?: Env } = {}): Promise<Fixture> {
  const source = options.name ?? uniqueName();
  await createDatabase(source);
  dropLater(source);
  await createSampleSchema(source, options.rows ?? 200);
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const env = { ...pgEnv(source), PGSHELF_STORAGE: dir, ...options.env };
  const config = testConfig(env);
  const storage = createStorage(config.storage);
  const backup = await createBackupJob({ config, storage, logger: silentLogger() })({}, ctx());
  return { source, env, storage, backup, dir };
}

describe('restore', () => {
  it('rebuilds every table, row, index, constraint, sequence, view, function and extension, with progress', async () => {
    const f = await fixture({ name: awkwardName() });
    const into = `${awkwardName()} restored`;
    dropLater(into);
    const progress: Progress[] = [];
    const result = await jobs(f.env).restore({ into }, ctx({ progress }));
    expect(result).toMatchObject({
      database: into,
      backupId: f.backup.id,
      sourceDatabase: f.source,
      bytes: f.backup.bytes,
      uncompressedBytes: f.backup.uncompressedBytes,
      sha256: f.backup.sha256,
      checkedAgainstManifest: true,
    });
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(f.source));
    expect(await databaseOwner(into)).toBe(PG_USER);
    const last = progress.at(-1)!;
    expect(last).toMatchObject({ phase: 'restore', bytesIn: f.backup.bytes, totalBytes: f.backup.bytes });
  });

  it('restores from S3 by backup id, owned by POSTGRES_USER (a non-superuser) and created by the admin user', async () => {
    const owner = uniqueName('pgshelf_owner');
    await withClient('postgres', (c) => c.query(`CREATE ROLE ${owner} LOGIN`));
    defer(() => withClient('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${owner}`)).then(() => undefined));
    const bucket = await createBucket();
    const f = await fixture({ env: s3Env(bucket, 'pg') });
    // A second backup, so that "by id" picks the older one.
    await createBackupJob({ config: testConfig(f.env), storage: f.storage, logger: silentLogger() })(
      {},
      ctx(),
    );
    const into = uniqueName('pgshelf_into');
    dropLater(into);
    const env = { ...f.env, POSTGRES_USER: owner, POSTGRES_ADMIN_USER: PG_USER };
    // Objects in the dump belong to the source's owner: restoring as another role needs --no-owner.
    const result = await jobs(env).restore({ into, backup: f.backup.id, noOwner: true }, ctx());
    expect(result.backupId).toBe(f.backup.id);
    expect(await databaseOwner(into)).toBe(owner);
    const tableOwners = await withClient(
      into,
      async (c) =>
        (
          await c.query<{ o: string }>(
            `SELECT DISTINCT tableowner AS o FROM pg_tables WHERE schemaname = 'app'`,
          )
        ).rows,
    );
    expect(tableOwners).toEqual([{ o: owner }]);
    const [a, b] = [await snapshotDatabase(into), await snapshotDatabase(f.source)];
    expect(a.tables).toEqual(b.tables);
    expect(a.sequences).toEqual(b.sequences);
    expect(a.indexes).toEqual(b.indexes);
    expect(a.functions).toEqual(b.functions);
  });

  it("without --no-owner, fails on ownership it cannot grant, with psql's error, and leaves nothing", async () => {
    const owner = uniqueName('pgshelf_owner');
    await withClient('postgres', (c) => c.query(`CREATE ROLE ${owner} LOGIN`));
    defer(() => withClient('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${owner}`)).then(() => undefined));
    const f = await fixture();
    const into = uniqueName('pgshelf_into');
    dropLater(into);
    const env = { ...f.env, POSTGRES_USER: owner, POSTGRES_ADMIN_USER: PG_USER };
    const attempt = jobs(env).restore({ into }, ctx());
    await expect(attempt).rejects.toThrow(RestoreFailedError);
    await expect(attempt).rejects.toThrow(
      /psql exited with code 3:[\s\S]*ERROR:[\s\S]*(must be (owner|member)|permission denied)/,
    );
    await noRestoreLeftovers(into);
  });

  it('fails cleanly when psql stops midway while reading from S3', async () => {
    const bucket = await createBucket();
    const f = await fixture({ env: s3Env(bucket, 'pg'), rows: 3000 });
    const sql = gunzipSync((await f.storage.getObject(f.backup.archiveKey))!).toString('utf8');
    const at = sql.indexOf('COPY app.orders');
    const broken = sql.slice(0, at) + 'SELECT 1/0;\n' + sql.slice(at);
    await f.storage.putObject('broken.sql.gz', gzipSync(broken), 'application/gzip');
    const into = uniqueName('pgshelf_into');
    dropLater(into);
    const attempt = jobs(f.env).restore({ into, key: 'broken.sql.gz' }, ctx());
    await expect(attempt).rejects.toThrow(RestoreFailedError);
    await expect(attempt).rejects.toThrow(/division by zero/);
    await noRestoreLeftovers(into);
  });

  it('refuses an existing target before touching anything, and leaves it as it was', async () => {
    const f = await fixture();
    const existing = uniqueName('pgshelf_existing');
    await createDatabase(existing);
    dropLater(existing);
    await withClient(existing, (c) =>
      c.query(`CREATE TABLE precious (v text); INSERT INTO precious VALUES ('keep me')`),
    );
    const before = await snapshotDatabase(existing);
    const attempt = jobs(f.env).restore({ into: existing }, ctx());
    await expect(attempt).rejects.toThrow(TargetExistsError);
    await expect(attempt).rejects.toThrow(`database "${existing}" already exists`);
    expect(await snapshotDatabase(existing)).toEqual(before);
  });

  it('refuses an archive from a newer PostgreSQL major, naming both versions', async () => {
    const f = await fixture();
    const manifest = await readManifest(f.storage, f.backup.manifestKey);
    await writeManifest(f.storage, f.backup.manifestKey, {
      ...manifest,
      serverVersion: '99.1',
      serverVersionNum: 990001,
    });
    const into = uniqueName('pgshelf_into');
    const attempt = jobs(f.env).restore({ into }, ctx());
    await expect(attempt).rejects.toThrow(VersionMismatchError);
    await expect(attempt).rejects.toThrow(/PostgreSQL 99\.1 but the target server is 15/);
    await noRestoreLeftovers(into);
  });

  it('fails on a truncated archive and drops what it created', async () => {
    const f = await fixture();
    const bytes = await readFile(f.backup.archiveLocation);
    await writeFile(f.backup.archiveLocation, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const into = uniqueName('pgshelf_into');
    dropLater(into);
    const attempt = jobs(f.env).restore({ into }, ctx());
    // The stored size is checked against the manifest before reading; without a manifest, gunzip finds it.
    await expect(attempt).rejects.toThrow(ChecksumMismatchError);
    await expect(attempt).rejects.toThrow(
      new RegExp(
        `is truncated: ${Math.floor(bytes.length / 2)} bytes in storage, the manifest says ${bytes.length}`,
      ),
    );
    await noRestoreLeftovers(into);
    // The same bytes under a key without a manifest: gunzip finds the truncation.
    await writeFile(path.join(f.dir, 'truncated.sql.gz'), bytes.subarray(0, Math.floor(bytes.length / 2)));
    const bare = jobs(f.env).restore({ into, key: 'truncated.sql.gz' }, ctx());
    await expect(bare).rejects.toThrow(CorruptArchiveError);
    await expect(bare).rejects.toThrow(
      /cannot be decompressed .*unexpected end of file.*truncated or damaged/,
    );
    await noRestoreLeftovers(into);
  });

  it('fails on a flipped byte in the compressed data', async () => {
    const f = await fixture();
    const bytes = await readFile(f.backup.archiveLocation);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await writeFile(f.backup.archiveLocation, bytes);
    const into = uniqueName('pgshelf_into');
    dropLater(into);
    const attempt = jobs(f.env).restore({ into }, ctx());
    await expect(attempt).rejects.toSatisfy(
      (e) => e instanceof CorruptArchiveError || e instanceof ChecksumMismatchError,
    );
    await noRestoreLeftovers(into);
  });

  it('does not commit an archive whose SHA-256 differs even though it gunzips cleanly', async () => {
    const f = await fixture();
    const bytes = await readFile(f.backup.archiveLocation);
    // The gzip header's MTIME (bytes 4-7) is ignored by gunzip: only the manifest's SHA-256 can catch this.
    bytes[5]! ^= 0x01;
    await writeFile(f.backup.archiveLocation, bytes);
    expect(gunzipSync(bytes).length).toBe(f.backup.uncompressedBytes);
    const into = uniqueName('pgshelf_into');
    dropLater(into);
    const attempt = jobs(f.env).restore({ into }, ctx());
    await expect(attempt).rejects.toThrow(ChecksumMismatchError);
    await expect(attempt).rejects.toThrow(`expected ${f.backup.sha256} (${f.backup.bytes} bytes)`);
    await noRestoreLeftovers(into);
  });

  it('restores an archive made by plain pg_dump | gzip, given by key', async () => {
    const f = await fixture();
    const file = path.join(f.dir, 'by-hand.sql.gz');
    await execFileAsync('bash', [
      '-o',
      'pipefail',
      '-c',
      'pg_dump --host="$1" --port="$2" --username="$3" --dbname="$4" | gzip > "$5"',
      'dump',
      PG_HOST,
      String(PG_PORT),
      PG_USER,
      f.source,
      file,
    ]);
    const into = uniqueName('pgshelf_into');
    dropLater(into);
    const result = await jobs(f.env).restore({ into, key: 'by-hand.sql.gz' }, ctx());
    expect(result).toMatchObject({ backupId: null, checkedAgainstManifest: false });
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(f.source));
  });

  it("stops at an SQL error midway, reports psql's error, and leaves no half-filled database", async () => {
    const f = await fixture();
    const sql = gunzipSync(await readFile(f.backup.archiveLocation)).toString('utf8');
    const at = sql.indexOf('COPY app.orders');
    const broken = sql.slice(0, at) + 'INSERT INTO app.no_such_table VALUES (1);\n' + sql.slice(at);
    await writeFile(path.join(f.dir, 'broken.sql.gz'), gzipSync(broken));
    const into = uniqueName('pgshelf_into');
    dropLater(into);
    const attempt = jobs(f.env).restore({ into, key: 'broken.sql.gz' }, ctx());
    await expect(attempt).rejects.toThrow(RestoreFailedError);
    await expect(attempt).rejects.toThrow(
      /psql exited with code 3:[\s\S]*relation "app.no_such_table" does not exist/,
    );
    await noRestoreLeftovers(into);
  });

  it('refuses an archive whose SQL ends early, before psql commits', async () => {
    const f = await fixture();
    const sql = gunzipSync(await readFile(f.backup.archiveLocation)).toString('utf8');
    // Cut at a statement boundary: valid SQL, valid gzip, but not the whole dump.
    const cut = sql.slice(0, sql.indexOf('COPY app.orders'));
    await writeFile(path.join(f.dir, 'cut.sql.gz'), gzipSync(cut));
    const into = uniqueName('pgshelf_into');
    dropLater(into);
    const attempt = jobs(f.env).restore({ into, key: 'cut.sql.gz' }, ctx());
    await expect(attempt).rejects.toThrow(CorruptArchiveError);
    await expect(attempt).rejects.toThrow(
      /ends without pg_dump's "-- PostgreSQL database dump complete" line/,
    );
    await noRestoreLeftovers(into);
  });

  it('says which backups exist when the id is unknown', async () => {
    const f = await fixture();
    const attempt = jobs(f.env).restore({ into: uniqueName(), backup: 'deadbeef' }, ctx());
    await expect(attempt).rejects.toThrow(BackupNotFoundError);
    await expect(attempt).rejects.toThrow(`backup "deadbeef" not found`);
    await expect(attempt).rejects.toThrow(f.backup.id);
  });
});

describe('verify', () => {
  it('checks a sound archive against its manifest', async () => {
    const f = await fixture();
    const result = await jobs(f.env).verify({ backup: f.backup.id }, ctx());
    expect(result).toMatchObject({
      backupId: f.backup.id,
      bytes: f.backup.bytes,
      sha256: f.backup.sha256,
      uncompressedBytes: f.backup.uncompressedBytes,
    });
  });

  it('finds a truncated archive and a changed byte', async () => {
    const f = await fixture();
    const bytes = await readFile(f.backup.archiveLocation);
    const flipped = Buffer.from(bytes);
    flipped[6]! ^= 0x01; // MTIME: gunzips fine, SHA-256 differs
    await writeFile(f.backup.archiveLocation, flipped);
    await expect(jobs(f.env).verify({}, ctx())).rejects.toThrow(ChecksumMismatchError);
    await writeFile(f.backup.archiveLocation, bytes.subarray(0, bytes.length - 100));
    await expect(jobs(f.env).verify({}, ctx())).rejects.toThrow(CorruptArchiveError);
  });
});

describe('drill', () => {
  it('restores the latest backup into a scratch database, compares row counts, records it, drops the scratch', async () => {
    const f = await fixture();
    const result = await jobs(f.env).drill({}, ctx());
    expect(result).toMatchObject({ backupId: f.backup.id, verified: true, mismatches: [] });
    expect(result.rows).toBe(
      Object.values((await readManifest(f.storage, f.backup.manifestKey)).tables).reduce((a, b) => a + b),
    );
    expect(await databaseExists(result.scratchDatabase)).toBe(false);
    const manifest = await readManifest(f.storage, f.backup.manifestKey);
    expect(manifest.drill).toMatchObject({ verified: true, scratchDatabase: result.scratchDatabase });
    expect(manifest.drill!.restoreMs).toBeGreaterThan(0);
    expect(manifest.drills).toHaveLength(1);
    // Everything else in the manifest is as the backup wrote it.
    expect(manifest.archive.sha256).toBe(f.backup.sha256);
  });

  it('records a failed drill when the restored rows differ from the manifest, and still drops the scratch', async () => {
    const f = await fixture();
    const manifest = await readManifest(f.storage, f.backup.manifestKey);
    const tables = { ...manifest.tables, 'app.users': manifest.tables['app.users']! + 1 };
    await writeManifest(f.storage, f.backup.manifestKey, { ...manifest, tables });
    const attempt = jobs(f.env).drill({}, ctx());
    await expect(attempt).rejects.toThrow(DrillFailedError);
    await expect(attempt).rejects.toThrow(/app\.users: 200 rows, expected 201/);
    const after = await readManifest(f.storage, f.backup.manifestKey);
    expect(after.drill).toMatchObject({ verified: false });
    expect(await databaseExists(after.drill!.scratchDatabase)).toBe(false);
    // The original counts in the tampered manifest were kept (only the drill fields changed).
    expect(after.tables['app.users']).toBe(201);
  });
});
