/**
 * Fault: Redis stops and starts again while a worker is in the middle of a backup and a scheduler enqueues a slot
 * every second. The Redis is the test's own, configured as a deployment configures it for BullMQ (append-only
 * file in a directory of its own, so a restart keeps the queued jobs); the shared one is never touched.
 */
import { Queue, type Job } from 'bullmq';
import { readdir, rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { slotJobId } from '../../src/queues.js';
import { waitFor } from '../helpers/cli.js';
import { pgEnv, tempDir, uniquePrefix } from '../helpers/env.js';
import { daemon, sampleDatabase, useCleanup } from '../helpers/lifecycle.js';
import { dumpIsWaiting, lockTable } from '../helpers/pg.js';
import { privateRedis } from '../helpers/services.js';

const defer = useCleanup();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('fault: Redis restarted under a worker and a scheduler', () => {
  it('both reconnect, the running backup completes, and every per-second slot is handled once: its own job or coalesced', async () => {
    const redis = await privateRedis(defer);
    const db = await sampleDatabase(defer, 50);
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const prefix = uniquePrefix();
    const env: Env = {
      ...pgEnv(db),
      REDIS_URL: redis.url,
      PGSHELF_STORAGE: dir,
      PGSHELF_QUEUE_PREFIX: prefix,
      PGSHELF_SCHEDULE: '* * * * * *',
      PGSHELF_CATCH_UP: 'off',
      PGSHELF_RETRY_DELAY: '1',
      // Retention would delete backups as fast as the slots make them; every one must stay to be counted.
      PGSHELF_KEEP_LAST: '1000',
      PGSHELF_LOG_LEVEL: 'info',
    };
    const connection = { host: '127.0.0.1', port: redis.port };
    const backups = new Queue('backup', { connection, prefix });
    const prunes = new Queue('prune', { connection, prefix });
    defer(async () => {
      await backups.close();
      await prunes.close();
    });

    // A backup held on a table lock is running when Redis goes away.
    const lock = await lockTable(db, 'app.orders');
    defer(() => lock.release());
    const worker = daemon('worker', env, defer);
    const scheduler = daemon('scheduler', env, defer);
    await waitFor('a backup to be running', () => dumpIsWaiting(db), 30_000);
    await sleep(1000);
    await redis.stop();
    await sleep(3000);
    await redis.start();
    // Keep the one worker busy until the scheduler, reconnected, has handled two more slots: the second of them
    // finds the first still waiting and must coalesce into it (releasing at once raced the reconnection).
    const handledSoFar = (): number => (scheduler.stderr().match(/"msg":"slot enqueued"/g) ?? []).length;
    const before = handledSoFar();
    await waitFor('two slots after the outage', () => handledSoFar() >= before + 2, 30_000);
    await lock.release();
    await sleep(4000);
    scheduler.child.kill('SIGTERM');
    const stopped = await scheduler.done;
    expect(stopped.code, stopped.stderr).toBe(0);

    // Neither process was restarted: both are the ones started above, and the worker still runs.
    expect(worker.child.exitCode).toBeNull();
    const jobs: Job[] = await backups.getJobs(['completed', 'failed', 'active', 'waiting', 'delayed']);
    await waitFor(
      'every slot to be backed up',
      async () => (await backups.getJobCounts('completed')).completed === jobs.length,
      60_000,
    );
    expect(await backups.getJobCounts('failed', 'active', 'waiting', 'delayed')).toMatchObject({
      failed: 0,
      active: 0,
      waiting: 0,
      delayed: 0,
    });

    // No slot lost: the scheduler handled consecutive seconds, before, during and after the outage, each once,
    // either as a job of its own or coalesced into the database's job that was still waiting (one worker, busy
    // with the held backup); none doubled: one job per enqueued slot, with the slot's deterministic id.
    const handled = stopped.stderr
      .split('\n')
      .filter((l) => l.includes('"msg":"slot enqueued"'))
      .map(
        (l) =>
          JSON.parse(l) as { slot: string; enqueued: number; coalesced: number; alreadyEnqueued: number },
      );
    const handledSeconds = handled.map((h) => Date.parse(`${h.slot}Z`) / 1000).sort((a, b) => a - b);
    expect(handled.every((h) => h.enqueued + h.coalesced + h.alreadyEnqueued === 1)).toBe(true);
    expect(new Set(handledSeconds).size).toBe(handled.length);
    expect(handledSeconds.at(-1)! - handledSeconds[0]!).toBe(handled.length - 1);
    expect(handled.length).toBeGreaterThanOrEqual(8);
    const slots = jobs.map((j) => (j.data as { slot: string }).slot).sort();
    expect(slots).toEqual(
      handled
        .filter((h) => h.enqueued === 1)
        .map((h) => h.slot)
        .sort(),
    );
    expect(handled.some((h) => h.coalesced === 1)).toBe(true);
    for (const j of jobs)
      expect(j.id).toBe(slotJobId('backup', db, { local: (j.data as { slot: string }).slot }));

    // Storage holds exactly one complete backup per slot: the ids the jobs returned, each with its manifest.
    const done = await Promise.all(jobs.map(async (j) => (await backups.getJob(j.id!))!));
    const ids = done.map((j) => (j.returnvalue as { id: string }).id).sort();
    const files = (await readdir(dir, { recursive: true })).map(String);
    const manifests = files.filter((f) => f.endsWith('.manifest.json'));
    const archives = files.filter((f) => f.endsWith('.sql.gz'));
    expect(manifests.map((f) => f.match(/_([0-9a-f]{8})\.manifest\.json$/)?.[1]).sort()).toEqual(ids);
    expect(archives).toHaveLength(ids.length);
    expect(files.filter((f) => f.endsWith('.partial'))).toEqual([]);
    // The backup that was running when Redis went away took one attempt: it was not run twice.
    const first = done.find((j) => (j.data as { slot: string }).slot === slots[0])!;
    expect(first.attemptsMade).toBe(1);
    // It said Redis was gone while it was (one plain line, then that it was back), and no job failed because of it.
    expect(worker.stderr()).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+ \(/);
    expect(worker.stderr()).toMatch(/Redis is back/);
    expect(worker.stderr()).not.toMatch(/job failed/);
    // Through the logger: no unhandled error events on stderr.
    expect(worker.stderr()).not.toMatch(/Unhandled error event/);
  }, 90_000);
});
