/**
 * The multipart writer (storage/s3-upload.ts) against real S3-compatible servers: parts grow as the sizes say,
 * the object is the bytes written, memory stays within the budget, and an aborted upload leaves nothing.
 */
import * as sdk from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, inject, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { MultipartWriter, partSizes } from '../../src/storage/s3-upload.js';
import { S3Storage } from '../../src/storage/index.js';
import { createBucket, listUploads, testS3Client } from '../helpers/s3.js';

const MiB = 1024 * 1024;

/** `bytes` of random data in chunks of uneven sizes (as gzip hands them over), and its SHA-256. */
function source(bytes: number): { chunks: Buffer[]; sha256: string } {
  const chunks: Buffer[] = [];
  const hash = createHash('sha256');
  for (let left = bytes, i = 0; left > 0; i++) {
    const n = Math.min(left, [65_536, 300_001, 1_048_576 + 3, 17][i % 4]!);
    const c = randomBytes(n);
    chunks.push(c);
    hash.update(c);
    left -= n;
  }
  return { chunks, sha256: hash.digest('hex') };
}

async function stored(
  s3: sdk.S3Client,
  Bucket: string,
  Key: string,
): Promise<{ sha256: string; etag: string }> {
  const out = await s3.send(new sdk.GetObjectCommand({ Bucket, Key }));
  const hash = createHash('sha256');
  for await (const c of out.Body as Readable) hash.update(c as Buffer);
  return { sha256: hash.digest('hex'), etag: out.ETag ?? '' };
}

const servers: [string, string | undefined][] = [
  ['s3rver', inject('s3Endpoint')],
  ['moto', inject('motoEndpoint') ?? undefined],
];

describe.each(servers)('multipart writer on %s', (name, endpoint) => {
  it('sends parts of growing sizes, no more held than the budget, and stores exactly the bytes', async (t) => {
    if (!endpoint) return t.skip(`needs ${name}`);
    const s3 = testS3Client(endpoint);
    const Bucket = await createBucket(endpoint);
    const Key = 'db/grow.sql.gz';
    // 12 parts at most: 5, 10, 20 MiB ... grow every part or two. 38 MiB: parts 5, 5, 10, 10, 8 (the rest).
    const sizes = partSizes(12, 5 * MiB);
    const data = source(38 * MiB);
    const w = new MultipartWriter(
      { sdk, client: s3 },
      { Bucket, Key, ContentType: 'application/gzip' },
      12,
      sizes,
      12 * MiB,
    );
    await pipeline(Readable.from(data.chunks), w);
    const planned: number[] = [];
    for (let n = 1, left = 38 * MiB; left > 0; n++) {
      planned.push(Math.min(left, sizes(n)));
      left -= sizes(n);
    }
    expect(w.sentSizes).toEqual(planned);
    expect(new Set(w.sentSizes).size).toBeGreaterThan(1);
    // The budget, or the part being filled once parts outgrew it, plus the chunk that came in last.
    const largest = Math.max(...planned.map((_, i) => sizes(i + 1)));
    expect(w.maxHeld).toBeLessThanOrEqual(Math.max(12 * MiB, largest) + 1_048_579);
    await expect(s3.send(new sdk.HeadObjectCommand({ Bucket, Key }))).rejects.toThrow();
    await w.complete();
    const got = await stored(s3, Bucket, Key);
    expect(got.sha256).toBe(data.sha256);
    // S3 and moto give a multipart object an ETag ending in its part count (s3rver does not).
    if (name === 'moto') expect(got.etag).toMatch(new RegExp(`-${planned.length}"$`));
    s3.destroy();
  });

  it('a stream that fits in the first part is one PutObject, and an empty one an empty object', async (t) => {
    if (!endpoint) return t.skip(`needs ${name}`);
    const s3 = testS3Client(endpoint);
    const Bucket = await createBucket(endpoint);
    for (const bytes of [3 * MiB + 5, 0]) {
      const Key = `db/small-${bytes}.sql.gz`;
      const data = source(bytes);
      const w = new MultipartWriter(
        { sdk, client: s3 },
        { Bucket, Key, ContentType: 'application/gzip' },
        10_000,
        partSizes(10_000),
      );
      await pipeline(Readable.from(data.chunks.length ? data.chunks : [Buffer.alloc(0)]), w);
      expect(w.sentSizes).toEqual([]);
      await w.complete();
      const got = await stored(s3, Bucket, Key);
      expect(got.sha256).toBe(data.sha256);
      if (name === 'moto') expect(got.etag).not.toContain('-');
    }
    s3.destroy();
  });

  it('fails naming PGSHELF_S3_MAX_PARTS when the stream outgrows its parts, and abort leaves no upload', async (t) => {
    if (!endpoint) return t.skip(`needs ${name}`);
    const s3 = testS3Client(endpoint);
    const Bucket = await createBucket(endpoint);
    const Key = 'db/too-big.sql.gz';
    const w = new MultipartWriter(
      { sdk, client: s3 },
      { Bucket, Key, ContentType: 'application/gzip' },
      2,
      () => 5 * MiB,
    );
    await expect(pipeline(Readable.from(source(16 * MiB).chunks), w)).rejects.toThrow(
      /outgrew 2 parts \(PGSHELF_S3_MAX_PARTS\)/,
    );
    await w.abort();
    await expect(s3.send(new sdk.HeadObjectCommand({ Bucket, Key }))).rejects.toThrow();
    if (name === 'moto') expect(await listUploads(s3, Bucket)).toEqual([]);
    s3.destroy();
  });
});

describe('S3 storage writer (moto)', () => {
  const moto = inject('motoEndpoint');
  it('an abort midway removes the multipart upload; a commit after a storage error names the object', async (t) => {
    if (!moto) return t.skip('needs moto_server');
    const s3 = testS3Client(moto);
    const bucket = await createBucket(moto);
    const storage = new S3Storage({
      bucket,
      prefix: 'p',
      endpoint: moto,
      region: 'us-east-1',
      forcePathStyle: true,
      maxParts: 10_000,
      firstPartSize: 5 * MiB,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    const w = storage.createWriter('db/cut.sql.gz');
    const data = source(12 * MiB).chunks;
    // Write two parts' worth, let them go up, then abort.
    for (const c of data) if (!w.stream.write(c)) await new Promise((r) => w.stream.once('drain', r));
    await expect.poll(async () => (await listUploads(s3, bucket)).length, { timeout: 20_000 }).toBe(1);
    await w.abort();
    expect(await listUploads(s3, bucket)).toEqual([]);
    expect(await storage.stat('db/cut.sql.gz')).toBeUndefined();
    expect(w.failure?.()).toBeUndefined();

    const gone = new S3Storage({
      bucket: `${bucket}-missing`,
      prefix: '',
      endpoint: moto,
      region: 'us-east-1',
      forcePathStyle: true,
      maxParts: 10_000,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    const w2 = gone.createWriter('db/x.sql.gz');
    await pipeline(Readable.from(source(6 * MiB).chunks), w2.stream).catch(() => undefined);
    const failed = w2.commit();
    await expect(failed).rejects.toThrow(StorageError);
    await expect(failed).rejects.toThrow(/S3 upload s3:\/\/.*-missing\/db\/x\.sql\.gz failed .*NoSuchBucket/);
    await storage.close();
    await gone.close();
    s3.destroy();
  });
});
