import {
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { rm } from 'node:fs/promises';
import { describe, expect, inject, it } from 'vitest';
import { useCleanup } from '../helpers/lifecycle.js';
import type { Env } from '../../src/config/index.js';
import { createPruneJob } from '../../src/jobs/prune.js';
import { silentLogger } from '../../src/logger.js';
import { scanBackups } from '../../src/catalog/backups.js';
import { writeAttempt, writeVerified } from '../../src/catalog/markers.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { backupKeys } from '../../src/catalog/layout.js';
import { runCli } from '../helpers/cli.js';
import { storeFake } from '../helpers/manifests.js';
import { pgEnv, s3Env, tempDir, testConfig } from '../helpers/env.js';
import { createBucket, testS3Client } from '../helpers/s3.js';
import { ctx } from '../helpers/jobs.js';

const defer = useCleanup();

const DB = 'shop';

/**
 * Backups as prune sees them: an archive and a manifest under the real layout. Small bodies stand for real dumps;
 * what is tested is which objects remain.
 */
async function store(storage: Storage, at: Date, id: string, manifest = true): Promise<void> {
  await storeFake(storage, DB, at, id, { manifest });
}

/** Nightly backups at 02:00 UTC, `days` of them, the newest on 2026-11-25; ids d000 (newest), d001, ... */
async function nightly(storage: Storage, days: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < days; i += 20) {
    await Promise.all(
      Array.from({ length: Math.min(20, days - i) }, (_, j) => {
        const n = i + j;
        const id = `d${String(n).padStart(3, '0')}`.padEnd(8, '0');
        ids[n] = id;
        return store(storage, new Date(Date.parse('2026-11-25T02:00:00Z') - n * 86_400_000), id);
      }),
    );
  }
  return ids;
}

async function folder(env: Env = {}): Promise<{ env: Env; storage: Storage }> {
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const full = { ...pgEnv(DB), PGSHELF_STORAGE: dir, ...env };
  return { env: full, storage: createStorage(testConfig(full).storage) };
}

function prune(env: Env, now = new Date('2026-11-25T12:00:00Z')) {
  const config = testConfig(env);
  return createPruneJob({
    config,
    storage: createStorage(config.storage),
    logger: silentLogger(),
    now: () => now,
  });
}

