#!/usr/bin/env node
// Restore benchmark: `pgshelf restore --in-process` with PGSHELF_RESTORE_JOBS 1, 2 and 4 against the shell pipeline
// `createdb X && gunzip -c file | psql -d X`, on the same archive, side by side in one run: each round runs every
// contender once, the order rotating from round to round. Times are whole commands (pgshelf's Node start-up and
// checks included). Databases: the bench database (one large table, a primary key and an index), a small one,
// and a pgbench-shaped one (four tables, primary keys and foreign keys). Peak RSS of each pgshelf command too.
//   node bench/restore.mjs [--size-mb 1024] [--small-mb 128] [--pgbench-mb 512] [--reps 3] [--small-reps 5]
//                          [--jobs 1,2,4]
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import {
  args,
  cli,
  dropDatabase,
  ensureDatabase,
  fmt,
  median,
  nodeFlags,
  PG,
  pgEnv,
  root,
  settle,
  timeCli,
} from './lib.mjs';

const execFileAsync = promisify(execFile);
const opts = args({ sizeMb: 1024, smallMb: 128, pgbenchMb: 512, reps: 3, smallReps: 5, jobs: '1,2,4' });
const jobCounts = String(opts.jobs)
  .split(',')
  .map((j) => Number(j));
const work = path.join(root, '.bench', 'restore');
await rm(work, { recursive: true, force: true });
await mkdir(work, { recursive: true });
const conn = `--host=${PG.host} --port=${PG.port} --username=${PG.user}`;

