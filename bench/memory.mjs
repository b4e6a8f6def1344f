#!/usr/bin/env node
// Memory benchmark: the worker's peak RSS (VmHWM) during one real backup, for a 1 GB and a 4 GB database, to a
// folder, to S3 (moto) with the default parts, and to S3 with parts forced large (PGSHELF_S3_PART_SIZE=64: the
// parts at the end of a 1 TB database's ~100 GiB archive; --forced-part-mb 96 is what lib-storage gave a 500 GB
// database). A fresh worker for each backup, so each peak is its own.
//   node bench/memory.mjs [--size-mb 1024] [--large-mb 4096] [--forced-part-mb 64] [--s3 auto|off]
//                         [--targets folder,s3,forced] [--sizes small,large]
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  args,
  databaseSize,
  ensureDatabase,
  obliterate,
  peakRssKb,
  pgEnv,
  root,
  startS3Server,
  startWorker,
  timeCli,
} from './lib.mjs';

const opts = args({
  sizeMb: 1024,
  largeMb: 4096,
  forcedPartMb: 64,
  s3: 'auto',
  targets: 'folder,s3,forced',
  sizes: 'small,large',
});
const wanted = (list, name) => list.split(',').includes(name);
const work = path.join(root, '.bench');
await mkdir(work, { recursive: true });

async function rssKb(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

/** One queued backup on a fresh worker: its peak RSS, its RSS before the job, and what the backup wrote. */
async function measure(label, db, storageEnv) {
  const prefix = `pgshelf-bench-${randomBytes(3).toString('hex')}`;
  const env = { ...pgEnv(db), ...storageEnv, PGSHELF_QUEUE_PREFIX: prefix };
  const worker = await startWorker(env);
  try {
    const idleKb = await rssKb(worker.pid);
    const { ms, out } = await timeCli(['backup', '--json'], env);
    const peakKb = await peakRssKb(worker.pid);
    const r = {
      label,
      database: db,
      databaseBytes: await databaseSize(db),
      archiveBytes: out.bytes,
      dumpBytes: out.uncompressedBytes,
      wallMs: Math.round(ms),
      workerIdleRssMb: Math.round(idleKb / 1024),
      workerPeakRssMb: Math.round(peakKb / 1024),
    };
    console.error(
      `${label}, ${db}: peak RSS ${r.workerPeakRssMb} MB (idle ${r.workerIdleRssMb} MB), archive ` +
        `${(r.archiveBytes / 1048576).toFixed(0)} MiB, ${(ms / 1000).toFixed(1)} s`,
    );
    return r;
  } finally {
    await worker.stop();
    await obliterate(prefix);
  }
}

const small = await ensureDatabase(opts.sizeMb);
const large = await ensureDatabase(opts.largeMb);
const targets = [];
if (wanted(opts.targets, 'folder'))
  targets.push(['folder', () => ({ PGSHELF_STORAGE: `file://${work}/memory-store` })]);
const s3server =
  opts.s3 === 'off' || !/s3|forced/.test(opts.targets)
    ? undefined
    : await startS3Server({ requireMoto: true });
if (s3server && wanted(opts.targets, 's3'))
  targets.push([`s3 (${s3server.name})`, () => s3server.env(`mem-${randomBytes(3).toString('hex')}`)]);
if (s3server && wanted(opts.targets, 'forced')) {
  targets.push([
    `s3 (${s3server.name}), parts forced to ${opts.forcedPartMb} MiB`,
    () => ({
      ...s3server.env(`mem-${randomBytes(3).toString('hex')}`),
      PGSHELF_S3_PART_SIZE: String(opts.forcedPartMb),
    }),
  ]);
}

const results = [];
try {
  for (const [label, storageEnv] of targets) {
    const a = wanted(opts.sizes, 'small') ? await measure(label, small, storageEnv()) : undefined;
    const b = wanted(opts.sizes, 'large') ? await measure(label, large, storageEnv()) : undefined;
    await rm(path.join(work, 'memory-store'), { recursive: true, force: true });
    const ratio = a && b ? Number((b.workerPeakRssMb / a.workerPeakRssMb).toFixed(3)) : undefined;
    if (ratio)
      console.error(
        `${label}: peak RSS ${b.workerPeakRssMb} MB vs ${a.workerPeakRssMb} MB -> ratio ${ratio}`,
      );
    results.push({ label, small: a, large: b, largeOverSmall: ratio });
  }
} finally {
  await s3server?.stop();
}
console.log(JSON.stringify({ bench: 'memory', results }, null, 2));