describe('prune', () => {
  it('keeps what the policy selects and deletes the rest, archive and manifest together', async () => {
    const { env, storage } = await folder({
      PGSHELF_KEEP_LAST: '3',
      PGSHELF_KEEP_DAILY: '5',
      PGSHELF_KEEP_WEEKLY: '2',
      PGSHELF_KEEP_MONTHLY: '2',
    });
    const ids = await nightly(storage, 60);
    const result = await prune(env)({}, ctx());
    // 5 days (covers the 3 last), 2 ISO weeks (W48 newest = 25th, W47 = 22nd), 2 months (Nov = 25th, Oct 31st).
    const oct31 = ids[25]!;
    expect(result.keep).toEqual([...ids.slice(0, 5), ids[3]!, oct31].filter((v, i, a) => a.indexOf(v) === i));
    expect(result.delete).toHaveLength(60 - result.keep.length);
    const left = await scanBackups(storage, DB);
    expect(left.map((b) => b.id).sort()).toEqual([...result.keep].sort());
    expect(left.every((b) => b.manifestKey && b.archiveKey)).toBe(true);
  });

  it('--dry-run --json prints exactly keep, delete and reasons, and changes nothing', async () => {
    const { env, storage } = await folder({
      PGSHELF_KEEP_LAST: '2',
      PGSHELF_KEEP_DAILY: '0',
      PGSHELF_KEEP_WEEKLY: '0',
      PGSHELF_KEEP_MONTHLY: '0',
      PGSHELF_MIN_KEEP: '1',
    });
    const ids = await nightly(storage, 5);
    const res = await runCli(['prune', '--dry-run', '--json'], env);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['ok', 'keep', 'delete', 'reasons', 'ignored', 'blocked']);
    expect(out.keep).toEqual(ids.slice(0, 2));
    expect(out.delete).toEqual(ids.slice(2));
    expect((out.reasons as Record<string, string[]>)[ids[0]!]).toEqual(['last 1 of 2', 'newest backup']);
    expect((out.reasons as Record<string, string[]>)[ids[4]!]).toEqual(['outside every retention rule']);
    expect((await scanBackups(storage, DB)).length).toBe(5);
  });

  it('deletes nothing, and says so, when the latest backup attempt failed', async () => {
    const { env, storage } = await folder({ PGSHELF_KEEP_LAST: '1', PGSHELF_MIN_KEEP: '1' });
    await nightly(storage, 10);
    await writeAttempt(
      storage,
      DB,
      { status: 'failed', id: 'feedbeef', at: '2026-11-26T02:00:05Z', error: 'could not connect' },
      silentLogger(),
    );
    const result = await prune(env)({}, ctx());
    expect(result.delete).toEqual([]);
    expect(result.blocked).toMatch(
      /latest backup attempt failed at 2026-11-26T02:00:05Z \(could not connect\)/,
    );
    expect((await scanBackups(storage, DB)).length).toBe(10);
    // A later success lifts the block.
    await writeAttempt(
      storage,
      DB,
      { status: 'succeeded', id: 'feedbeef', at: '2026-11-26T02:10:00Z' },
      silentLogger(),
    );
    expect((await prune(env)({}, ctx())).delete.length).toBeGreaterThan(0);
  });

  it('records a real failed backup as the latest attempt', async () => {
    const { env } = await folder();
    const res = await runCli(['backup', '--in-process'], { ...env, POSTGRES_PORT: '1' });
    expect(res.code).toBe(1);
    const result = await prune(env)({}, ctx());
    expect(result.blocked).toMatch(/cannot connect to PostgreSQL/);
  });

  it('never deletes the newest drill-verified backup', async () => {
    const { env, storage } = await folder({
      PGSHELF_KEEP_LAST: '1',
      PGSHELF_KEEP_DAILY: '0',
      PGSHELF_KEEP_WEEKLY: '0',
      PGSHELF_KEEP_MONTHLY: '0',
      PGSHELF_MIN_KEEP: '1',
    });
    const ids = await nightly(storage, 10);
    await writeVerified(storage, DB, { id: ids[7]!, at: '2026-11-20T05:00:00Z' });
    const result = await prune(env)({}, ctx());
    expect(result.keep).toEqual([ids[0], ids[7]]);
    expect(result.reasons[ids[7]!]).toEqual(['newest drill-verified backup']);
  });

  it('removes orphaned archives older than the grace period and leaves fresh ones', async () => {
    const { env, storage } = await folder({ PGSHELF_ORPHAN_GRACE: '1' });
    await nightly(storage, 3);
    await store(storage, new Date('2026-11-20T02:00:00Z'), 'aaaa0001', false); // written long ago (file mtime: now)
    const now = Date.now();
    const result = await prune(env, new Date(now + 2 * 3_600_000))({}, ctx());
    expect(result.orphans).toHaveLength(1);
    expect(result.delete).toContain('aaaa0001');
    expect(result.reasons.aaaa0001).toEqual([
      'orphan: archive without a manifest, older than the grace period',
    ]);
    expect((await scanBackups(storage, DB)).map((b) => b.id)).not.toContain('aaaa0001');

    await store(storage, new Date('2026-11-21T02:00:00Z'), 'aaaa0002', false);
    const fresh = await prune(env, new Date(now + 60_000))({}, ctx());
    expect(fresh.orphans).toEqual([]);
    expect((await scanBackups(storage, DB)).map((b) => b.id)).toContain('aaaa0002');
  });
});

describe('prune on S3', () => {
  const moto = inject('motoEndpoint');

  it('aborts incomplete multipart uploads and deletes in requests of at most 1,000 keys', async (t) => {
    if (!moto) {
      t.skip(
        'needs moto_server on PATH: s3rver can neither list nor abort incomplete multipart uploads, nor DeleteObjects',
      );
    }
    const bucket = await createBucket(moto!);
    const env = {
      ...pgEnv(DB),
      ...s3Env(bucket, 'pg', moto!),
      PGSHELF_ORPHAN_GRACE: '1',
      PGSHELF_KEEP_LAST: '2',
      PGSHELF_KEEP_DAILY: '0',
      PGSHELF_KEEP_WEEKLY: '0',
      PGSHELF_KEEP_MONTHLY: '0',
      PGSHELF_MIN_KEEP: '1',
    };
    const storage = createStorage(testConfig(env).storage);
    defer(() => storage.close());
    const ids = await nightly(storage, 600);
    const client = testS3Client(moto!);
    const key = `pg/${backupKeys(DB, new Date('2026-11-26T02:00:00Z'), 'cafe0001').archive}`;
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    await client.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        PartNumber: 1,
        Body: Buffer.alloc(1024),
      }),
    );

    const result = await prune(env, new Date(Date.now() + 2 * 3_600_000))({}, ctx());
    expect(result.keep).toEqual(ids.slice(0, 2));
    expect(result.ignored).toEqual([]);
    expect(result.delete).toHaveLength(598);
    expect(result.incompleteUploads).toEqual([key.slice(3)]);
    // 598 manifests then 598 archives: two DeleteObjects requests; one listing page set for 1,200 keys.
    expect(result.requests.delete).toBe(2 + 1);
    expect(result.requests.list).toBe(2 + 1);
    // Ages come from the manifests: one GET each (16 at a time), plus the two markers.
    expect(result.requests.get).toBe(600 + 2);
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    client.destroy();
    expect(uploads.Uploads ?? []).toEqual([]);
    expect((await scanBackups(storage, DB)).map((b) => b.id)).toEqual(ids.slice(0, 2));
  });
});
