/**
 * Downloads that lose their connection midway (storage/s3-read.ts). Reproduced first: CI's restore of a 98 MiB
 * archive from moto failed with Node's bare "pgshelf: aborted" when the connection was reset at 58 MiB. Here a TCP
 * link between pgshelf and moto is cut while a download is under way, and the stream must either go on from the
 * byte where it stopped (link back) or fail naming the object, how far it got and what to check (link gone).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { describe, expect, inject, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { S3Storage, type ResumeInfo } from '../../src/storage/index.js';
import { useCleanup } from '../helpers/lifecycle.js';
import { createBucket, testS3Client } from '../helpers/s3.js';
import { tcpLink } from '../helpers/services.js';

const MiB = 1024 * 1024;
const defer = useCleanup();
const moto = inject('motoEndpoint');

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A bucket on moto holding `bytes` of random data under p/db/a.sql.gz, and a link to moto the test can cut. */
async function setUp(bytes: number) {
  const bucket = await createBucket(moto!);
  const data = randomBytes(bytes);
  const s3 = testS3Client(moto!);
  defer(() => Promise.resolve(s3.destroy()));
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'p/db/a.sql.gz', Body: data }));
  const link = await tcpLink(Number(new URL(moto!).port), defer);
  const resumes: ResumeInfo[] = [];
  const storage = (tries: number) =>
    new S3Storage({
      bucket,
      prefix: 'p',
      endpoint: `http://127.0.0.1:${link.port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      maxParts: 10_000,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      resume: { tries, delayMs: () => 200 },
    });
  return { bucket, data, s3, link, resumes, storage };
}

/** Reads `body` until at least `bytes` have come, then stops reading (the rest stays on the wire). */
async function readAtLeast(body: Readable, bytes: number): Promise<Buffer[]> {
  const got: Buffer[] = [];
  let n = 0;
  while (n < bytes) {
    const chunk =
      (body.read() as Buffer | null) ??
      (await new Promise<null>((r) => body.once('readable', () => r(null))));
    if (chunk) {
      got.push(chunk);
      n += chunk.length;
    }
  }
  return got;
}

async function readRest(body: Readable, got: Buffer[]): Promise<Buffer> {
  for await (const chunk of body) got.push(chunk as Buffer);
  return Buffer.concat(got);
}

describe('an S3 download that loses its connection midway', () => {
  it('goes on from the byte where it stopped once S3 answers again, and delivers every byte once', async (t) => {
    if (!moto) return t.skip('needs moto_server on PATH (ranged GETs with If-Match)');
    const { data, link, resumes, storage } = await setUp(24 * MiB);
    const body = await storage(5).openRead('db/a.sql.gz', { onResume: (i) => resumes.push(i) });
    const head = await readAtLeast(body, 3 * MiB);
    // "S3 stops": every open connection is reset and new ones are refused for a while.
    await link.cut();
    const back = setTimeout(() => void link.restore(), 500);
    defer(() => Promise.resolve(clearTimeout(back)));
    const all = await readRest(body, head);
    expect(all.length).toBe(data.length);
    expect(sha256(all)).toBe(sha256(data));
    expect(resumes.length).toBeGreaterThanOrEqual(1);
    expect(resumes[0]!.position).toBeGreaterThanOrEqual(3 * MiB);
    expect(resumes[0]!.position).toBeLessThan(data.length);
    expect(resumes[0]!.total).toBe(data.length);
  });

  it('fails naming the object, how far it got and what to check when S3 stays away', async (t) => {
    if (!moto) return t.skip('needs moto_server on PATH');
    const { bucket, link, resumes, storage } = await setUp(16 * MiB);
    const body = await storage(2).openRead('db/a.sql.gz', { onResume: (i) => resumes.push(i) });
    const head = await readAtLeast(body, 2 * MiB);
    await link.cut();
    const failed = readRest(body, head);
    await expect(failed).rejects.toThrow(StorageError);
    await expect(failed).rejects.toThrow(
      new RegExp(
        `reading s3://${bucket}/p/db/a\\.sql\\.gz stopped after \\d+\\.\\d MiB of 16\\.0 MiB: .*; ` +
          '2 tries to go on from there brought no byte\\. Check the network path to the storage \\(S3_ENDPOINT',
      ),
    );
    expect(resumes.map((r) => r.attempt)).toEqual([1, 2]);
  });

  it('refuses to stitch two different objects together when the archive is replaced midway', async (t) => {
    if (!moto) return t.skip('needs moto_server on PATH');
    const { bucket, s3, link, storage } = await setUp(16 * MiB);
    const body = await storage(5).openRead('db/a.sql.gz');
    const head = await readAtLeast(body, 2 * MiB);
    await link.cut();
    await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'p/db/a.sql.gz', Body: randomBytes(16 * MiB) }),
    );
    await link.restore();
    const failed = readRest(body, head);
    await expect(failed).rejects.toThrow(
      new RegExp(
        `s3://${bucket}/p/db/a\\.sql\\.gz changed while it was being read \\(after \\d+\\.\\d MiB\\)`,
      ),
    );
  });
});
