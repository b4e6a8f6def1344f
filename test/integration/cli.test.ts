import { readFile, rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/lifecycle.js';
import { pgEnv, tempDir } from '../helpers/env.js';
import { runCli } from '../helpers/cli.js';
import {
  awkwardName,
  createDatabase,
  createSampleSchema,
  dropDatabase,
  snapshotDatabase,
  uniqueName,
} from '../helpers/pg.js';
import { restoreByHand } from '../helpers/restore.js';

const defer = useCleanup();

describe('pgshelf backup --in-process', () => {
  it('with DB_ECHO=1 logs the SQL it runs and pg_dump argv, never the password', async () => {
    const db = uniqueName();
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const password = 'pa$$w0rd-that-must-not-leak';
    const res = await runCli(['backup', '--in-process', '--json'], {
      ...pgEnv(db),
      POSTGRES_PASSWORD: password,
      PGSHELF_STORAGE: dir,
      DB_ECHO: '1',
    });
    expect(res.code, res.stderr).toBe(0);
    const logs = res.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; sql?: string; argv?: string[] });
    expect(logs.some((l) => l.msg === 'sql' && /server_version_num/.test(l.sql ?? ''))).toBe(true);
    const exec = logs.find((l) => l.msg === 'exec');
    expect(exec?.argv?.[0]).toMatch(/pg_dump$/);
    expect(exec?.argv).toContain('--format=plain');
    expect(exec?.argv).toContain(`--dbname=dbname='${db}'`);
    expect(res.stderr).not.toContain(password);
    expect(res.stdout).not.toContain(password);
    const out = JSON.parse(res.stdout) as { manifestLocation: string };
    expect(await readFile(out.manifestLocation, 'utf8')).not.toContain(password);
  });

  it('without DB_ECHO logs no SQL', async () => {
    const db = uniqueName();
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const res = await runCli(['backup', '--in-process', '--json'], { ...pgEnv(db), PGSHELF_STORAGE: dir });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).not.toMatch(/"msg":"(sql|exec)"/);
  });

  it('backs up a database with an awkward name into a relative folder, restorable by hand', async () => {
    const db = awkwardName();
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    await createSampleSchema(db, 40);
    const cwd = await tempDir();
    defer(() => rm(cwd, { recursive: true, force: true }));
    const res = await runCli(['backup', '--in-process', '--json', '--db', db], { ...pgEnv('postgres') }, cwd);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { archiveLocation: string; database: string };
    expect(out.database).toBe(db);
    expect(out.archiveLocation.startsWith(`${cwd}/backups/`)).toBe(true);
    const restored = uniqueName('pgshelf_r');
    defer(() => dropDatabase(restored), { keepOnFailure: true });
    await restoreByHand(out.archiveLocation, restored);
    expect(await snapshotDatabase(restored)).toEqual(await snapshotDatabase(db));
  });
});
