#!/usr/bin/env node
// Backup benchmark: pgshelf (a real worker taking a queued job) against the shell pipeline
// `pg_dump | gzip -N > file` (and `| aws s3 cp -` for S3), side by side in one run, alternating, same gzip level.
// Also the worker's peak RSS (VmHWM) for two database sizes.
//   node bench/backup.mjs [--size-mb 1024] [--small-mb 128] [--reps 2] [--small-reps 5] [--level 6] [--s3 auto|off]
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  args,
  databaseSize,
  ensureDatabase,
  fmt,
  jobWallMs,
  alternate,
  obliterate,
  peakRssKb,
  PG,
  pgEnv,
  root,
  startS3Server,
  startWorker,
  timeCli,
  timeShell,
  which,
} from './lib.mjs';

const opts = args({ sizeMb: 1024, smallMb: 128, reps: 2, smallReps: 5, level: 6, s3: 'auto' });
const work = path.join(root, '.bench');
await mkdir(work, { recursive: true });

const conn = `--host=${PG.host} --port=${PG.port} --username=${PG.user}`;

/** Alternates shell and pgshelf runs `reps` times; returns medians and the ratio. */
async function compare(label, db, target, reps) {
  const prefix = `pgshelf-bench-${randomBytes(3).toString('hex')}`;
  const env = {
    ...pgEnv(db),
    ...target.env,
    PGSHELF_QUEUE_PREFIX: prefix,
    PGSHELF_GZIP_LEVEL: String(opts.level),
  };
  const worker = await startWorker(env);
  let result;
  try {
    const timings = await alternate(
      reps,
      () => timeShell(target.shell(db), env),
      async () => {
        const { out } = await timeCli(['backup', '--json'], env);
        result = out;
        const ms = await jobWallMs(env, 'backup', out.jobId);
        await target.cleanup?.(out);
        return ms;
      },
    );
    const rss = await peakRssKb(worker.pid);
    return {
      label,
      database: db,
      databaseBytes: await databaseSize(db),
      archiveBytes: result.bytes,
      dumpBytes: result.uncompressedBytes,
      ...timings,
      workerPeakRssMb: Math.round(rss / 1024),
    };
  } finally {
    await worker.stop();
    await obliterate(prefix);
  }
}

const folder = {
  env: { PGSHELF_STORAGE: `file://${work}/store` },
  shell: (db) => `pg_dump ${conn} --format=plain --dbname=${db} | gzip -${opts.level} > ${work}/shell.sql.gz`,
  cleanup: async () => rm(path.join(work, 'store'), { recursive: true, force: true }),
};

const results = [];
const big = await ensureDatabase(opts.sizeMb);
const small = await ensureDatabase(opts.smallMb);
// Runs of a small database last a second or two: more of them, so one noisy run does not make the median.
const repsFor = (db) => (db === big ? opts.reps : opts.smallReps);

// Peak RSS for two sizes: a fresh worker each, one backup each.
for (const db of [small, big]) {
  const r = await compare(`folder ${db}`, db, folder, repsFor(db));
  results.push(r);
  console.error(
    `${r.label}: pgshelf ${fmt(r.pgshelfMedianMs)} vs pg_dump|gzip ${fmt(r.shellMedianMs)} -> ratio ${r.ratio}; ` +
      `worker peak RSS ${r.workerPeakRssMb} MB`,
  );
}

const s3server = opts.s3 === 'off' ? undefined : await startS3Server({ requireMoto: true });
if (s3server) {
  try {
    const hasAws = await which('aws');
    const endpoint = s3server.endpoint;
    const s3 = {
      env: s3server.env('pg'),
      shell: (db) =>
        hasAws
          ? `pg_dump ${conn} --format=plain --dbname=${db} | gzip -${opts.level} | aws --endpoint-url ${endpoint} s3 cp - s3://${s3server.bucket}/shell/${db}.sql.gz`
          : `pg_dump ${conn} --format=plain --dbname=${db} | gzip -${opts.level} > ${work}/shell.sql.gz`,
    };
    // Small database first, as for the folder: peak RSS for two sizes, a fresh worker each.
    for (const db of [small, big]) {
      const r = await compare(
        `s3 (${s3server.name}) ${db}${hasAws ? ' vs aws s3 cp -' : ' vs file'}`,
        db,
        s3,
        repsFor(db),
      );
      results.push(r);
      console.error(
        `${r.label}: pgshelf ${fmt(r.pgshelfMedianMs)} vs shell ${fmt(r.shellMedianMs)} -> ratio ${r.ratio}; ` +
          `worker peak RSS ${r.workerPeakRssMb} MB`,
      );
    }
  } finally {
    await s3server.stop();
  }
}

await rm(path.join(work, 'shell.sql.gz'), { force: true });
console.log(
  JSON.stringify(
    { bench: 'backup', gzipLevel: opts.level, reps: opts.reps, smallReps: opts.smallReps, results },
    null,
    2,
  ),
);
