/**
 * What a child process can see: pg_dump, createdb and psql get an allowlisted environment and the one PGPASSWORD
 * of the role that runs them, whatever else pgshelf was started with.
 */
import { chmod, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/lifecycle.js';
import { pgEnv, tempDir } from '../helpers/env.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { createDatabase, dropDatabase, PG_USER, uniqueName, withClient } from '../helpers/pg.js';

const defer = useCleanup();
const PG_BIN = '/usr/lib/postgresql/15/bin';

const USER_PASSWORD = 'user-pw-Secret1';
const ADMIN_PASSWORD = 'admin-pw-Secret2';
/** Secrets no child may see, by the variable that holds them. */
const SECRETS: Record<string, string> = {
  AWS_ACCESS_KEY_ID: 'AKIA-Secret3',
  AWS_SECRET_ACCESS_KEY: 'aws-Secret4',
  AWS_SESSION_TOKEN: 'aws-token-Secret5',
  REDIS_URL: 'redis://:redis-Secret6@127.0.0.1:6379',
  OTHER_DB_PASSWORD: 'yaml-Secret7',
  PGSHELF_WEBHOOK_SECRET: 'hook-Secret8-0123456789',
};

function parseEnviron(raw: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of raw.toString('utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) out[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return out;
}

/** Asserts the environment holds no secret, no pgshelf setting, and PGPASSWORD (when present) is `password`. */
function expectClean(env: Record<string, string>, password: string): void {
  const text = Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n');
  for (const secret of [
    ...Object.values(SECRETS),
    password === USER_PASSWORD ? ADMIN_PASSWORD : USER_PASSWORD,
  ])
    expect(text).not.toContain(secret);
  expect(Object.keys(env).filter((k) => /^(AWS_|PGSHELF_|REDIS_|POSTGRES_|OTHER_)/.test(k))).toEqual([]);
  if (env.PGPASSWORD !== undefined) expect(env.PGPASSWORD).toBe(password);
  expect(env.PATH).toBeTruthy();
}

/** Pids whose parent is `ppid` and whose program name is `comm`. */
async function childrenNamed(ppid: number, comm: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid ...
    const m = /^\d+ \((.*)\) \S+ (\d+)/s.exec(stat);
    if (m?.[1] === comm && Number(m[2]) === ppid) found.push(Number(entry));
  }
  return found;
}

/** A bin directory whose tools save the environment they were started with, then run the real tool. */
async function recordingBin(dir: string, tools: string[]): Promise<void> {
  for (const tool of tools) {
    const file = path.join(dir, tool);
    await writeFile(
      file,
      `#!/bin/sh\ncat /proc/$$/environ > "${dir}/${tool}.$$.environ"\nexec ${PG_BIN}/${tool} "$@"\n`,
    );
    await chmod(file, 0o755);
  }
}

async function recorded(dir: string, tool: string): Promise<Record<string, string>[]> {
  const files = (await readdir(dir)).filter((f) => f.startsWith(`${tool}.`) && f.endsWith('.environ'));
  return Promise.all(files.map(async (f) => parseEnviron(await readFile(path.join(dir, f)))));
}

describe('child process environment', () => {
  it('pg_dump, createdb and psql see no secret but the PGPASSWORD of the role they run as', async () => {
    const db = uniqueName();
    const into = uniqueName('pgshelf_into');
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    defer(() => dropDatabase(into), { keepOnFailure: true });
    await withClient(db, (c) =>
      c.query('CREATE TABLE held (id int PRIMARY KEY); INSERT INTO held SELECT generate_series(1, 100)'),
    );
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const bin = await tempDir();
    defer(() => rm(bin, { recursive: true, force: true }));
    await recordingBin(bin, ['createdb', 'psql']);
    const yaml = path.join(dir, 'databases.yaml');
    await writeFile(
      yaml,
      'databases:\n  - name: other\n    user: other\n    password_env: OTHER_DB_PASSWORD\n',
    );
    const env = {
      ...pgEnv(db),
      ...SECRETS,
      POSTGRES_PASSWORD: USER_PASSWORD,
      POSTGRES_ADMIN_USER: PG_USER,
      POSTGRES_ADMIN_PASSWORD: ADMIN_PASSWORD,
      PGSHELF_CONFIG: yaml,
      PGSHELF_STORAGE: path.join(dir, 'backups'),
    };

    // pg_dump waits for the lock held here, so its /proc/<pid>/environ can be read while it runs.
    const dumpEnv = await withClient(db, async (c) => {
      await c.query('BEGIN');
      await c.query('LOCK TABLE held IN ACCESS EXCLUSIVE MODE');
      const cli = startCli(['backup', '--in-process', '--json'], env);
      const pid = cli.child.pid!;
      try {
        // The first pg_dump child may be the `pg_dump --version` of the tool lookup, gone by the time its
        // environ is read: wait for the dump itself, and look again if a process ends between the two reads.
        return await waitFor('pg_dump to start its dump', async () => {
          for (const dumpPid of await childrenNamed(pid, 'pg_dump')) {
            const args = (await readFile(`/proc/${dumpPid}/cmdline`, 'utf8').catch(() => '')).split('\0');
            if (args.length < 2 || args.includes('--version')) continue;
            const environ = await readFile(`/proc/${dumpPid}/environ`).catch(() => undefined);
            if (environ !== undefined) return parseEnviron(environ);
          }
          return undefined;
        });
      } finally {
        await c.query('COMMIT');
        const res = await cli.done;
        expect(res.code, res.stderr).toBe(0);
      }
    });
    expectClean(dumpEnv, USER_PASSWORD);
    expect(dumpEnv.PGPASSWORD).toBe(USER_PASSWORD);

    const res = await runCli(['restore', '--in-process', '--into', into, '--json'], {
      ...env,
      PGSHELF_PG_BIN: bin,
    });
    expect(res.code, res.stderr).toBe(0);
    const rows = await withClient(into, (c) => c.query<{ n: string }>('SELECT count(*) AS n FROM held'));
    expect(rows.rows[0]?.n).toBe('100');

    const createdb = await recorded(bin, 'createdb');
    const psql = await recorded(bin, 'psql');
    // Each tool ran at least twice: `--version` when it was looked up, then for real.
    expect(createdb.length).toBeGreaterThanOrEqual(2);
    expect(psql.length).toBeGreaterThanOrEqual(2);
    for (const e of createdb) expectClean(e, ADMIN_PASSWORD);
    for (const e of psql) expectClean(e, USER_PASSWORD);
    expect(createdb.some((e) => e.PGPASSWORD === ADMIN_PASSWORD)).toBe(true);
    expect(psql.some((e) => e.PGPASSWORD === USER_PASSWORD)).toBe(true);
  });
});
