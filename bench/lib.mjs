// Shared pieces of the benchmarks: a reusable database of a given size, timing, and peak RSS of a process.
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import pg from 'pg';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const cli = path.join(root, 'dist/cli/index.js');
export const execFileAsync = promisify(execFile);
/** The Node flags of the CLI's `#!/usr/bin/env -S node ...` line: what `npx pgshelf` runs with. */
export const nodeFlags = readFileSync(cli, 'utf8').split('\n', 1)[0].split(/\s+/).slice(3);

export const PG = {
  host: process.env.POSTGRES_HOST || '/var/run/postgresql',
  port: Number(process.env.POSTGRES_PORT || 5432),
  user: process.env.POSTGRES_USER || 'postgres',
};

export function pgEnv(database) {
  return {
    ...process.env,
    POSTGRES_DB: database,
    POSTGRES_HOST: PG.host,
    POSTGRES_PORT: String(PG.port),
    POSTGRES_USER: PG.user,
  };
}

export function args(defaults) {
  const out = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) continue;
    const key = m[1].replace(/-(\w)/g, (_, c) => c.toUpperCase());
    out[key] = m[2] ?? argv[++i];
    if (typeof defaults[key] === 'number') {
      out[key] = Number(out[key]);
      if (!(out[key] > 0))
        throw new Error(`--${m[1]} wants a positive number, e.g. --${m[1]} ${defaults[key]}`);
    }
  }
  return out;
}

async function withClient(database, fn) {
  const c = new pg.Client({ ...PG, database });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * Whether a bench database was made whole by an earlier run (its `bench_ready` table is written last); one left
 * half-made by an interrupted run is dropped, to be made again.
 */
async function madeEarlier(name) {
  const exists = await withClient(
    'postgres',
    async (c) => (await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [name])).rowCount === 1,
  );
  if (!exists) return false;
  const ready = await withClient(
    name,
    async (c) => (await c.query(`SELECT 1 FROM pg_tables WHERE tablename = 'bench_ready'`)).rowCount === 1,
  );
  if (!ready) await dropDatabase(name);
  return ready;
}

/**
 * A database of about `sizeMb` MB on disk, made once and reused (named after its size). Rows mix text, numbers,
 * timestamps and JSON, like an application's tables, with a primary key and a secondary index.
 */
export async function ensureDatabase(sizeMb, log = console.error) {
  const name = `pgshelf_bench_${sizeMb}mb`;
  if (await madeEarlier(name)) return name;
  log(`creating ${name} (about ${sizeMb} MB; reused by later runs)`);
  const t0 = Date.now();
  await withClient('postgres', (c) => c.query(`CREATE DATABASE "${name}"`));
  await withClient(name, async (c) => {
    await c.query(`CREATE TABLE events (
      id bigint PRIMARY KEY, account int NOT NULL, at timestamptz NOT NULL, kind text NOT NULL,
      amount numeric(12,2), note text, payload jsonb)`);
    // ~230 bytes per row on disk with the indexes.
    const rows = Math.round((sizeMb * 1024 * 1024) / 230);
    const batch = 500_000;
    for (let start = 1; start <= rows; start += batch) {
      const end = Math.min(rows, start + batch - 1);
      await c.query(
        `INSERT INTO events SELECT i, i % 10007, TIMESTAMPTZ '2024-01-01' + (i || ' seconds')::interval,
           (ARRAY['login','purchase','refund','view','signup'])[1 + i % 5], (i % 100000) / 100.0,
           'note ' || md5(i::text), jsonb_build_object('ip', '10.0.' || (i % 256) || '.' || (i % 199), 'n', i % 1000)
         FROM generate_series($1::bigint, $2::bigint) i`,
        [start, end],
      );
    }
    await c.query(`CREATE INDEX events_account_at ON events (account, at)`);
    await c.query(
      `CREATE TABLE bench_ready (at timestamptz DEFAULT now()); INSERT INTO bench_ready DEFAULT VALUES`,
    );
    await c.query('VACUUM ANALYZE');
  });
  const size = await databaseSize(name);
  log(`created ${name}: ${(size / 1024 / 1024).toFixed(0)} MB in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return name;
}

/**
 * The issue-13 shape, made once and reused: `pgbench -i -s 20` (four narrow tables) plus a 1M-row table with a
 * jsonb column; about 600 MB on disk, a 445 MB plain dump.
 */
export async function ensureJsonbDatabase(log = console.error) {
  const name = 'pgshelf_bench_jsonb512';
  if (await madeEarlier(name)) return name;
  log(`creating ${name} (pgbench -s 20 and a 1M-row jsonb table; reused by later runs)`);
  await withClient('postgres', (c) => c.query(`CREATE DATABASE "${name}"`));
  await execFileAsync(
    'pgbench',
    ['-i', '-q', '-s', '20', `--host=${PG.host}`, `--port=${PG.port}`, `--username=${PG.user}`, name],
    { maxBuffer: 16 << 20 },
  );
  await withClient(name, async (c) => {
    await c.query(`CREATE TABLE docs (
      id bigint PRIMARY KEY, created timestamptz NOT NULL, title text NOT NULL, body jsonb NOT NULL)`);
    await c.query(`INSERT INTO docs SELECT i, TIMESTAMPTZ '2025-01-01' + i * interval '7 seconds', 'doc ' || md5(i::text),
      jsonb_build_object(
        'user', jsonb_build_object('id', i % 50000, 'name', 'user' || (i % 50000), 'email', 'u' || (i % 50000) || '@example.org'),
        'tags', jsonb_build_array('t' || (i % 17), 't' || (i % 31)), 'score', (i * 37 % 1000) / 10.0,
        'ok', i % 3 = 0, 'ref', md5((i * 7)::text))
      FROM generate_series(1, 1000000) i`);
    await c.query(
      `CREATE TABLE bench_ready (at timestamptz DEFAULT now()); INSERT INTO bench_ready DEFAULT VALUES`,
    );
    await c.query('VACUUM ANALYZE');
  });
  return name;
}

export async function databaseSize(name) {
  return withClient(name, async (c) =>
    Number((await c.query(`SELECT pg_database_size(current_database()) AS s`)).rows[0].s),
  );
}

export async function dropDatabase(name) {
  await withClient('postgres', (c) =>
    c.query(`DROP DATABASE IF EXISTS "${name.replace(/"/g, '""')}" WITH (FORCE)`),
  );
}

