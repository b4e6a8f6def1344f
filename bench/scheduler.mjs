#!/usr/bin/env node
// Scheduler benchmark: enqueue one slot for N databases (default 1,000) sharing a schedule, on real Redis,
// measured as the scheduler does it (one addBulk per schedule), and again to show a second replica's
// enqueue of the same slot adds nothing.
//   node bench/scheduler.mjs [--databases 1000] [--reps 5]
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { loadConfig } from '../dist/config/index.js';
import { silentLogger } from '../dist/logger.js';
import { groupSchedules, startScheduler } from '../dist/scheduler/index.js';
import { nextSlot } from '../dist/scheduler/slots.js';
import { args, median } from './lib.mjs';

const opts = args({ databases: 1000, reps: 5 });
const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-bench-'));
const file = path.join(dir, 'databases.yaml');
await writeFile(
  file,
  'defaults:\n  schedule: "0 2 * * *"\ndatabases:\n' +
    Array.from({ length: opts.databases }, (_, i) => `  - name: db_${String(i).padStart(4, '0')}\n`).join(''),
);
const first = [];
const again = [];
let count = 0;
for (let rep = 0; rep < opts.reps; rep++) {
  const prefix = `pgshelf-bench-${randomBytes(3).toString('hex')}`;
  const config = loadConfig({
    PGSHELF_CONFIG: file,
    PGSHELF_QUEUE_PREFIX: prefix,
    PGSHELF_CATCH_UP: 'off',
    PATH: process.env.PATH,
  });
  const scheduler = startScheduler({ config, logger: silentLogger() });
  await scheduler.ready;
  const [group] = groupSchedules(config.databases);
  const slot = nextSlot(group.expr, group.timezone, new Date(Date.UTC(2026, 0, 1 + rep)));
  let t0 = process.hrtime.bigint();
  await scheduler.enqueueSlot(group, slot);
  first.push(Number(process.hrtime.bigint() - t0) / 1e6);
  t0 = process.hrtime.bigint();
  await scheduler.enqueueSlot(group, slot);
  again.push(Number(process.hrtime.bigint() - t0) / 1e6);
  const q = new Queue('backup', { connection: { host: '127.0.0.1', port: 6379 }, prefix });
  count = await q.getJobCountByTypes('waiting', 'delayed', 'prioritized');
  await q.obliterate({ force: true });
  await q.close();
  await scheduler.stop();
}
await rm(dir, { recursive: true, force: true });
const result = {
  bench: 'scheduler',
  databases: opts.databases,
  jobsAfterTwoEnqueues: count,
  firstEnqueueMs: first.map((v) => Math.round(v)),
  medianFirstEnqueueMs: Math.round(median(first)),
  secondReplicaEnqueueMs: Math.round(median(again)),
};
console.error(
  `scheduler: one slot for ${opts.databases} databases enqueued in ${result.medianFirstEnqueueMs} ms (median of ${opts.reps}); ` +
    `the same slot again (a second replica) ${result.secondReplicaEnqueueMs} ms; ${count} jobs in the queue`,
);
console.log(JSON.stringify(result, null, 2));
