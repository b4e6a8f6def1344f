/**
 * Folder storage stays inside its folder: a symbolic link in it that points elsewhere is neither read, listed nor
 * written through.
 */
import { mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { FsStorage } from '../../src/storage/index.js';
import { runCli } from '../helpers/cli.js';
import { useCleanup } from '../helpers/lifecycle.js';
import { pgEnv, tempDir } from '../helpers/env.js';
import { createDatabase, databaseExists, dropDatabase, uniqueName } from '../helpers/pg.js';

const defer = useCleanup();

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).sort();
}

describe('folder storage containment', () => {
  it('refuses keys that resolve outside the folder through a symbolic link', async () => {
    const db = uniqueName();
    const into = uniqueName('pgshelf_into');
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const root = await tempDir();
    const outside = await tempDir();
    defer(() => rm(root, { recursive: true, force: true }));
    defer(() => rm(outside, { recursive: true, force: true }));

    // A real backup of db, made outside the folder, then linked into it under the database's name.
    const made = await runCli(['backup', '--in-process', '--json'], {
      ...pgEnv(db),
      PGSHELF_STORAGE: outside,
    });
    expect(made.code, made.stderr).toBe(0);
    // A complete plain dump: restored as it stands, were it inside the folder.
    await writeFile(
      path.join(outside, 'x.sql.gz'),
      gzipSync('CREATE TABLE pwned (id int);\n\n--\n-- PostgreSQL database dump complete\n--\n\n'),
    );
    await symlink(outside, path.join(root, 'evil'));
    await symlink(path.join(outside, db), path.join(root, db));
    const env = { ...pgEnv(db), PGSHELF_STORAGE: root };
    const before = await filesUnder(outside);

    const restored = await runCli(['restore', '--key', 'evil/x.sql.gz', '--into', into, '--in-process'], env);
    expect(restored.code).toBe(1);
    expect(restored.stderr).toContain('evil/x.sql.gz');
    expect(restored.stderr).toMatch(/outside/);
    expect(restored.stderr).toContain(root);
    expect(await databaseExists(into)).toBe(false);

    const listed = await runCli(['list', '--all', '--json'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { backups: unknown[] }).backups).toEqual([]);

    const backup = await runCli(['backup', '--in-process'], env);
    expect(backup.code).toBe(1);
    expect(backup.stderr).toContain(root);
    expect(await filesUnder(outside)).toEqual(before);
  });

  it('refuses a write and a read through a link, and a key that resolves outside, with StorageError', async () => {
    const root = await tempDir();
    const outside = await tempDir();
    defer(() => rm(root, { recursive: true, force: true }));
    defer(() => rm(outside, { recursive: true, force: true }));
    await symlink(outside, path.join(root, 'evil'));
    await mkdir(path.join(root, 'ok'));
    const storage = new FsStorage(root);
    await expect(storage.putObject('evil/new.json', '{}')).rejects.toThrow(StorageError);
    expect(() => storage.createWriter('evil/deeper/new.sql.gz')).toThrow(StorageError);
    await writeFile(path.join(outside, 'secret'), 'outside');
    await expect(storage.getObject('evil/secret')).rejects.toThrow(StorageError);
    await expect(storage.openRead('evil/secret')).rejects.toThrow(StorageError);
    await expect(storage.stat('evil/secret')).rejects.toThrow(StorageError);
    await expect(collect(storage.list('evil/'))).rejects.toThrow(StorageError);
    await storage.putObject('ok/in.json', '{}');
    expect((await storage.getObject('ok/in.json'))?.toString()).toBe('{}');
    expect(await collect(storage.list(''))).toEqual([expect.objectContaining({ key: 'ok/in.json' })]);
    expect(await filesUnder(outside)).toEqual(['secret']);
  });
});
