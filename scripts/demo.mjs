#!/usr/bin/env node
// npm run demo: creates a small demo database with generated data, backs it up through a real BullMQ worker
// into the default local storage (./backups), lists it, and shows where the archive and manifest are and how
// to restore it by hand. Uses the POSTGRES_* settings from the environment; POSTGRES_DB defaults to pgshelf_demo.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli/index.js');
const env = { ...process.env, POSTGRES_DB: process.env.POSTGRES_DB || 'pgshelf_demo' };
const db = env.POSTGRES_DB;
const t0 = Date.now();

function say(text) {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

function run(args, { capture = false } = {}) {
  return new Promise((resolve, reject) => {
    process.stdout.write(`$ pgshelf ${args.join(' ')}\n`);
    const child = spawn(process.execPath, [cli, ...args], {
      env,
      stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
    });
    let out = '';
    child.stdout?.on('data', (d) => (out += d));
    child.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`pgshelf ${args[0]} exited ${code}`)),
    );
  });
}

function connection(database) {
  return {
    host: env.POSTGRES_HOST || 'localhost',
    port: Number(env.POSTGRES_PORT || 5432),
    user: env.POSTGRES_USER || defaultUser(),
    password: env.POSTGRES_PASSWORD,
    database,
  };
}
function defaultUser() {
  return env.PGUSER || env.USER || (process.getuid?.() === 0 ? 'root' : undefined);
}

async function redisUp() {
  const url = new URL(env.REDIS_URL || 'redis://127.0.0.1:6379');
  return new Promise((resolve) => {
    const s = net.connect(Number(url.port || 6379), url.hostname);
    s.setTimeout(1000, () => (s.destroy(), resolve(false)));
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

async function createDemoDatabase() {
  const admin = new pg.Client(connection('postgres'));
  await admin.connect();
  const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]);
  if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${db.replace(/"/g, '""')}"`);
  await admin.end();
  const c = new pg.Client(connection(db));
  await c.connect();
  await c.query(`
    DROP SCHEMA IF EXISTS shop CASCADE;
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, joined date);
    CREATE TABLE shop.orders (id bigserial PRIMARY KEY, customer_id int REFERENCES shop.customers(id),
                              placed timestamptz, total numeric(10,2), items jsonb);
    CREATE INDEX ON shop.orders (customer_id, placed);
    CREATE VIEW shop.revenue AS SELECT date_trunc('month', placed) AS month, sum(total) FROM shop.orders GROUP BY 1;
    INSERT INTO shop.customers (name, email, joined)
      SELECT 'Customer ' || i, 'c' || i || '@example.com', DATE '2020-01-01' + i % 1500 FROM generate_series(1, 20000) i;
    INSERT INTO shop.orders (customer_id, placed, total, items)
      SELECT 1 + i % 20000, TIMESTAMPTZ '2024-01-01' + (i || ' minutes')::interval, (i % 500) + 0.99,
             jsonb_build_array(jsonb_build_object('sku', 'SKU-' || i % 97, 'qty', 1 + i % 5))
      FROM generate_series(1, 100000) i;
  `);
  const { rows } = await c.query(
    `SELECT (SELECT count(*) FROM shop.customers) AS customers, (SELECT count(*) FROM shop.orders) AS orders,
            pg_size_pretty(pg_database_size(current_database())) AS size`,
  );
  await c.end();
  return rows[0];
}

try {
  say(`creating demo database "${db}" with generated data`);
  const stats = await createDemoDatabase();
  console.log(`${stats.customers} customers, ${stats.orders} orders, ${stats.size} on disk`);

  let result;
  if (await redisUp()) {
    say('starting a worker, then queueing a backup job for it (pgshelf worker + pgshelf backup)');
    const worker = spawn(process.execPath, [cli, 'worker'], {
      env: { ...env, PGSHELF_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'inherit', 'pipe'],
    });
    let log = '';
    await new Promise((resolve, reject) => {
      worker.stderr.on('data', (d) => {
        log += d;
        if (log.includes('worker started')) resolve();
      });
      worker.once('close', (code) => reject(new Error(`the worker exited ${code}:\n${log}`)));
    });
    try {
      result = JSON.parse(await run(['backup', '--json'], { capture: true }));
    } finally {
      worker.kill('SIGTERM');
      await new Promise((r) => worker.once('close', r));
    }
  } else {
    say('Redis is not reachable: running the backup in this process (pgshelf backup --in-process)');
    result = JSON.parse(await run(['backup', '--in-process', '--json'], { capture: true }));
  }
  console.log(
    `backup ${result.id}: ${result.bytes} bytes gzip (${result.uncompressedBytes} bytes of SQL), ` +
      `${result.tables} tables, ${result.rows} rows, ${result.durationMs} ms`,
  );

  say('listing backups (pgshelf list)');
  await run(['list']);

  say('where it is');
  console.log(`archive:  ${result.archiveLocation}`);
  console.log(`manifest: ${result.manifestLocation}`);
  console.log(`sha256:   ${result.sha256}`);
  say("restore it by hand, with PostgreSQL's own tools");
  console.log(`createdb ${db}_copy`);
  console.log(`gunzip -c '${result.archiveLocation}' | psql -X -v ON_ERROR_STOP=1 -d ${db}_copy`);
  console.log(`\ndemo finished in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
} catch (err) {
  console.error(`demo failed: ${err.message}`);
  process.exitCode = 1;
}
