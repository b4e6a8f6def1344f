#!/usr/bin/env node
// Backup benchmark: pgshelf (a real worker taking a queued job) against the shell pipelines `pg_dump | gzip -6`,
// `pg_dump | pigz -6` (and `pg_dump | zstd -3` against PGSHELF_COMPRESSION=zstd where Node has zstd), side by side
// in one run, order rotating each round, same level. Three databases: the small and large bench databases and the
// issue-13 shape (pgbench -s 20 plus a 1M-row jsonb table). Also each worker's peak RSS, and the archive's size
// against gzip -6's. To S3 (moto): pgshelf against `pg_dump | gzip | aws s3 cp -`.
//   node bench/backup.mjs [--size-mb 1024] [--small-mb 128] [--reps 2] [--small-reps 5] [--level 6] [--s3 auto|off]
//                         [--databases small,jsonb,large]
import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  args,
  databaseSize,
  ensureDatabase,
  ensureJsonbDatabase,
  fmt,
  jobWallMs,
  obliterate,
  peakRssKb,
  PG,
  pgEnv,
  root,
  rounds,
  settle,
  startS3Server,
  startWorker,
  timeCli,
  timeShell,
  which,
} from './lib.mjs';

const opts = args({
  sizeMb: 1024,
  smallMb: 128,
  reps: 2,
  smallReps: 5,
  level: 6,
  s3: 'auto',
  databases: 'small,jsonb,large',
});
const work = path.join(root, '.bench');
await mkdir(work, { recursive: true });
const conn = `--host=${PG.host} --port=${PG.port} --username=${PG.user}`;
const zstd = typeof zlib.createZstdCompress === 'function' && (await which('zstd'));
const pigz = await which('pigz');
const dump = (db) => `pg_dump ${conn} --format=plain --dbname=${db}`;

/** A worker with its own queue prefix and settings; `backup()` queues one backup and returns its job wall ms. */
async function worker(db, env) {
  const prefix = `pgshelf-bench-${randomBytes(3).toString('hex')}`;
  const full = { ...pgEnv(db), ...env, PGSHELF_QUEUE_PREFIX: prefix, PGSHELF_GZIP_LEVEL: String(opts.level) };
  const w = await startWorker(full);
  let last;
  return {
    last: () => last,
    backup: async () => {
      const { out } = await timeCli(['backup', '--json'], full);
      last = out;
      const ms = await jobWallMs(full, 'backup', out.jobId);
      if (env.PGSHELF_STORAGE?.startsWith('file://'))
        await rm(new URL(env.PGSHELF_STORAGE).pathname, { recursive: true, force: true });
      return ms;
    },
    peakRssMb: async () => Math.round((await peakRssKb(w.pid)) / 1024),
    stop: async () => {
      await w.stop();
      await obliterate(prefix);
    },
  };
}

/** One database to a folder: every contender once per round. */
async function folderCase(db, reps) {
  const gz = await worker(db, { PGSHELF_STORAGE: `file://${work}/store-gzip` });
  const zs = zstd
    ? await worker(db, { PGSHELF_STORAGE: `file://${work}/store-zstd`, PGSHELF_COMPRESSION: 'zstd' })
    : undefined;
  const sizes = {};
  const shell = (name, cmd, file) => ({
    name,
    run: async () => {
      const ms = await timeShell(`${dump(db)} | ${cmd} > ${file}`);
      sizes[name] = (await stat(file)).size;
      await rm(file, { force: true });
      return ms;
    },
  });
  const contenders = [
    shell('gzip', `gzip -${opts.level}`, `${work}/shell.sql.gz`),
    ...(pigz ? [shell('pigz', `pigz -${opts.level}`, `${work}/shell-pigz.sql.gz`)] : []),
    { name: 'pgshelf', run: () => gz.backup() },
    ...(zs
      ? [
          shell('zstd', 'zstd -3 -q', `${work}/shell.sql.zst`),
          { name: 'pgshelfZstd', run: () => zs.backup() },
        ]
      : []),
  ];
  try {
    const r = await rounds(reps, contenders, { before: settle });
    const archiveBytes = gz.last().bytes;
    return {
      kind: 'backup',
      target: 'folder',
      database: db,
      databaseBytes: await databaseSize(db),
      dumpBytes: gz.last().uncompressedBytes,
      reps,
      ms: r.times,
      medianMs: r.medians,
      ratios: {
        vsGzip: r.ratio('pgshelf', 'gzip'),
        vsPigz: r.ratio('pgshelf', 'pigz'),
        zstdVsZstd: r.ratio('pgshelfZstd', 'zstd'),
        zstdVsGzip: r.ratio('pgshelfZstd', 'gzip'),
        zstdVsPgshelfGzip: r.ratio('pgshelfZstd', 'pgshelf'),
      },
      bytes: {
        pgshelf: archiveBytes,
        gzip: sizes.gzip,
        pigz: sizes.pigz,
        pgshelfZstd: zs?.last().bytes,
        zstd: sizes.zstd,
      },
      sizeVsGzip: Number((archiveBytes / sizes.gzip).toFixed(4)),
      workerPeakRssMb: await gz.peakRssMb(),
      zstdWorkerPeakRssMb: zs ? await zs.peakRssMb() : undefined,
      zstd: zs
        ? 'measured'
        : `skipped: Node ${process.version} has no zstd in zlib (22.15+) or no zstd command`,
    };
  } finally {
    await gz.stop();
    await zs?.stop();
  }
}

