import { rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { FsStorage, S3Storage, type Storage } from '../../src/storage/index.js';
import { tempDir } from '../helpers/env.js';
import { createBucket } from '../helpers/s3.js';
import { inject } from 'vitest';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Array.fromAsync, which Node 20 lacks. */
async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

const made: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const fn of made) await fn();
});

const backends: [string, () => Promise<Storage>][] = [
  [
    'folder',
    async () => {
      const dir = await tempDir();
      made.push(() => rm(dir, { recursive: true, force: true }));
      return new FsStorage(dir);
    },
  ],
  [
    's3',
    async () =>
      new S3Storage({
        bucket: await createBucket(),
        prefix: 'some/prefix',
        endpoint: inject('s3Endpoint'),
        region: 'us-east-1',
        forcePathStyle: true,
        maxParts: 10_000,
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      }),
  ],
];

describe.each(backends)('%s storage', (_name, make) => {
  it('commits a streamed object only on commit(), and leaves nothing on abort()', async () => {
    const storage = await make();
    const data = Buffer.alloc(3 * 1024 * 1024 + 17, 'x');
    const w = storage.createWriter('db/2026/01/a.sql.gz', { sizeHint: data.length });
    await pipeline(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), w.stream);
    expect(await storage.stat('db/2026/01/a.sql.gz')).toBeUndefined();
    await w.commit();
    expect((await storage.stat('db/2026/01/a.sql.gz'))?.size).toBe(data.length);
    expect((await readAll(await storage.openRead('db/2026/01/a.sql.gz'))).equals(data)).toBe(true);

    const aborted = storage.createWriter('db/2026/01/b.sql.gz');
    aborted.stream.write(Buffer.alloc(1000));
    await aborted.abort();
    expect(await storage.stat('db/2026/01/b.sql.gz')).toBeUndefined();
    expect((await collect(storage.list('db/'))).map((o) => o.key)).toEqual(['db/2026/01/a.sql.gz']);
    await storage.close();
  });

  it('reads small objects, answers undefined for missing ones, and locates keys', async () => {
    const storage = await make();
    await storage.putObject('x/m.json', '{"a":1}');
    expect((await storage.getObject('x/m.json'))?.toString()).toBe('{"a":1}');
    expect(await storage.getObject('x/missing.json')).toBeUndefined();
    expect(await storage.stat('x/missing.json')).toBeUndefined();
    await expect(storage.openRead('x/missing.json')).rejects.toThrow(/missing\.json/);
    expect(storage.locate('x/m.json')).toMatch(
      /(^\/.*\/x\/m\.json$)|(^s3:\/\/[^/]+\/some\/prefix\/x\/m\.json$)/,
    );
    await storage.close();
  });

  it('lists past 1,000 keys in key order, and deletes them in batches of at most 1,000', async () => {
    const storage = await make();
    const keys = Array.from({ length: 1203 }, (_, i) => `many/${String(i).padStart(5, '0')}.manifest.json`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((k) => storage.putObject(k, '{}')));
    }
    const listed = (await collect(storage.list('many/'))).map((o) => o.key);
    expect(listed).toEqual(keys);
    const before = storage.requests.delete;
    await storage.deleteMany(keys);
    if (storage instanceof S3Storage) expect(storage.requests.delete - before).toBe(2);
    expect(await collect(storage.list('many/'))).toEqual([]);
    await storage.close();
  });
});
