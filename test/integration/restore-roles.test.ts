import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { RestoreFailedError } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';
import { baseEnv, pgEnv, tempDir } from '../helpers/env.js';
import { useCleanup } from '../helpers/lifecycle.js';
import {
  createDatabase,
  createSampleSchema,
  dropDatabase,
  snapshotDatabase,
  uniqueName,
  withClient,
} from '../helpers/pg.js';
import { ctx, jobs } from '../helpers/jobs.js';

const defer = useCleanup();
const README = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../README.md');

async function sampleDatabase(): Promise<{ source: string; dir: string }> {
  const source = uniqueName();
  await createDatabase(source);
  defer(() => dropDatabase(source), { keepOnFailure: true });
  await createSampleSchema(source, 100);
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  return { source, dir };
}

/** The README's role SQL ("Least privilege" under "Restoring"), with unique role names. */
async function readmeRoles(): Promise<{ backup: string; restore: string }> {
  const readme = await readFile(README, 'utf8');
  const restoring = readme.slice(readme.indexOf('## Restoring'), readme.indexOf('### Verifying archives'));
  const block = /```sql\n([\s\S]*?)```/.exec(restoring)?.[1];
  expect(block).toContain('pg_read_all_data');
  const roles = { backup: uniqueName('pgshelf_backup'), restore: uniqueName('pgshelf_restore') };
  const sql = block!.replaceAll('pgshelf_backup', roles.backup).replaceAll('pgshelf_restore', roles.restore);
  defer(() =>
    withClient('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${roles.backup}, ${roles.restore}`)),
  );
  await withClient('postgres', (c) => c.query(sql));
  return roles;
}

describe('least privilege', () => {
  it("backs up with the README's backup role and restores with its restore role: same data, no warning", async () => {
    const { source, dir } = await sampleDatabase();
    const roles = await readmeRoles();
    const base = { ...pgEnv(source), PGSHELF_STORAGE: dir };
    await jobs({ ...base, POSTGRES_USER: roles.backup }).backup({}, ctx());
    const into = uniqueName('pgshelf_into');
    // Registered after the roles: runs before they are dropped.
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const env = { ...base, POSTGRES_USER: roles.restore, POSTGRES_ADMIN_USER: roles.restore };
    const result = await jobs(env).restore({ into, noOwner: true }, ctx());
    expect(result.warnings).toEqual([]);
    expect(result.owner).toBe(roles.restore);
    const [a, b] = [await snapshotDatabase(into), await snapshotDatabase(source)];
    expect(a.tables).toEqual(b.tables);
    expect(a.sequences).toEqual(b.sequences);
    expect(a.indexes).toEqual(b.indexes);
  });

  it('warns, in the result and on the CLI, when the restoring role is a superuser', async () => {
    const { source, dir } = await sampleDatabase();
    const env = { ...pgEnv(source), PGSHELF_STORAGE: dir };
    await jobs(env).backup({}, ctx());
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const cli = await runCli(['restore', '--into', into, '--in-process'], { ...baseEnv(), ...env });
    expect(cli.code).toBe(0);
    expect(cli.stderr).toMatch(/warning: the restoring role "postgres" \(POSTGRES_USER\) has SUPERUSER/);
    const again = uniqueName('pgshelf_into');
    defer(() => dropDatabase(again), { keepOnFailure: true });
    expect((await jobs(env).restore({ into: again }, ctx())).warnings).toEqual([
      expect.stringMatching(/has SUPERUSER( and CREATEROLE)?: the archive's SQL runs with those rights/),
    ]);
  });

  it('suggests --no-owner when the dump gives objects to a role the server lacks', async () => {
    const { source, dir } = await sampleDatabase();
    const env = { ...pgEnv(source), PGSHELF_STORAGE: dir };
    const backup = await jobs(env).backup({}, ctx());
    const ghost = uniqueName('pgshelf_ghost');
    const sql = gunzipSync(await readFile(backup.archiveLocation)).toString('utf8');
    await writeFile(
      path.join(dir, 'ghost.sql.gz'),
      gzipSync(sql.replaceAll('OWNER TO postgres;', `OWNER TO ${ghost};`)),
    );
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const attempt = jobs(env).restore({ into, key: 'ghost.sql.gz' }, ctx());
    await expect(attempt).rejects.toThrow(RestoreFailedError);
    await expect(attempt).rejects.toThrow(`role "${ghost}" does not exist`);
    await expect(attempt).rejects.toThrow(/restore with --no-owner/);
    const restored = await jobs(env).restore({ into, key: 'ghost.sql.gz', noOwner: true }, ctx());
    expect(restored.database).toBe(into);
  });
});
