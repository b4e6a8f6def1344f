import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import {
  loadConfig,
  parseDbEcho,
  requireDatabases,
  resolveTarget,
  SETTINGS,
  storageIdentity,
} from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';

const base = { POSTGRES_DB: 'fractal_db' };

describe('loadConfig', () => {
  it('applies the published defaults', () => {
    const c = loadConfig(base, { cwd: '/srv/app' });
    const pg = c.databases[0]!.postgres;
    expect(pg).toMatchObject({ host: 'localhost', port: 5432, database: 'fractal_db' });
    expect(pg.user).toBeUndefined();
    expect(pg.password).toBeUndefined();
    expect(c.dbEcho).toBe(false);
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.storage).toEqual({ kind: 'file', url: 'file:///srv/app/backups', root: '/srv/app/backups' });
    expect(c.gzipLevel).toBe(6);
    expect(c.queuePrefix).toBe('pgshelf');
    expect(c.concurrency).toBe(1);
    expect(c.databases[0]!.schedule).toBe('0 2 * * *');
    expect(c.databases[0]!.timezone).toBe('UTC');
    expect(c.databases[0]!.retention).toEqual({
      keepLast: 7,
      daily: 7,
      weekly: 4,
      monthly: 12,
      yearly: 0,
      minKeep: 3,
    });
    expect(c.http).toEqual({ host: '127.0.0.1', port: 9187 });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(pg)).toBe(true);
  });

  it('needs POSTGRES_DB only where a database is needed, and then says how to set it', () => {
    const c = loadConfig({ POSTGRES_HOST: 'db.internal' });
    expect(c.databases).toEqual([]);
    expect(() => resolveTarget(c)).toThrow(ConfigError);
    expect(() => resolveTarget(c)).toThrow(
      /no database given: pass --db NAME, or set POSTGRES_DB.*=fractal_db/,
    );
    // --db NAME alone is enough: the POSTGRES_* connection pointed at NAME.
    expect(resolveTarget(c, 'other').postgres).toMatchObject({ host: 'db.internal', database: 'other' });
    expect(() => requireDatabases(c, 'a worker')).toThrow(/POSTGRES_DB is not set: a worker needs/);
  });

  it('takes a UNIX socket directory as POSTGRES_HOST', () => {
    const c = loadConfig({ ...base, POSTGRES_HOST: '/var/run/postgresql', POSTGRES_PORT: '5433' });
    expect(c.databases[0]!.postgres).toMatchObject({ host: '/var/run/postgresql', port: 5433 });
  });

  it('refuses a bad PGSHELF_HTTP_TOKEN without printing it (the message lands in logs)', () => {
    for (const token of ['short-secret', 'a long secret with spaces in it']) {
      let message = '';
      try {
        loadConfig({ ...base, PGSHELF_HTTP_TOKEN: token });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        message = (err as Error).message;
      }
      expect(message).toMatch(/^PGSHELF_HTTP_TOKEN is invalid: at least 16 printable characters/);
      expect(message).not.toContain(token);
    }
    expect(loadConfig({ ...base, PGSHELF_HTTP_TOKEN: 'abcdefghijklmnop' }).http.token).toBe(
      'abcdefghijklmnop',
    );
  });

  it('uses POSTGRES_USER/PASSWORD for the admin role unless POSTGRES_ADMIN_* are set', () => {
    const a = loadConfig({ ...base, POSTGRES_USER: 'app', POSTGRES_PASSWORD: 's3cret' }).databases[0]!
      .postgres;
    expect(a).toMatchObject({ user: 'app', password: 's3cret', adminUser: 'app', adminPassword: 's3cret' });
    const b = loadConfig({
      ...base,
      POSTGRES_USER: 'app',
      POSTGRES_PASSWORD: 'x',
      POSTGRES_ADMIN_USER: 'postgres',
    }).databases[0]!.postgres;
    expect(b).toMatchObject({ user: 'app', adminUser: 'postgres', adminPassword: undefined });
  });

  it.each([
    ['POSTGRES_PORT', 'abc', /POSTGRES_PORT="abc" is invalid.*e\.g\. POSTGRES_PORT=5432/],
    ['POSTGRES_PORT', '70000', /POSTGRES_PORT="70000"/],
    ['PGSHELF_GZIP_LEVEL', '0', /PGSHELF_GZIP_LEVEL="0" is invalid: expected a whole number from 1 to 9/],
    ['PGSHELF_GZIP_LEVEL', '10', /PGSHELF_GZIP_LEVEL/],
    ['PGSHELF_CONCURRENCY', '-1', /PGSHELF_CONCURRENCY/],
    ['PGSHELF_STORAGE', 'ftp://host/x', /only s3:\/\/bucket\/prefix and file:\/\/\/folder are supported/],
    ['PGSHELF_STORAGE', 's3://Bad_Bucket/x', /not a valid S3 bucket name/],
    ['PGSHELF_TIMEZONE', 'Mars/Olympus', /not a known IANA time zone.*Europe\/Paris/],
    ['REDIS_URL', 'localhost:6379', /REDIS_URL.*redis:\/\/127\.0\.0\.1:6379/],
    ['S3_FORCE_PATH_STYLE', 'maybe', /S3_FORCE_PATH_STYLE/],
    ['PGSHELF_QUEUE_PREFIX', 'a b', /PGSHELF_QUEUE_PREFIX/],
  ])('rejects %s=%s with a message naming it and an example', (name, value, message) => {
    expect(() => loadConfig({ ...base, [name]: value })).toThrow(message);
    try {
      loadConfig({ ...base, [name]: value });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).exitCode).toBe(2);
    }
  });

  it('parses S3 storage with endpoint, path style and credentials', () => {
    const c = loadConfig({
      ...base,
      PGSHELF_STORAGE: 's3://my-bucket/nightly/pg/',
      S3_ENDPOINT: 'http://minio:9000',
      AWS_ACCESS_KEY_ID: 'k',
      AWS_SECRET_ACCESS_KEY: 's',
    });
    expect(c.storage).toMatchObject({
      kind: 's3',
      bucket: 'my-bucket',
      prefix: 'nightly/pg',
      endpoint: 'http://minio:9000',
      forcePathStyle: true,
      maxParts: 10000,
      credentials: { accessKeyId: 'k', secretAccessKey: 's' },
    });
    const aws = loadConfig({ ...base, PGSHELF_STORAGE: 's3://my-bucket' });
    expect(aws.storage).toMatchObject({
      prefix: '',
      endpoint: undefined,
      forcePathStyle: false,
      credentials: undefined,
    });
    expect(() => loadConfig({ ...base, PGSHELF_STORAGE: 's3://b-1', AWS_ACCESS_KEY_ID: 'k' })).toThrow(
      /AWS_SECRET_ACCESS_KEY is not set/,
    );
  });

  it('accepts file:// URLs and plain paths for local storage', () => {
    expect(loadConfig({ ...base, PGSHELF_STORAGE: 'file:///var/backups' }).storage).toMatchObject({
      root: '/var/backups',
    });
    expect(loadConfig({ ...base, PGSHELF_STORAGE: 'rel/dir' }, { cwd: '/x' }).storage).toMatchObject({
      root: '/x/rel/dir',
    });
    for (const [given, root] of [
      ['file://./backups', '/x/backups'],
      ['file://../up', '/up'],
      ['./here', '/x/here'],
      ['../there', '/there'],
      ['/abs/path', '/abs/path'],
      ['backups', '/x/backups'],
      ['file:///with%20space', '/with space'],
    ]) {
      expect(loadConfig({ ...base, PGSHELF_STORAGE: given }, { cwd: '/x' }).storage, given).toEqual({
        kind: 'file',
        url: `file://${root}`,
        root,
      });
    }
  });

  it.each([
    ['s3:/bucket', /only s3:\/\/bucket\/prefix and file:\/\/\/folder are supported \(note the two slashes\)/],
    ['file:relative', /only s3:\/\/bucket\/prefix and file:\/\/\/folder/],
    ['file:/tmp/x', /only s3:\/\/bucket\/prefix and file:\/\/\/folder/],
    ['s3:bucket', /only s3:\/\/bucket/],
    ['http://minio:9000/b', /only s3:\/\/bucket/],
    [' s3://bucket', /spaces around it/],
    ['s3://bucket ', /spaces around it/],
    ['s3//b', /looks like a mistyped URL/],
    ['backups:2024', /only s3:\/\/bucket/],
    ['./a//b', /looks like a mistyped URL/],
    ['file://relative', /file:\/\/ is followed by "relative", which is not a path/],
    ['file://', /file:\/\/ needs a folder/],
  ])('refuses the mistyped PGSHELF_STORAGE %j instead of making it a folder', (value, message) => {
    const load = () => loadConfig({ ...base, PGSHELF_STORAGE: value }, { cwd: '/x' });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(message);
    expect(load).toThrow(`PGSHELF_STORAGE=${JSON.stringify(value)} is invalid: `);
    expect(load).toThrow(
      /e\.g\. PGSHELF_STORAGE=file:\/\/\/var\/backups\/pgshelf or PGSHELF_STORAGE=s3:\/\/my-bucket/,
    );
  });
});

