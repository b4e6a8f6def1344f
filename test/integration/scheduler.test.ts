import type { Job, Queue } from 'bullmq';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config.js';
import { waitFor } from '../helpers/cli.js';
import { pgEnv, tempDir, uniquePrefix } from '../helpers/env.js';
import { daemon, queues, useCleanup } from '../helpers/lifecycle.js';

const defer = useCleanup();
const scheduler = (env: Env) => daemon('scheduler', env, defer);

async function setup(yaml: string, extra: Env = {}): Promise<{ env: Env; queue: (name: string) => Queue }> {
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'databases.yaml');
  await writeFile(file, yaml);
  const prefix = uniquePrefix();
  const { POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER } = pgEnv('x');
  return {
    env: {
      POSTGRES_HOST,
      POSTGRES_PORT,
      POSTGRES_USER,
      PGSHELF_CONFIG: file,
      PGSHELF_STORAGE: dir,
      PGSHELF_QUEUE_PREFIX: prefix,
      PGSHELF_LOG_LEVEL: 'info',
      ...extra,
    },
    queue: queues(prefix, defer),
  };
}

async function allJobs(q: Queue): Promise<Job[]> {
  return q.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed', 'paused', 'prioritized']);
}

describe('pgshelf scheduler', () => {
  it('two replicas enqueue each slot of each database exactly once', async () => {
    const { env, queue } = await setup(
      'defaults:\n  schedule: "* * * * * *"\ndatabases:\n  - name: alpha\n  - name: beta\n  - name: "gamma db"\n',
      { PGSHELF_CATCH_UP: 'off' },
    );
    const a = scheduler(env);
    const b = scheduler(env);
    await waitFor(
      'both schedulers to start',
      () => a.stderr().includes('scheduler started') && b.stderr().includes('scheduler started'),
    );
    await new Promise((r) => setTimeout(r, 5000));
    a.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
    expect((await a.done).code).toBe(0);
    expect((await b.done).code).toBe(0);

    const jobs = await allJobs(queue('backup'));
    const perSlot = new Map<string, number>();
    for (const j of jobs) {
      const { database, slot } = j.data as { database: string; slot: string };
      perSlot.set(`${database}|${slot}`, (perSlot.get(`${database}|${slot}`) ?? 0) + 1);
    }
    expect([...perSlot.values()].every((n) => n === 1)).toBe(true);
    const slots = [...new Set(jobs.map((j) => (j.data as { slot: string }).slot))].sort();
    expect(slots.length).toBeGreaterThanOrEqual(4);
    // Every database got every slot, and no second was skipped between the first and the last.
    expect(jobs).toHaveLength(3 * slots.length);
    const seconds = slots.map((s) => Date.parse(`${s}Z`) / 1000);
    expect(seconds.at(-1)! - seconds[0]!).toBe(slots.length - 1);
    // Both replicas did enqueue (each logged slots), yet no slot doubled.
    expect(a.stderr()).toMatch(/slot enqueued/);
    expect(b.stderr()).toMatch(/slot enqueued/);
  });

  it('catches up the last missed slot once at start-up, and enqueues drills on their own schedule', async () => {
    const { env, queue } = await setup(
      'databases:\n  - name: app\n    schedule: "0 2 * * *"\n    drill_schedule: "* * * * * *"\n    timezone: Europe/Paris\n',
    );
    const first = scheduler(env);
    await waitFor('a drill slot', async () => (await allJobs(queue('drill'))).length >= 2, 10_000);
    first.child.kill('SIGTERM');
    await first.done;
    const second = scheduler(env);
    await waitFor('the second scheduler to start', () => second.stderr().includes('scheduler started'));
    second.child.kill('SIGTERM');
    await second.done;

    const backups = await allJobs(queue('backup'));
    expect(backups).toHaveLength(1);
    const data = backups[0]!.data as { database: string; slot: string; timezone: string };
    expect(data.database).toBe('app');
    expect(data.slot).toMatch(/T02:00:00$/);
    expect(data.timezone).toBe('Europe/Paris');
    expect(backups[0]!.id).toBe(`backup--app--${data.slot.replace(/[-:]/g, '')}`);
    const drills = await allJobs(queue('drill'));
    expect(drills.every((j) => (j.data as { database: string }).database === 'app')).toBe(true);
  });

  it('fails at start-up on a bad schedule, naming the file, line and key', async () => {
    const { env } = await setup('databases:\n  - name: app\n    schedule: "every night"\n');
    const s = scheduler(env);
    const res = await s.done;
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(
      /databases\.yaml:3: databases\[0\]\.schedule: "every night" is not a cron expression/,
    );
  });
});
