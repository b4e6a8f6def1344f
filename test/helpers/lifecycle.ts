/** Per-test clean-up, worker processes and queues, shared by the integration tests. */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { rm } from 'node:fs/promises';
import { afterEach } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { JOB_KINDS } from '../../src/queues.js';
import { startCli, type RunningCli } from './cli.js';
import { pgEnv, tempDir, uniquePrefix } from './env.js';
import { createDatabase, createSampleSchema, dropDatabase, uniqueName } from './pg.js';

interface Deferred {
  readonly fn: () => Promise<unknown>;
  /** Kept for inspection when the test fails (databases). */
  readonly keepOnFailure: boolean;
}

/**
 * Registers an afterEach that undoes, in reverse order, what `defer` was given during the test. Databases
 * (deferred with keepOnFailure) are left behind when the test fails, for inspection.
 */
export function useCleanup(): (fn: () => Promise<unknown>, options?: { keepOnFailure?: boolean }) => void {
  const pending: Deferred[] = [];
  afterEach(async (ctx) => {
    const failed = ctx.task.result?.state === 'fail';
    for (const d of pending.splice(0).reverse()) {
      if (!(failed && d.keepOnFailure)) await d.fn();
    }
  });
  return (fn, options = {}) => pending.push({ fn, keepOnFailure: options.keepOnFailure ?? false });
}

export const redis = { host: '127.0.0.1', port: 6379 };

/** A queue of the given prefix, obliterated after the test. */
export function queues(prefix: string, defer: ReturnType<typeof useCleanup>): (name: string) => Queue {
  const open = new Map<string, Queue>();
  defer(async () => {
    for (const name of JOB_KINDS) {
      const q = open.get(name) ?? new Queue(name, { connection: redis, prefix });
      await q.obliterate({ force: true });
      await q.close();
    }
    // The scheduler's own keys (slot claims, last job per database) and the alerts' live beside the queues.
    const client = new Redis(redis);
    try {
      for (const match of [`${prefix}:scheduler:*`, `${prefix}:alerts:*`]) {
        for await (const keys of client.scanStream({ match, count: 1000 })) {
          if ((keys as string[]).length > 0) await client.del(...(keys as string[]));
        }
      }
    } finally {
      client.disconnect();
    }
  });
  return (name) => {
    let q = open.get(name);
    if (!q) open.set(name, (q = new Queue(name, { connection: redis, prefix })));
    return q;
  };
}

/** `pgshelf <command>` as a long-running child process (worker, scheduler, serve), killed after the test. */
export function daemon(
  command: 'worker' | 'scheduler' | 'serve',
  env: Env,
  defer: ReturnType<typeof useCleanup>,
): RunningCli {
  const child = startCli([command], env);
  defer(async () => {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
    await child.done;
  });
  return child;
}

/** A new database holding the sample schema with `rows` orders; dropped after the test (kept when it fails). */
export async function sampleDatabase(
  defer: ReturnType<typeof useCleanup>,
  rows: number,
  name = uniqueName(),
): Promise<string> {
  await createDatabase(name);
  defer(() => dropDatabase(name), { keepOnFailure: true });
  await createSampleSchema(name, rows);
  return name;
}

/** A sample database, a storage folder and a queue prefix of its own: what a worker test starts from. */
export async function workerFixture(
  defer: ReturnType<typeof useCleanup>,
  options: { rows?: number; env?: Env } = {},
): Promise<{ db: string; dir: string; env: Env; queue: (name: string) => Queue }> {
  const db = await sampleDatabase(defer, options.rows ?? 100);
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const prefix = uniquePrefix();
  const env: Env = {
    ...pgEnv(db),
    PGSHELF_STORAGE: dir,
    PGSHELF_QUEUE_PREFIX: prefix,
    PGSHELF_RETRY_DELAY: '1',
    PGSHELF_LOG_LEVEL: 'info',
    ...options.env,
  };
  return { db, dir, env, queue: queues(prefix, defer) };
}
