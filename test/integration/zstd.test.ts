import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { zstdAvailable } from '../../src/archive/compression.js';
import { readManifest } from '../../src/catalog/manifest.js';
import { ConfigError } from '../../src/errors.js';
import { pgEnv, tempDir, testConfig } from '../helpers/env.js';
import { jobs, ctx } from '../helpers/jobs.js';
import { sampleDatabase, useCleanup } from '../helpers/lifecycle.js';
import { dropDatabase, PG_HOST, PG_PORT, PG_USER, snapshotDatabase, uniqueName } from '../helpers/pg.js';
import { restoreByHand } from '../helpers/restore.js';

const execFileAsync = promisify(execFile);
const defer = useCleanup();

const sourceDatabase = (rows = 300): Promise<string> => sampleDatabase(defer, rows);

async function folder(): Promise<string> {
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe.runIf(zstdAvailable())(`PGSHELF_COMPRESSION=zstd on Node ${process.version}`, () => {
  it('writes a .sql.zst that pgshelf restores and `zstd -dc | psql` restores by hand, both equal to the source', async () => {
    const source = await sourceDatabase();
    const dir = await folder();
    const env = { ...pgEnv(source), PGSHELF_STORAGE: `file://${dir}`, PGSHELF_COMPRESSION: 'zstd' };
    const j = jobs(env);
    const result = await j.backup({}, ctx());

    expect(result.archiveKey).toMatch(/_[0-9a-f]{8}\.sql\.zst$/);
    const archive = await readFile(result.archiveLocation);
    expect(archive.subarray(0, 4).toString('hex')).toBe('28b52ffd'); // zstd frame magic
    const manifest = await readManifest(j.storage, result.manifestKey);
    expect(manifest.compression).toEqual({ format: 'zstd', level: 3 });
    expect(manifest.archive.sha256).toBe(createHash('sha256').update(archive).digest('hex'));
    const { stdout } = await execFileAsync('zstd', ['-dc', result.archiveLocation], { maxBuffer: 64 << 20 });
    expect(Buffer.byteLength(stdout)).toBe(manifest.uncompressedBytes);

    const snap = await snapshotDatabase(source);
    const byHand = uniqueName('pgshelf_r');
    defer(() => dropDatabase(byHand), { keepOnFailure: true });
    await restoreByHand(result.archiveLocation, byHand);
    expect(await snapshotDatabase(byHand)).toEqual(snap);

    const restored = uniqueName('pgshelf_r');
    defer(() => dropDatabase(restored), { keepOnFailure: true });
    const r = await j.restore({ into: restored }, ctx());
    expect(r.uncompressedBytes).toBe(manifest.uncompressedBytes);
    expect(await snapshotDatabase(restored)).toEqual(snap);

    const verified = await j.verify({}, ctx());
    expect(verified.sha256).toBe(manifest.archive.sha256);
    expect(verified.uncompressedBytes).toBe(manifest.uncompressedBytes);
  });

  it('composes with age: .sql.zst.age, restored by pgshelf and by `age -d | zstd -dc | psql`', async () => {
    const source = await sourceDatabase(100);
    const dir = await folder();
    const identity = path.join(dir, 'age-identity.txt');
    const { stderr } = await execFileAsync('age-keygen', ['-o', identity]);
    const recipient = /Public key: (age1[0-9a-z]+)/.exec(stderr)![1]!;
    const env = {
      ...pgEnv(source),
      PGSHELF_STORAGE: `file://${dir}/store`,
      PGSHELF_COMPRESSION: 'zstd',
      PGSHELF_AGE_RECIPIENTS: recipient,
      PGSHELF_AGE_IDENTITY_FILE: identity,
    };
    const j = jobs(env);
    const result = await j.backup({}, ctx());
    expect(result.archiveKey).toMatch(/\.sql\.zst\.age$/);
    const snap = await snapshotDatabase(source);

    const restored = uniqueName('pgshelf_r');
    defer(() => dropDatabase(restored), { keepOnFailure: true });
    await j.restore({ into: restored }, ctx());
    expect(await snapshotDatabase(restored)).toEqual(snap);

    const plain = path.join(dir, 'by-hand.sql.zst');
    await execFileAsync('age', ['-d', '-i', identity, '-o', plain, result.archiveLocation]);
    const byHand = uniqueName('pgshelf_r');
    defer(() => dropDatabase(byHand), { keepOnFailure: true });
    await restoreByHand(plain, byHand);
    expect(await snapshotDatabase(byHand)).toEqual(snap);
  });

  it('restores a `pg_dump | zstd` file made by hand (--key, format from the suffix)', async () => {
    const source = await sourceDatabase(50);
    const dir = await folder();
    await mkdir(path.join(dir, 'manual'));
    const file = path.join(dir, 'manual', `${source}.sql.zst`);
    await execFileAsync('bash', [
      '-o',
      'pipefail',
      '-c',
      'pg_dump --host="$2" --port="$3" --username="$4" --dbname="$1" | zstd -q -19 > "$5"',
      'dump',
      source,
      PG_HOST,
      String(PG_PORT),
      PG_USER,
      file,
    ]);
    const restored = uniqueName('pgshelf_r');
    defer(() => dropDatabase(restored), { keepOnFailure: true });
    const j = jobs({ ...pgEnv(source), PGSHELF_STORAGE: `file://${dir}` });
    await j.restore({ into: restored, key: `manual/${source}.sql.zst` }, ctx());
    expect(await snapshotDatabase(restored)).toEqual(await snapshotDatabase(source));
  });
});

describe.skipIf(zstdAvailable())(`zstd refused on Node ${process.version} (no zstd in its zlib)`, () => {
  it('PGSHELF_COMPRESSION=zstd fails at start, naming the Node version needed and the way back', () => {
    expect(() => testConfig({ PGSHELF_COMPRESSION: 'zstd' })).toThrow(ConfigError);
    expect(() => testConfig({ PGSHELF_COMPRESSION: 'zstd' })).toThrow(
      /PGSHELF_COMPRESSION=zstd needs Node 22\.15.*this is Node v\d+.*PGSHELF_COMPRESSION=gzip/,
    );
  });

  it('a .sql.zst archive is refused before anything is created, with the by-hand command', async () => {
    const dir = await folder();
    await writeFile(path.join(dir, 'x.sql.zst'), Buffer.from('28b52ffd', 'hex'));
    const into = uniqueName('pgshelf_r');
    const j = jobs({ ...pgEnv('postgres'), PGSHELF_STORAGE: `file://${dir}` });
    await expect(j.restore({ into, key: 'x.sql.zst' }, ctx())).rejects.toThrow(
      /is zstd-compressed: reading it needs zstd.*Node 22\.15.*zstd -dc/,
    );
  });
});

it('PGSHELF_COMPRESSION takes gzip or zstd only', () => {
  expect(testConfig({ PGSHELF_COMPRESSION: 'gzip' }).compression).toBe('gzip');
  expect(testConfig({}).compression).toBe('gzip');
  expect(() => testConfig({ PGSHELF_COMPRESSION: 'lz4' })).toThrow(
    /PGSHELF_COMPRESSION="lz4" is invalid: expected gzip or zstd/,
  );
});