/**
 * Writes out what earlier runs left dirty (PostgreSQL's buffers, then the kernel's page cache), so that a timed
 * run does not pay for the write-back of the run before it: a restore leaves hundreds of MB to flush.
 */
export async function settle() {
  await withClient('postgres', (c) => c.query('CHECKPOINT'));
  await execFileAsync('sync');
}

/** Peak resident set size (VmHWM) of a live process, in KiB. */
export async function peakRssKb(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

/** Runs a shell pipeline (bash -o pipefail), returns wall milliseconds. The pipeline is the point: the baseline. */
export async function timeShell(script, env = process.env) {
  const t0 = process.hrtime.bigint();
  await execFileAsync('bash', ['-o', 'pipefail', '-c', script], { env, maxBuffer: 64 << 20 });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Starts `pgshelf worker` and resolves once it is consuming. */
export async function startWorker(env) {
  const child = spawn(process.execPath, [...nodeFlags, cli, 'worker'], {
    env: { ...env, PGSHELF_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  await new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      log += d;
      if (log.includes('worker started')) resolve();
    });
    child.once('close', (code) => reject(new Error(`worker exited ${code}: ${log}`)));
  });
  return {
    pid: child.pid,
    log: () => log,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('close', r)));
    },
  };
}

/** Runs a pgshelf command to completion; returns wall ms and parsed --json output. */
export async function timeCli(argv, env) {
  const t0 = process.hrtime.bigint();
  const { stdout } = await execFileAsync(process.execPath, [...nodeFlags, cli, ...argv], {
    env,
    maxBuffer: 64 << 20,
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return { ms, out: stdout.trim().startsWith('{') ? JSON.parse(stdout) : stdout };
}

/**
 * Runs `shell(i)` and `ours(i)` `reps` times, alternating which goes first so cache warmth favours neither.
 * Each returns wall milliseconds; the result is both lists, the medians and ours/shell.
 */
export async function alternate(reps, shell, ours) {
  const shellMs = [];
  const oursMs = [];
  for (let i = 0; i < reps; i++) {
    const pair = [async () => shellMs.push(await shell(i)), async () => oursMs.push(await ours(i))];
    if (i % 2 === 1) pair.reverse();
    for (const run of pair) await run();
  }
  const s = median(shellMs);
  const o = median(oursMs);
  return {
    shellMs: shellMs.map(Math.round),
    pgshelfMs: oursMs.map(Math.round),
    shellMedianMs: Math.round(s),
    pgshelfMedianMs: Math.round(o),
    ratio: Number((o / s).toFixed(3)),
  };
}

/**
 * Runs each contender once per round, `reps` rounds, rotating who goes first so cache warmth and the machine's
 * drift favour none. `run(i)` returns wall milliseconds. `ratio(a, b)` is the median of the per-round ratios a/b
 * (each taken in the same stretch of machine time, which a busy shared machine needs).
 */
export async function rounds(reps, contenders, { before } = {}) {
  const times = Object.fromEntries(contenders.map((c) => [c.name, []]));
  for (let i = 0; i < reps; i++) {
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(i + k) % contenders.length];
      await before?.();
      times[c.name].push(await c.run(i));
    }
  }
  const medians = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, Math.round(median(v))]));
  const ratio = (a, b) =>
    times[a] && times[b] ? Number(median(times[a].map((ms, i) => ms / times[b][i])).toFixed(3)) : undefined;
  return {
    times: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, v.map(Math.round)])),
    medians,
    ratio,
  };
}

