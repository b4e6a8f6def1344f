#!/usr/bin/env node
// Restore benchmark: pgshelf (a real worker taking a queued restore job) against the shell pipeline
// `createdb X && gunzip -c file | psql -d X`, on the same archive, side by side in one run, alternating.
// Also the worker's peak RSS (VmHWM) for two database sizes.
//   node bench/restore.mjs [--size-mb 1024] [--small-mb 128] [--reps 3] [--small-reps 5]
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  args,
  dropDatabase,
  ensureDatabase,
  fmt,
  jobWallMs,
  alternate,
  obliterate,
  peakRssKb,
  PG,
  pgEnv,
  root,
  settle,
  startWorker,
  timeCli,
  timeShell,
} from './lib.mjs';

const opts = args({ sizeMb: 1024, smallMb: 128, reps: 3, smallReps: 5 });
const work = path.join(root, '.bench', 'restore');
await rm(work, { recursive: true, force: true });
await mkdir(work, { recursive: true });
const conn = `--host=${PG.host} --port=${PG.port} --username=${PG.user}`;

async function compare(db, reps) {
  const prefix = `pgshelf-bench-${randomBytes(3).toString('hex')}`;
  const env = { ...pgEnv(db), PGSHELF_STORAGE: `file://${work}/${db}`, PGSHELF_QUEUE_PREFIX: prefix };
  const { out: backup } = await timeCli(['backup', '--in-process', '--json'], env);
  const worker = await startWorker(env);
  let last;
  try {
    const timings = await alternate(
      reps,
      async (i) => {
        const shellDb = `pgshelf_bench_shell_${i}`;
        await settle();
        const ms = await timeShell(
          `createdb ${conn} ${shellDb} && gunzip -c '${backup.archiveLocation}' | psql ${conn} -X -q -v ON_ERROR_STOP=1 -d ${shellDb} > /dev/null`,
          env,
        );
        await dropDatabase(shellDb);
        return ms;
      },
      async (i) => {
        const oursDb = `pgshelf_bench_ours_${i}`;
        await settle();
        const { out } = await timeCli(['restore', '--into', oursDb, '--json'], env);
        last = out;
        const ms = await jobWallMs(env, 'restore', out.jobId);
        await dropDatabase(oursDb);
        return ms;
      },
    );
    const rss = await peakRssKb(worker.pid);
    return {
      database: db,
      archiveBytes: backup.bytes,
      sqlBytes: last.uncompressedBytes,
      ...timings,
      workerPeakRssMb: Math.round(rss / 1024),
    };
  } finally {
    await worker.stop();
    await obliterate(prefix);
  }
}

const results = [];
for (const size of [opts.smallMb, opts.sizeMb]) {
  const db = await ensureDatabase(size);
  // Runs of a small database last a second or two: more of them, so one noisy run does not make the median.
  const r = await compare(db, size === opts.sizeMb ? opts.reps : opts.smallReps);
  results.push(r);
  console.error(
    `restore ${db}: pgshelf ${fmt(r.pgshelfMedianMs)} vs createdb + gunzip|psql ${fmt(r.shellMedianMs)} -> ratio ` +
      `${r.ratio}; worker peak RSS ${r.workerPeakRssMb} MB`,
  );
}
await rm(work, { recursive: true, force: true });
console.log(
  JSON.stringify({ bench: 'restore', reps: opts.reps, smallReps: opts.smallReps, results }, null, 2),
);