describe('storageIdentity', () => {
  it('names the S3 endpoint, with any password in it masked', () => {
    const c = loadConfig({
      ...base,
      PGSHELF_STORAGE: 's3://b-1/pg',
      S3_ENDPOINT: 'http://key:secret@minio:9000/',
    });
    expect(storageIdentity(c.storage)).toBe('s3://b-1/pg at http://key:***@minio:9000');
    expect(storageIdentity(loadConfig({ ...base, PGSHELF_STORAGE: '/srv/b' }).storage)).toBe('file:///srv/b');
  });
});

describe('SETTINGS', () => {
  it('lists every variable loadConfig reads, so --help and the README show them all', async () => {
    // Reads go through the table (read/get) or, for fallbacks that are other tools' conventions, str/env[...].
    const read = new Set<string>();
    for (const file of ['index.ts', 'postgres.ts', 'file.ts']) {
      const source = await readFile(new URL(`../../src/config/${file}`, import.meta.url), 'utf8');
      for (const m of source.matchAll(/\b(?:str|read|get|pick)\(env, '([A-Z0-9_]+)'/g)) read.add(m[1]!);
    }
    const listed = new Set(SETTINGS.map((s) => s.name));
    const conventions = ['AWS_REGION', 'AWS_DEFAULT_REGION'];
    expect([...read].filter((n) => !listed.has(n) && !conventions.includes(n))).toEqual([]);
    expect(read.has('PGSHELF_GZIP_LEVEL')).toBe(true);
    expect(listed.has('PGSHELF_LOCK_DURATION')).toBe(true);
  });
});

describe('DB_ECHO', () => {
  it.each(['true', 'True', '1'])('%s turns echo on', (v) => {
    expect(parseDbEcho(v)).toBe(true);
    expect(loadConfig({ ...base, DB_ECHO: v }).dbEcho).toBe(true);
  });
  it.each([undefined, '', 'false', 'False', '0'])('%s leaves echo off', (v) => {
    expect(parseDbEcho(v)).toBe(false);
  });
  it.each(['TRUE', 'yes', 'on', ' true', '2'])('%s is not one of the three: a clear error', (v) => {
    expect(() => parseDbEcho(v)).toThrow(/DB_ECHO=.* is not recognised: use true, True or 1/);
  });
});

describe('resolveTarget', () => {
  it('points the default connection at another database for --db', () => {
    const c = loadConfig({ ...base, POSTGRES_USER: 'app' });
    expect(resolveTarget(c).name).toBe('fractal_db');
    const other = resolveTarget(c, 'other db');
    expect(other.name).toBe('other db');
    expect(other.postgres).toMatchObject({ database: 'other db', user: 'app' });
  });
});
