import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { sampleDatabase, useCleanup } from '../helpers/lifecycle.js';
import { createBackupJob } from '../../src/jobs/backup.js';
import type { Progress } from '../../src/jobs/context.js';
import { scanBackups } from '../../src/catalog/backups.js';
import { readManifest } from '../../src/catalog/manifest.js';
import { silentLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import { pgEnv, s3Env, tempDir, testConfig } from '../helpers/env.js';
import { awkwardName, dropDatabase, snapshotDatabase, uniqueName } from '../helpers/pg.js';
import { restoreByHand } from '../helpers/restore.js';
import { createBucket, testS3Client } from '../helpers/s3.js';
import { ctx } from '../helpers/jobs.js';

const defer = useCleanup();

const sourceDatabase = (name = uniqueName(), rows = 300): Promise<string> =>
  sampleDatabase(defer, rows, name);

describe('backup to a local folder', () => {
  it('writes archive and manifest that restore by hand into an identical database', async () => {
    const source = await sourceDatabase(awkwardName());
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const config = testConfig({ ...pgEnv(source), PGSHELF_STORAGE: `file://${dir}` });
    const storage = createStorage(config.storage);
    const progress: Progress[] = [];

    const result = await createBackupJob({ config, storage, logger: silentLogger() })({}, ctx({ progress }));

    // Layout: <db>/<YYYY>/<MM>/<db>_<ts>_<id>.sql.gz next to its manifest.
    const month = new Date().toISOString().slice(0, 7).replace('-', '/');
    expect(path.dirname(result.archiveKey)).toBe(`${source.replace('\\', '%5C')}/${month}`);
    const folder = path.join(dir, path.dirname(result.archiveKey));
    const files = (await readdir(folder)).sort();
    expect(files).toEqual(
      [`${path.basename(result.manifestKey)}`, `${path.basename(result.archiveKey)}`].sort(),
    );
    expect(path.basename(result.archiveKey)).toMatch(/_\d{8}T\d{6}Z_[0-9a-f]{8}\.sql\.gz$/);

    const archive = await readFile(result.archiveLocation);
    const manifest = await readManifest(storage, result.manifestKey);
    expect(manifest.archive.sha256).toBe(createHash('sha256').update(archive).digest('hex'));
    expect(manifest.archive.bytes).toBe(archive.length);
    expect(manifest.database).toBe(source);
    expect(manifest.uncompressedBytes).toBeGreaterThan(archive.length);
    expect(manifest.compression.level).toBe(6);
    expect(manifest.serverVersionNum).toBeGreaterThanOrEqual(150000);
    // Row counts come from the dump's COPY blocks and match the source exactly.
    const snap = await snapshotDatabase(source);
    expect(manifest.tables['app.users']).toBe(snap.tables['app.users']!.rows);
    expect(manifest.tables['app.orders']).toBe(snap.tables['app.orders']!.rows);
    expect(manifest.tables['app.events_2024']! + manifest.tables['app.events_2025']!).toBe(300);
    expect(manifest.tables['public."Mixed Case ""Quoted"" table"']).toBe(3);
    expect(manifest.tables['public.empty_table']).toBe(0);
    expect(progress.at(-1)?.bytesIn).toBe(manifest.uncompressedBytes);
    expect(progress.at(-1)?.bytesOut).toBe(manifest.archive.bytes);

    const restored = uniqueName('pgshelf_r');
    defer(() => dropDatabase(restored), { keepOnFailure: true });
    await restoreByHand(result.archiveLocation, restored);
    expect(await snapshotDatabase(restored)).toEqual(snap);
  });
});

describe('backup to S3', () => {
  it('uploads an object that another S3 client downloads, verifies and restores by hand', async () => {
    const source = await sourceDatabase(awkwardName());
    const bucket = await createBucket();
    const config = testConfig({ ...pgEnv(source), ...s3Env(bucket, 'nightly/pg') });
    const storage = createStorage(config.storage);
    const result = await createBackupJob({ config, storage, logger: silentLogger() })({}, ctx());
    expect(result.archiveLocation).toBe(`s3://${bucket}/nightly/pg/${result.archiveKey}`);

    const client = testS3Client();
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'download.sql.gz');
    const got = await client.send(
      new GetObjectCommand({ Bucket: bucket, Key: `nightly/pg/${result.archiveKey}` }),
    );
    await pipeline(got.Body as Readable, createWriteStream(file));
    client.destroy();
    const manifest = await readManifest(storage, result.manifestKey);
    expect(
      createHash('sha256')
        .update(await readFile(file))
        .digest('hex'),
    ).toBe(manifest.archive.sha256);

    const restored = uniqueName('pgshelf_r');
    defer(() => dropDatabase(restored), { keepOnFailure: true });
    await restoreByHand(file, restored);
    expect(await snapshotDatabase(restored)).toEqual(await snapshotDatabase(source));
    const listed = await scanBackups(storage, source);
    expect(listed.map((b) => b.id)).toEqual([result.id]);
    await storage.close();
  });
});