/** The machine, as the bench table names it: cores, CPU model, memory, Node and PostgreSQL versions. */
export async function machine() {
  const cpus = os.cpus();
  const server = await withClient(
    'postgres',
    async (c) => (await c.query('SHOW server_version')).rows[0].server_version,
  );
  return {
    cores: cpus.length,
    cpu: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    postgres: server.split(' ')[0],
    load: os.loadavg().map((l) => Number(l.toFixed(1))),
  };
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;

/** Job wall time as BullMQ recorded it on the worker (processedOn -> finishedOn). */
export async function jobWallMs(env, queue, jobId) {
  const q = new Queue(queue, {
    connection: { host: '127.0.0.1', port: 6379 },
    prefix: env.PGSHELF_QUEUE_PREFIX,
  });
  const job = await q.getJob(jobId);
  await q.close();
  return job.finishedOn - job.processedOn;
}

export async function obliterate(prefix) {
  for (const name of ['backup', 'restore', 'prune', 'drill']) {
    const q = new Queue(name, { connection: { host: '127.0.0.1', port: 6379 }, prefix });
    await q.obliterate({ force: true });
    await q.close();
  }
}

export async function which(cmd) {
  return execFileAsync('bash', ['-c', `command -v ${cmd}`]).then(
    () => true,
    () => false,
  );
}

export async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * A local S3-compatible server with a fresh bucket: moto_server when installed (complete multipart support),
 * else s3rver in this process (needs node --openssl-legacy-provider for listing pagination).
 */
export async function startS3Server({ requireMoto = false } = {}) {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let server;
  if (await which('moto_server')) {
    const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      if (
        await fetch(endpoint).then(
          () => true,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    server = { name: 'moto', stop: async () => child.kill('SIGTERM') };
  } else if (requireMoto) {
    return undefined;
  } else {
    const { default: S3rver } = await import('s3rver');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-s3rver-'));
    const s3rver = new S3rver({ port, address: '127.0.0.1', silent: true, directory: dir });
    await s3rver.run();
    server = {
      name: 's3rver',
      stop: async () => (await s3rver.close(), await rm(dir, { recursive: true, force: true })),
    };
  }
  const bucket = `bench-${randomBytes(3).toString('hex')}`;
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return {
    ...server,
    endpoint,
    bucket,
    /** Settings for pgshelf, and for the aws CLI. */
    env: (prefix) => ({
      PGSHELF_STORAGE: `s3://${bucket}/${prefix}`,
      S3_ENDPOINT: endpoint,
      S3_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
    }),
  };
}

const mb = (bytes) => (bytes === undefined ? '' : `${Math.round(bytes / 2 ** 20)} MB`);
const s = (ms) => (ms === undefined ? '' : `${(ms / 1000).toFixed(2)} s`);

/**
 * The same-run ratios of every benchmark that ran, as one Markdown table (what the README quotes), with the
 * machine named. `results` is .bench/results.json's content.
 */
export function benchTable(results, machine) {
  const rows = [];
  const row = (what, ours, theirs, ratio, goal = '') =>
    rows.push(`| ${what} | ${ours} | ${theirs} | ${ratio ?? ''} | ${goal} |`);
  for (const r of results.backup?.results ?? []) {
    const m = r.medianMs;
    if (r.target === 'folder') {
      const what = `backup ${r.database} (${mb(r.dumpBytes)} of SQL) to a folder`;
      row(`${what}`, s(m.pgshelf), `\`pg_dump \\| gzip -6\`: ${s(m.gzip)}`, r.ratios.vsGzip, '<= 0.60');
      if (m.pigz)
        row(`${what}`, s(m.pgshelf), `\`pg_dump \\| pigz -6\`: ${s(m.pigz)}`, r.ratios.vsPigz, '<= 1.10');
      row(
        `archive size, ${r.database}`,
        mb(r.bytes.pgshelf),
        `gzip -6: ${mb(r.bytes.gzip)}`,
        r.sizeVsGzip,
        '<= 1.01',
      );
      if (m.pgshelfZstd) {
        row(
          `backup ${r.database}, PGSHELF_COMPRESSION=zstd`,
          s(m.pgshelfZstd),
          `\`pg_dump \\| zstd -3\`: ${s(m.zstd)}`,
          r.ratios.zstdVsZstd,
        );
        row(
          `backup ${r.database}, zstd against pgshelf's gzip`,
          s(m.pgshelfZstd),
          `pgshelf gzip: ${s(m.pgshelf)}`,
          r.ratios.zstdVsPgshelfGzip,
        );
        row(
          `archive size, ${r.database}, zstd`,
          mb(r.bytes.pgshelfZstd),
          `zstd -3: ${mb(r.bytes.zstd)}`,
          r.bytes.zstd ? Number((r.bytes.pgshelfZstd / r.bytes.zstd).toFixed(4)) : '',
        );
      }
      row(`worker peak RSS, backup of ${r.database}`, `${r.workerPeakRssMb} MB`, '', '', '< 200 MB');
    } else {
      row(
        `backup ${r.database} to ${r.target}`,
        s(m.pgshelf),
        `\`pg_dump \\| gzip -6 \\| aws s3 cp -\`: ${s(m.shell)}`,
        r.ratios.vsShell,
      );
      row(`worker peak RSS, backup of ${r.database} to S3`, `${r.workerPeakRssMb} MB`, '', '', '< 200 MB');
    }
  }
  for (const r of results.restore?.results ?? []) {
    const jobs = r.restoreJobs === undefined ? '' : `, PGSHELF_RESTORE_JOBS=${r.restoreJobs}`;
    const pair = r.medianPairRatio === undefined ? '' : ` (rounds: ${r.medianPairRatio})`;
    row(
      `restore ${r.database}${jobs}`,
      s(r.pgshelfMedianMs),
      `\`createdb\` + \`gunzip -c \\| psql\`: ${s(r.shellMedianMs)}`,
      `${r.ratio}${pair}`,
    );
    const rss = r.peakRssMb ?? r.workerPeakRssMb;
    if (rss !== undefined) row(`peak RSS, restore ${r.database}${jobs}`, `${rss} MB`, '', '');
  }
  for (const [name, b] of Object.entries(results)) {
    if (['backup', 'restore'].includes(name) || !Array.isArray(b?.results)) continue;
    for (const r of b.results) {
      const label = r.label ?? r.database ?? r.case ?? name;
      if (r.ratio !== undefined) row(`${name}: ${label}`, s(r.pgshelfMedianMs), s(r.shellMedianMs), r.ratio);
      const rss = r.peakRssMb ?? r.workerPeakRssMb;
      if (rss !== undefined) row(`${name}: peak RSS, ${label}`, `${rss} MB`, '', '');
    }
  }
  if (results.scheduler?.medianFirstEnqueueMs !== undefined)
    row(
      `scheduler: one slot for ${results.scheduler.databases} databases`,
      `${results.scheduler.medianFirstEnqueueMs} ms`,
      '',
      '',
    );
  if (results.prune?.pruneMs !== undefined)
    row(
      `prune: ${results.prune.backups} backups (${results.prune.objects} objects)`,
      s(results.prune.pruneMs),
      '',
      '',
    );
  const head =
    `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB, Node ${machine.node}, ` +
    `PostgreSQL ${machine.postgres}; load average at the end ${machine.load.join(' ')}. Ratios are pgshelf / plain ` +
    'tools, the median of per-round ratios (each round runs every contender once, order rotating).';
  return [
    head,
    '',
    '| benchmark | pgshelf | plain tools | ratio | goal |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}
