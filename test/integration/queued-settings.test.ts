/**
 * A queued job runs with the worker's settings, so the worker runs it only when they are the ones the command
 * asked for: the same storage and a database it knows. Otherwise the job fails at once, naming both sides.
 */
import { Queue } from 'bullmq';
import { readdir, rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { runCli, waitFor } from '../helpers/cli.js';
import { tempDir } from '../helpers/env.js';
import { daemon, redis, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { createDatabase, databaseExists, dropDatabase, uniqueName } from '../helpers/pg.js';

const defer = useCleanup();

async function files(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter((f) => /\.(gz|json)$/.test(f)).sort();
}

async function failedJobs(env: Env, kind: string): Promise<{ attemptsMade: number; data: unknown }[]> {
  const q = new Queue(kind, { connection: redis, prefix: env.PGSHELF_QUEUE_PREFIX });
  try {
    return (await q.getFailed()).map((j) => ({ attemptsMade: j.attemptsMade, data: j.data as unknown }));
  } finally {
    await q.close();
  }
}

describe('queued jobs carry the command’s database and storage', () => {
  it('a job for another storage fails at once, naming both; nothing is written anywhere', async () => {
    const { dir, env } = await workerFixture(defer);
    const w = daemon('worker', env, defer);
    await waitFor('worker to start', () => w.stderr().includes('worker started'));
    // The worker says what it serves.
    expect(w.stderr()).toContain(
      `"msg":"worker started: storage file://${dir}, databases ${env.POSTGRES_DB}"`,
    );
    const other = await tempDir();
    defer(() => rm(other, { recursive: true, force: true }));

    const res = await runCli(['backup'], { ...env, PGSHELF_STORAGE: other });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`this worker writes to file://${dir}; the job asked for file://${other}`);
    expect(await files(dir)).toEqual([]);
    expect(await files(other)).toEqual([]);
    const [failed] = await failedJobs(env, 'backup');
    expect(failed?.attemptsMade).toBe(1);
    expect(failed?.data).toMatchObject({ storage: `file://${other}` });

    // --json: the failure is a JSON document on stdout as well.
    const json = await runCli(['backup', '--json'], { ...env, PGSHELF_STORAGE: other });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toEqual({
      ok: false,
      error: {
        name: 'JobFailed',
        message: expect.stringMatching(/^backup job 2 failed: this worker writes to/) as string,
        exitCode: 1,
      },
    });
  });

  it('backup, restore, drill and prune for a database the worker does not know fail at once', async () => {
    const { db, dir, env } = await workerFixture(defer);
    // A real database on the same server, which a silent substitution would back up or restore instead.
    const other = uniqueName();
    await createDatabase(other);
    defer(() => dropDatabase(other), { keepOnFailure: true });
    expect((await runCli(['backup', '--in-process'], env)).code).toBe(0);
    const before = await files(dir);
    const w = daemon('worker', env, defer);
    await waitFor('worker to start', () => w.stderr().includes('worker started'));
    const asOther = { ...env, POSTGRES_DB: other };
    const refusal = `does not back up database "${other}": it knows ${db} — start a worker with POSTGRES_DB=${other}`;

    const backup = await runCli(['backup'], asOther);
    expect(backup.code).toBe(1);
    expect(backup.stderr).toContain(`backup job 1 failed: this worker ${refusal}`);

    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const restore = await runCli(['restore', '--into', into], asOther);
    expect(restore.code).toBe(1);
    expect(restore.stderr).toContain(`this worker does not restore backups of database "${other}"`);
    expect(await databaseExists(into)).toBe(false);

    const drill = await runCli(['drill', '--db', other], env);
    expect(drill.code).toBe(1);
    expect(drill.stderr).toContain(`this worker does not drill backups of database "${other}"`);

    const prune = await runCli(['prune', '--db', other], env);
    expect(prune.code).toBe(1);
    expect(prune.stderr).toContain(`this worker does not prune backups of database "${other}"`);

    // Nothing ran: the folder holds exactly the one backup made before, and each job was tried once.
    expect(await files(dir)).toEqual(before);
    for (const kind of ['backup', 'restore', 'drill', 'prune']) {
      const jobs = await failedJobs(env, kind);
      expect(jobs.map((j) => j.attemptsMade)).toEqual([1]);
      expect(jobs[0]?.data).toMatchObject({ database: other, storage: `file://${dir}` });
    }

    // The database the worker knows still runs, named explicitly or by default.
    const ok = await runCli(['backup', '--db', db, '--json'], { ...env, POSTGRES_DB: other });
    expect(ok.code, ok.stderr).toBe(0);
    expect((JSON.parse(ok.stdout) as { database: string }).database).toBe(db);
  });
});
