/** What an operator types is what runs: mistyped storage, databases given by --db alone, JSON on failure. */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { SETTINGS } from '../../src/config/index.js';
import { runCli } from '../helpers/cli.js';
import { pgEnv, tempDir } from '../helpers/env.js';
import { useCleanup } from '../helpers/lifecycle.js';
import {
  createDatabase,
  createSampleSchema,
  dropDatabase,
  snapshotDatabase,
  uniqueName,
} from '../helpers/pg.js';

const defer = useCleanup();

async function scratch(): Promise<string> {
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The connection settings without POSTGRES_DB. */
function serverOnly(): Env {
  const { POSTGRES_DB: _, ...rest } = pgEnv('unused');
  return rest;
}

describe('PGSHELF_STORAGE typos', () => {
  it('a mistyped URL exits 2 with an example and writes nothing; a relative folder is printed resolved', async () => {
    const db = uniqueName();
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    const cwd = await scratch();
    for (const typo of ['s3:/bucket', 'file:relative', 'file:/tmp/x', ' s3://bucket', 's3//b']) {
      const res = await runCli(['backup', '--in-process'], { ...pgEnv(db), PGSHELF_STORAGE: typo }, cwd);
      expect(res.code, typo).toBe(2);
      expect(res.stderr).toMatch(/^pgshelf: PGSHELF_STORAGE=".*" is invalid: .*e\.g\. PGSHELF_STORAGE=/);
    }
    expect(await readdir(cwd, { recursive: true })).toEqual([]);

    const ok = await runCli(['backup', '--in-process'], { ...pgEnv(db), PGSHELF_STORAGE: 'shelf' }, cwd);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain(`storage: folder ${path.join(cwd, 'shelf')}\n`);
    // stderr is a pipe here: progress lines say they are progress, and the last one says it is the last.
    const progress = ok.stderr.split('\n').filter((l) => l.includes('dumped'));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every((l) => l.startsWith('progress: dump: '))).toBe(true);
    expect(progress.at(-1)).toMatch(/ \(final\)$/);
    expect((await readdir(path.join(cwd, 'shelf', db), { recursive: true })).length).toBeGreaterThan(0);
  });

  it('list on a folder that does not exist says so (and --json says it as a JSON document)', async () => {
    const cwd = await scratch();
    const env = { ...pgEnv('anything'), PGSHELF_STORAGE: './no-such-folder' };
    const res = await runCli(['list'], env, cwd);
    expect(res.code).toBe(2);
    expect(res.stderr).toBe(
      `pgshelf: the storage folder ${cwd}/no-such-folder does not exist, so nothing was ever backed up there: ` +
        'check PGSHELF_STORAGE (a relative folder is taken from the current directory), e.g. ' +
        'PGSHELF_STORAGE=file:///var/backups/pgshelf\n',
    );
    expect(res.stdout).toBe('');
    const json = await runCli(['list', '--json'], env, cwd);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toEqual({
      ok: false,
      error: {
        name: 'ConfigError',
        message: expect.stringContaining('does not exist') as string,
        exitCode: 2,
      },
    });

    await mkdir(path.join(cwd, 'no-such-folder'));
    const empty = await runCli(['list', '--json'], env, cwd);
    expect(empty.code, empty.stderr).toBe(0);
    expect(JSON.parse(empty.stdout)).toMatchObject({ ok: true, backups: [] });
  });
});

describe('POSTGRES_DB only where a database is needed', () => {
  it('backup, list, verify and restore work with --db alone; without any database the error names both', async () => {
    const db = uniqueName();
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    await createSampleSchema(db, 20);
    const dir = await scratch();
    const env = { ...serverOnly(), PGSHELF_STORAGE: dir };

    const backup = await runCli(['backup', '--in-process', '--db', db, '--json'], env);
    expect(backup.code, backup.stderr).toBe(0);
    const { id } = JSON.parse(backup.stdout) as { id: string };
    const list = await runCli(['list', '--db', db, '--json'], env);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { backups: { id: string }[] }).backups.map((b) => b.id)).toEqual([id]);
    const all = await runCli(['list', '--all'], env);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toContain(id);
    const verify = await runCli(['verify', '--db', db], env);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toContain(`backup ${id} of "${db}" is intact`);
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const restore = await runCli(['restore', '--in-process', '--db', db, '--into', into], env);
    expect(restore.code, restore.stderr).toBe(0);
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(db));

    for (const args of [['backup', '--in-process'], ['list'], ['verify'], ['backup']]) {
      const res = await runCli(args, env);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr).toMatch(/^pgshelf: no database given: pass --db NAME.* set POSTGRES_DB/m);
    }
    // A worker and the scheduler serve the databases they know, so they need one.
    for (const daemon of ['worker', 'scheduler']) {
      const res = await runCli([daemon], env);
      expect(res.code, daemon).toBe(2);
      expect(res.stderr).toMatch(
        /^pgshelf: POSTGRES_DB is not set: (a worker|the scheduler) needs the databases/,
      );
    }
  });
});