/** One database to S3 (moto): pgshelf against `pg_dump | gzip | aws s3 cp -` (or to a file without aws). */
async function s3Case(db, reps, s3server, hasAws) {
  const w = await worker(db, s3server.env('pg'));
  const shellCmd = hasAws
    ? `${dump(db)} | gzip -${opts.level} | aws --endpoint-url ${s3server.endpoint} s3 cp - s3://${s3server.bucket}/shell/${db}.sql.gz`
    : `${dump(db)} | gzip -${opts.level} > ${work}/shell.sql.gz`;
  try {
    const r = await rounds(
      reps,
      [
        { name: 'shell', run: () => timeShell(shellCmd, s3server.env('pg')) },
        { name: 'pgshelf', run: () => w.backup() },
      ],
      { before: settle },
    );
    return {
      kind: 'backup',
      target: `s3 (${s3server.name})${hasAws ? ' vs aws s3 cp -' : ' vs file'}`,
      database: db,
      reps,
      ms: r.times,
      medianMs: r.medians,
      ratios: { vsShell: r.ratio('pgshelf', 'shell') },
      workerPeakRssMb: await w.peakRssMb(),
    };
  } finally {
    await w.stop();
  }
}

const wanted = opts.databases.split(',');
const databases = [];
if (wanted.includes('small')) databases.push([await ensureDatabase(opts.smallMb), opts.smallReps]);
if (wanted.includes('jsonb')) databases.push([await ensureJsonbDatabase(), opts.reps]);
if (wanted.includes('large')) databases.push([await ensureDatabase(opts.sizeMb), opts.reps]);

const results = [];
for (const [db, reps] of databases) {
  const r = await folderCase(db, reps);
  results.push(r);
  console.error(
    `backup ${db} to a folder: pgshelf ${fmt(r.medianMs.pgshelf)}, gzip ${fmt(r.medianMs.gzip)}` +
      `${r.medianMs.pigz ? `, pigz ${fmt(r.medianMs.pigz)}` : ''} -> ${r.ratios.vsGzip} x gzip, ${r.ratios.vsPigz} x pigz; ` +
      `size ${r.sizeVsGzip} x gzip's; ` +
      (r.medianMs.pgshelfZstd
        ? `zstd: pgshelf ${fmt(r.medianMs.pgshelfZstd)} vs zstd -3 ${fmt(r.medianMs.zstd)} -> ${r.ratios.zstdVsZstd}; `
        : `${r.zstd}; `) +
      `worker peak RSS ${r.workerPeakRssMb} MB`,
  );
}

const s3server = opts.s3 === 'off' ? undefined : await startS3Server({ requireMoto: true });
if (s3server) {
  try {
    const hasAws = await which('aws');
    for (const [db, reps] of databases.filter(([db]) => !db.includes('jsonb'))) {
      const r = await s3Case(db, reps, s3server, hasAws);
      results.push(r);
      console.error(
        `backup ${db} to ${r.target}: pgshelf ${fmt(r.medianMs.pgshelf)} vs shell ${fmt(r.medianMs.shell)} -> ` +
          `${r.ratios.vsShell}; worker peak RSS ${r.workerPeakRssMb} MB`,
      );
    }
  } finally {
    await s3server.stop();
  }
}

console.log(
  JSON.stringify(
    { bench: 'backup', gzipLevel: opts.level, reps: opts.reps, smallReps: opts.smallReps, results },
    null,
    2,
  ),
);
