/**
 * Fault: the worker is SIGKILLed in the middle of a backup to S3 (moto, which lists and aborts multipart uploads).
 * Nothing in the worker runs after SIGKILL, so the multipart upload stays open: prune must abort it, nothing of it
 * may count as a backup, and the job must then be run again and succeed.
 */
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Queue } from 'bullmq';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { describe, expect, inject, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { createPruneJob } from '../../src/jobs/prune.js';
import { silentLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import { runCli } from '../helpers/cli.js';
import { pgEnv, s3Env, testConfig, uniquePrefix } from '../helpers/env.js';
import { noiseDatabase, settled } from '../helpers/faults.js';
import { daemon, queues, redis, useCleanup } from '../helpers/lifecycle.js';
import { createBucket, listUploads, testS3Client, uploadWithParts } from '../helpers/s3.js';
import { ctx } from '../helpers/jobs.js';

const defer = useCleanup();
const moto = inject('motoEndpoint');

describe('fault: worker SIGKILLed mid-backup on S3', () => {
  it('prune aborts the open upload, no orphan counts as a backup, and the job is run again and succeeds', async (t) => {
    if (!moto)
      t.skip('needs moto_server on PATH: s3rver can neither list nor abort incomplete multipart uploads');
    // ~100 MB of hex that gzips to ~56 MB (about 11 parts): parts are still going up when the worker is killed.
    const db = await noiseDatabase(defer, 50_000);
    const bucket = await createBucket(moto!);
    const prefix = uniquePrefix();
    const env: Env = {
      ...pgEnv(db),
      ...s3Env(bucket, 'p', moto!),
      PGSHELF_GZIP_LEVEL: '1',
      PGSHELF_RETRY_DELAY: '1',
      // A job whose worker died is run again after about this long (seconds).
      PGSHELF_LOCK_DURATION: '4',
      PGSHELF_QUEUE_PREFIX: prefix,
      PGSHELF_LOG_LEVEL: 'info',
    };
    queues(prefix, defer);
    const s3 = testS3Client(moto!);
    defer(() => Promise.resolve(s3.destroy()));
    const listKeys = async () =>
      ((await s3.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? [])
        .map((o) => o.Key!)
        .filter((k) => !k.endsWith('.pgshelf-last-attempt.json'))
        .sort();

    const first = daemon('worker', env, defer);
    const queued = await runCli(['backup', '--no-wait', '--json'], env);
    expect(queued.code, queued.stderr).toBe(0);
    const { jobId } = JSON.parse(queued.stdout) as { jobId: string };
    const open = await uploadWithParts(s3, bucket, 2, 45_000);
    first.child.kill('SIGKILL');
    await first.done;

    // What the dead worker left: an open multipart upload, no object, nothing that lists as a backup.
    expect(await listKeys()).toEqual([]);
    expect((await listUploads(s3, bucket)).map((u) => u.UploadId)).toEqual([open.UploadId]);

    // Prune, once PGSHELF_ORPHAN_GRACE (hours) has passed: a clock 25 h ahead, as the setting cannot go below an
    // hour. It aborts the upload and finds no backup and no orphan.
    const config = testConfig(env);
    const storage = createStorage(config.storage);
    defer(() => storage.close());
    const later = new Date(Date.now() + 25 * 3_600_000);
    const pruned = await createPruneJob({ config, storage, logger: silentLogger(), now: () => later })(
      {},
      ctx(),
    );
    expect(pruned.incompleteUploads).toEqual([open.Key!.slice('p/'.length)]);
    expect(pruned.orphans).toEqual([]);
    expect([...pruned.keep, ...pruned.delete]).toEqual([]);
    expect(await listUploads(s3, bucket)).toEqual([]);
    const listed = await runCli(['list', '--json'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { backups: unknown[] }).backups).toEqual([]);

    // A new worker finds the job stalled, runs it again, and it succeeds: one backup, matching its manifest.
    daemon('worker', env, defer);
    const backups = new Queue('backup', { connection: redis, prefix });
    defer(() => backups.close());
    const job = await settled(backups, jobId, 120_000);
    const result = job.returnvalue as { id: string; archiveKey: string };
    const manifestKey = result.archiveKey.replace(/\.sql\.gz$/, '.manifest.json');
    expect(await listKeys()).toEqual([`p/${result.archiveKey}`, `p/${manifestKey}`].sort());
    const manifest = JSON.parse(
      await (
        await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `p/${manifestKey}` }))
      ).Body!.transformToString(),
    ) as { id: string; archive: { sha256: string }; tables: Record<string, number> };
    expect(manifest.id).toBe(result.id);
    expect(manifest.tables['public.noise']).toBe(50000);
    const archive = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `p/${result.archiveKey}` }));
    const hash = createHash('sha256');
    for await (const chunk of archive.Body as Readable) hash.update(chunk as Buffer);
    expect(hash.digest('hex')).toBe(manifest.archive.sha256);
    expect(await listUploads(s3, bucket)).toEqual([]);
  }, 240_000);
});
