#!/usr/bin/env node
// Backup benchmark: pgshelf (a real worker taking a queued job) against the shell pipeline
// `pg_dump | gzip -N > file` (and `| aws s3 cp -` for S3), side by side in one run, alternating, same gzip level.
// Also the worker's peak RSS (VmHWM) for two database sizes.
//   node bench/backup.mjs [--size-mb 1024] [--small-mb 128] [--reps 2] [--level 6] [--s3 auto|off]
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import {
  args,
  databaseSize,
  ensureDatabase,
  fmt,
  jobWallMs,
  median,
  obliterate,
  peakRssKb,
  PG,
  pgEnv,
  root,
  startWorker,
  timeCli,
  timeShell,
} from './lib.mjs';

const opts = args({ sizeMb: 1024, smallMb: 128, reps: 2, level: 6, s3: 'auto' });
const work = path.join(root, '.bench');
await mkdir(work, { recursive: true });

async function which(cmd) {
  try {
    await timeShell(`command -v ${cmd} >/dev/null`);
    return true;
  } catch {
    return false;
  }
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const conn = `--host=${PG.host} --port=${PG.port} --username=${PG.user}`;

/** Alternates shell and pgshelf runs `reps` times; returns medians and the ratio. */
async function compare(label, db, target) {
  const prefix = `pgshelf-bench-${randomBytes(3).toString('hex')}`;
  const env = {
    ...pgEnv(db),
    ...target.env,
    PGSHELF_QUEUE_PREFIX: prefix,
    PGSHELF_GZIP_LEVEL: String(opts.level),
  };
  const worker = await startWorker(env);
  const shell = [];
  const ours = [];
  let result;
  try {
    for (let i = 0; i < opts.reps; i++) {
      const runShell = async () => shell.push(await timeShell(target.shell(db), env));
      const runOurs = async () => {
        const { out } = await timeCli(['backup', '--json'], env);
        result = out;
        ours.push(await jobWallMs(env, 'backup', out.jobId));
        await target.cleanup?.(out);
      };
      // Alternate which goes first, so cache warmth favours neither.
      if (i % 2 === 0) {
        await runShell();
        await runOurs();
      } else {
        await runOurs();
        await runShell();
      }
    }
    const rss = await peakRssKb(worker.pid);
    const s = median(shell);
    const o = median(ours);
    return {
      label,
      database: db,
      databaseBytes: await databaseSize(db),
      archiveBytes: result.bytes,
      dumpBytes: result.uncompressedBytes,
      shellMs: shell.map(Math.round),
      pgshelfMs: ours.map(Math.round),
      shellMedianMs: Math.round(s),
      pgshelfMedianMs: Math.round(o),
      ratio: Number((o / s).toFixed(3)),
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

// Peak RSS for two sizes: a fresh worker each, one backup each.
for (const db of [small, big]) {
  const r = await compare(`folder ${db}`, db, { ...folder, shell: folder.shell });
  results.push(r);
  console.error(
    `${r.label}: pgshelf ${fmt(r.pgshelfMedianMs)} vs pg_dump|gzip ${fmt(r.shellMedianMs)} -> ratio ${r.ratio}; ` +
      `worker peak RSS ${r.workerPeakRssMb} MB`,
  );
}

if (opts.s3 !== 'off' && (await which('moto_server'))) {
  const port = await freePort();
  const moto = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  try {
    const endpoint = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      try {
        await fetch(endpoint);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const bucket = `bench-${randomBytes(3).toString('hex')}`;
    const creds = {
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench',
      AWS_DEFAULT_REGION: 'us-east-1',
    };
    const client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    });
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    client.destroy();
    const hasAws = await which('aws');
    const s3 = {
      env: {
        PGSHELF_STORAGE: `s3://${bucket}/pg`,
        S3_ENDPOINT: endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        S3_REGION: 'us-east-1',
        ...creds,
      },
      shell: (db) =>
        hasAws
          ? `pg_dump ${conn} --format=plain --dbname=${db} | gzip -${opts.level} | aws --endpoint-url ${endpoint} s3 cp - s3://${bucket}/shell/${db}.sql.gz`
          : `pg_dump ${conn} --format=plain --dbname=${db} | gzip -${opts.level} > ${work}/shell.sql.gz`,
    };
    const r = await compare(`s3 (moto) ${big}${hasAws ? ' vs aws s3 cp -' : ' vs file'}`, big, s3);
    results.push(r);
    console.error(
      `${r.label}: pgshelf ${fmt(r.pgshelfMedianMs)} vs shell ${fmt(r.shellMedianMs)} -> ratio ${r.ratio}; worker peak RSS ${r.workerPeakRssMb} MB`,
    );
  } finally {
    moto.kill('SIGTERM');
  }
}

await rm(path.join(work, 'shell.sql.gz'), { force: true });
const archive = await stat(path.join(work, 'shell.sql.gz')).catch(() => undefined);
void archive;
console.log(JSON.stringify({ bench: 'backup', gzipLevel: opts.level, reps: opts.reps, results }, null, 2));