describe('S3 without a region', () => {
  it('names S3_REGION with an example instead of the SDK\'s "Region is missing"', async () => {
    const home = await tempDir('pgshelf-noaws-');
    const res = await runCli(['list', '--db', 'app'], {
      PGSHELF_STORAGE: 's3://some-bucket/pg',
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'example',
      // No ~/.aws/config with a region to find.
      HOME: home,
      AWS_CONFIG_FILE: path.join(home, 'none'),
    });
    expect(res.code, res.stderr).toBe(1);
    expect(res.stderr).toMatch(/no AWS region is set\. Set S3_REGION .*e\.g\. S3_REGION=eu-west-1/);
  });
});

describe('--help', () => {
  it('lists PGSHELF_LOCK_DURATION and the log level default as the README gives it', async () => {
    const res = await runCli(['--help'], {});
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^ {2}PGSHELF_LOCK_DURATION +seconds after which .* \(default: 60\)$/m);
    expect(res.stdout).toMatch(
      /^ {2}PGSHELF_LOG_LEVEL +trace, .* \(default: info for workers, warn for commands\)$/m,
    );
    // Every setting's meaning starts in one column, long names (PGSHELF_S3_REQUEST_TIMEOUT) included.
    const settings = res.stdout.split('Settings (environment variables):\n')[1]!.trimEnd().split('\n');
    expect(settings.length).toBeGreaterThan(30);
    expect(new Set(settings.map((l) => /^ {2}[A-Z0-9_]+ +/.exec(l)?.[0].length)).size).toBe(1);
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toMatch(/\| `PGSHELF_LOG_LEVEL` +\| `info` for workers, `warn` for commands +\|/);
    // Every setting of the table, each on its own line with its default: --help and the README come from it.
    const listed = [...res.stdout.matchAll(/^ {2}([A-Z][A-Z0-9_]+) +.* \(default: .*\)$/gm)].map((m) => m[1]);
    expect(listed).toEqual(SETTINGS.map((s) => s.name));
  });
});

describe("README's Commands block", () => {
  it("gives every option of every command's --help", async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const block = readme.split('### Commands\n\n```\n')[1]!.split('```')[0]!;
    for (const command of ['backup', 'restore', 'restore-server', 'list', 'prune', 'drill', 'verify']) {
      const help = await runCli([command, '--help'], {});
      const options = [...help.stdout.matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]!);
      expect(options.length).toBeGreaterThan(1);
      // The command's line and its continuation lines, up to the next command.
      const usage = block.split(/^(?=pgshelf )/m).find((u) => u.startsWith(`pgshelf ${command} `))!;
      for (const option of options.filter((o) => o !== '--help')) {
        expect(usage, `${command} ${option}`).toContain(option);
      }
    }
  });
});

describe('--json on failure', () => {
  it('prints one JSON document for usage and settings errors; success documents say ok', async () => {
    const usage = await runCli(['backup', '--bogus', '--json'], pgEnv('x'));
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stdout)).toEqual({
      ok: false,
      error: { name: 'UsageError', message: "unknown option '--bogus'", exitCode: 2 },
    });
    const settings = await runCli(['backup', '--json'], { ...pgEnv('x'), PGSHELF_GZIP_LEVEL: '11' });
    expect(settings.code).toBe(2);
    const doc = JSON.parse(settings.stdout) as { ok: boolean; error: { name: string; message: string } };
    expect(doc.ok).toBe(false);
    expect(doc.error.name).toBe('ConfigError');
    expect(doc.error.message).toMatch(/^PGSHELF_GZIP_LEVEL="11" is invalid/);
    // The human message no longer carries the class name.
    expect(settings.stderr).toMatch(/^pgshelf: PGSHELF_GZIP_LEVEL="11" is invalid/);
  });
});
