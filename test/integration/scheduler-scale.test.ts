/**
 * Exactly once past BullMQ's job retention: with more databases on one schedule than finished jobs are kept
 * (removeOnComplete 1,000), a restarted scheduler used to re-queue the slot for every database whose finished job
 * BullMQ had dropped (200 of 1,200). The slot claims in Redis must hold whatever the queue still remembers.
 */
import { Worker, type Queue } from 'bullmq';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/cli.js';
import { pgEnv, tempDir, uniquePrefix } from '../helpers/env.js';
import { daemon, queues, redis, useCleanup } from '../helpers/lifecycle.js';

const defer = useCleanup();
const DATABASES = 1200;

async function counts(q: Queue): Promise<Record<string, number>> {
  return q.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed');
}

describe('scheduler at scale', () => {
  it(`enqueues one slot for ${DATABASES} databases once, even after BullMQ dropped 200 finished ids`, async () => {
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'databases.yaml');
    const names = Array.from({ length: DATABASES }, (_, i) => `db${String(i).padStart(4, '0')}`);
    await writeFile(file, `databases:\n${names.map((n) => `  - name: ${n}\n`).join('')}`);
    const prefix = uniquePrefix();
    const queue = queues(prefix, defer);
    const { POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER } = pgEnv('x');
    const env = {
      POSTGRES_HOST,
      POSTGRES_PORT,
      POSTGRES_USER,
      PGSHELF_CONFIG: file,
      PGSHELF_STORAGE: dir,
      PGSHELF_QUEUE_PREFIX: prefix,
      PGSHELF_LOG_LEVEL: 'info',
      PGSHELF_SCHEDULE: '0 2 * * *',
      PGSHELF_CATCH_UP: 'last',
    };

    const first = daemon('scheduler', env, defer);
    await waitFor('the first scheduler', () => first.stderr().includes('scheduler started'), 60_000);
    first.child.kill('SIGTERM');
    expect((await first.done).code).toBe(0);
    expect((await counts(queue('backup'))).waiting).toBe(DATABASES);

    // A stand-in worker completes every job: BullMQ then keeps only the newest 1,000 finished ids.
    const w = new Worker('backup', () => Promise.resolve('done'), {
      connection: redis,
      prefix,
      concurrency: 50,
    });
    defer(() => w.close());
    await waitFor(
      'every job to finish',
      async () =>
        (await counts(queue('backup'))).waiting === 0 && (await counts(queue('backup'))).active === 0,
      90_000,
    );
    const done = await counts(queue('backup'));
    expect(done.completed).toBe(1000); // 200 ids are gone: the situation the issue measured
    await w.close();

    const second = daemon('scheduler', env, defer);
    await waitFor('the second scheduler', () => second.stderr().includes('scheduler started'), 60_000);
    second.child.kill('SIGTERM');
    expect((await second.done).code).toBe(0);
    const after = await counts(queue('backup'));
    expect([after.waiting, after.prioritized, after.delayed]).toEqual([0, 0, 0]);
    expect(second.stderr()).toMatch(new RegExp(`"alreadyEnqueued":${DATABASES}`));
  });
});