/** A pgbench database (`pgbench -i --foreign-keys`) of about `sizeMb` MB, made once and reused. */
async function ensurePgbenchDatabase(sizeMb) {
  const name = `pgshelf_bench_pgbench${sizeMb}`;
  const c = new pg.Client({ ...PG, database: 'postgres' });
  await c.connect();
  try {
    const exists = (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
    if (exists) {
      const d = new pg.Client({ ...PG, database: name });
      await d.connect();
      const ready = (await d.query(`SELECT 1 FROM pg_tables WHERE tablename = 'bench_ready'`)).rowCount === 1;
      await d.end();
      if (ready) return name;
      await c.query(`DROP DATABASE "${name}" WITH (FORCE)`);
    }
    console.error(`creating ${name} (pgbench, about ${sizeMb} MB; reused by later runs)`);
    await c.query(`CREATE DATABASE "${name}"`);
  } finally {
    await c.end();
  }
  // A pgbench scale unit is about 15 MB on disk, indexes included.
  const scale = Math.max(1, Math.round(sizeMb / 15));
  await execFileAsync('pgbench', [
    ...conn.split(' '),
    '--initialize',
    '--foreign-keys',
    '--quiet',
    `--scale=${scale}`,
    name,
  ]);
  const d = new pg.Client({ ...PG, database: name });
  await d.connect();
  await d.query(
    `CREATE TABLE bench_ready (at timestamptz DEFAULT now()); INSERT INTO bench_ready DEFAULT VALUES`,
  );
  await d.end();
  return name;
}

/**
 * Runs a command under GNU time: wall milliseconds, the CPU seconds of the command and the children it waited
 * for (the client side: Node and psql, or gunzip and psql; the server's backends are not in it), and the peak
 * RSS in MB of its largest process.
 */
async function timeWithRss(argv, env) {
  const t0 = process.hrtime.bigint();
  const { stderr } = await execFileAsync('/usr/bin/time', ['-f', 'pgshelf-bench %M %U %S', ...argv], {
    env,
    maxBuffer: 64 << 20,
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const [, kb, user, sys] = /pgshelf-bench (\d+) ([\d.]+) ([\d.]+)/.exec(stderr) ?? [];
  return { ms, rssMb: Math.round(Number(kb) / 1024), cpuS: Number(user) + Number(sys) };
}

async function compare(db, reps) {
  const env = { ...pgEnv(db), PGSHELF_STORAGE: `file://${work}/${db}` };
  const { out: backup } = await timeCli(['backup', '--in-process', '--json'], env);
  const tag = randomBytes(3).toString('hex');
  const contenders = [
    {
      name: 'shell',
      run: async (i) => {
        const into = `pgshelf_bench_shell_${tag}_${i}`;
        const r = await timeWithRss(
          [
            'bash',
            '-o',
            'pipefail',
            '-c',
            `createdb ${conn} ${into} && gunzip -c '${backup.archiveLocation}' | psql ${conn} -X -q -v ON_ERROR_STOP=1 -d ${into} > /dev/null`,
          ],
          env,
        );
        await dropDatabase(into);
        return r;
      },
    },
    ...jobCounts.map((jobs) => ({
      name: `jobs${jobs}`,
      jobs,
      run: async (i) => {
        const into = `pgshelf_bench_j${jobs}_${tag}_${i}`;
        const r = await timeWithRss(
          [process.execPath, ...nodeFlags, cli, 'restore', '--in-process', '--into', into, '--json'],
          { ...env, PGSHELF_RESTORE_JOBS: String(jobs) },
        );
        await dropDatabase(into);
        return r;
      },
    })),
  ];
  const times = Object.fromEntries(contenders.map((c) => [c.name, []]));
  const rss = Object.fromEntries(contenders.map((c) => [c.name, []]));
  const cpu = Object.fromEntries(contenders.map((c) => [c.name, []]));
  for (let i = 0; i < reps; i++) {
    // Rotate who goes first, so cache warmth and the machine's drift favour none.
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(i + k) % contenders.length];
      await settle();
      const r = await c.run(i);
      times[c.name].push(r.ms);
      rss[c.name].push(r.rssMb);
      cpu[c.name].push(r.cpuS);
    }
  }
  const shellMedianMs = median(times.shell);
  return contenders
    .filter((c) => c.name !== 'shell')
    .map((c) => {
      const ours = times[c.name];
      // Ratio per round (same stretch of machine time), then their median, beside the ratio of medians.
      const pairRatios = ours.map((ms, i) => ms / times.shell[i]);
      return {
        database: db,
        restoreJobs: c.jobs,
        archiveBytes: backup.bytes,
        sqlBytes: backup.uncompressedBytes,
        shellMs: times.shell.map(Math.round),
        pgshelfMs: ours.map(Math.round),
        shellMedianMs: Math.round(shellMedianMs),
        pgshelfMedianMs: Math.round(median(ours)),
        ratio: Number((median(ours) / shellMedianMs).toFixed(3)),
        medianPairRatio: Number(median(pairRatios).toFixed(3)),
        peakRssMb: Math.max(...rss[c.name]),
        clientCpuMedianS: Number(median(cpu[c.name]).toFixed(2)),
        shellClientCpuMedianS: Number(median(cpu.shell).toFixed(2)),
      };
    });
}

const results = [];
const databases = [
  [await ensureDatabase(opts.smallMb), opts.smallReps],
  [await ensureDatabase(opts.sizeMb), opts.reps],
  [await ensurePgbenchDatabase(opts.pgbenchMb), opts.reps],
];
for (const [db, reps] of databases) {
  for (const r of await compare(db, reps)) {
    results.push(r);
    console.error(
      `restore ${db}, PGSHELF_RESTORE_JOBS=${r.restoreJobs}: pgshelf ${fmt(r.pgshelfMedianMs)} vs createdb + ` +
        `gunzip|psql ${fmt(r.shellMedianMs)} -> ratio ${r.ratio} (median of round ratios ${r.medianPairRatio}); ` +
        `peak RSS ${r.peakRssMb} MB; client CPU ${r.clientCpuMedianS} s vs ${r.shellClientCpuMedianS} s`,
    );
  }
}
await rm(work, { recursive: true, force: true });
console.log(
  JSON.stringify(
    { bench: 'restore', reps: opts.reps, smallReps: opts.smallReps, jobs: jobCounts, results },
    null,
    2,
  ),
);
