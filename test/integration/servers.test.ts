/**
 * Whole servers: discovery by a real scheduler and worker (a database created after the scheduler started is
 * backed up, excluded ones are not, a dropped one is reported), and the README's disaster-recovery walk-through,
 * run as it is written against a fresh cluster.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanBackups } from '../../src/catalog/backups.js';
import { globalsName } from '../../src/catalog/layout.js';
import type { Manifest } from '../../src/catalog/manifest.js';
import type { Env } from '../../src/config/index.js';
import { createStorage } from '../../src/storage/index.js';
import { CLI, runCli, waitFor } from '../helpers/cli.js';
import { baseEnv, s3Env, tempDir, testConfig, uniquePrefix } from '../helpers/env.js';
import { startReceiver } from '../helpers/receiver.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { daemon, queues, useCleanup } from '../helpers/lifecycle.js';
import { scrape } from '../helpers/metrics.js';
import { createBucket } from '../helpers/s3.js';
import { startServe } from '../helpers/serve.js';
import { throwawayCluster, type Cluster } from '../helpers/services.js';

const execFileAsync = promisify(execFile);
const README = new URL('../../README.md', import.meta.url);
const defer = useCleanup();
const cleanups: (() => Promise<unknown>)[] = [];
let source: Cluster;
let target: Cluster;

beforeAll(async () => {
  const keep = (fn: () => Promise<unknown>): void => void cleanups.push(fn);
  [source, target] = await Promise.all([throwawayCluster(keep), throwawayCluster(keep)]);
}, 120_000);

afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
});

const server = (c: Cluster): Env => ({
  POSTGRES_HOST: c.host,
  POSTGRES_PORT: String(c.port),
  POSTGRES_USER: 'postgres',
});

/** Databases with a committed backup in the storage of `env`. */
async function backedUp(env: Env): Promise<Set<string>> {
  const storage = createStorage(testConfig(env).storage);
  try {
    const all = await scanBackups(storage);
    return new Set(all.filter((b) => b.manifestKey !== undefined).map((b) => b.database));
  } finally {
    await storage.close();
  }
}

describe('servers: discovery', () => {
  it('backs up a database created after the scheduler started, skips excluded ones, reports a dropped one', async () => {
    for (const db of ['disc_a', 'disc_skip1', 'other_db'])
      await source.query('postgres', `CREATE DATABASE ${db}`);
    await source.query('disc_a', 'CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g');
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'pgshelf.yaml');
    await writeFile(
      file,
      `servers:\n  - host: ${source.host}\n    port: ${source.port}\n    user: postgres\n` +
        `    schedule: "*/2 * * * * *"\n    discover: { include: ["disc_*"], exclude: ["disc_skip*"] }\n`,
    );
    const prefix = uniquePrefix();
    queues(prefix, defer);
    const env: Env = {
      PGSHELF_CONFIG: file,
      PGSHELF_STORAGE: path.join(dir, 'backups'),
      PGSHELF_QUEUE_PREFIX: prefix,
      PGSHELF_LOG_LEVEL: 'info',
      PGSHELF_CATCH_UP: 'off',
      PGSHELF_RETRY_DELAY: '1',
      // Three jobs at once on the worker, one dump at once on the server: the per-host limit must hold.
      PGSHELF_CONCURRENCY: '3',
      PGSHELF_HOST_CONCURRENCY: '1',
    };
    const worker = daemon('worker', env, defer);
    const scheduler = daemon('scheduler', env, defer);
    await waitFor('the scheduler to start', () => scheduler.stderr().includes('scheduler started'));
    const globals = globalsName(source.host, source.port);
    await waitFor(
      'disc_a and the globals backed up',
      async () => {
        const done = await backedUp(env);
        return done.has('disc_a') && done.has(globals);
      },
      120_000,
    );

    await source.query('postgres', 'CREATE DATABASE disc_new');
    await waitFor('disc_new backed up', async () => (await backedUp(env)).has('disc_new'), 120_000);
    scheduler.child.kill('SIGTERM');
    worker.child.kill('SIGTERM');
    expect((await scheduler.done).code).toBe(0);
    expect((await worker.done).code).toBe(0);

    const done = await backedUp(env);
    expect([...done].sort()).toEqual(['disc_a', 'disc_new', globals].sort());
    // One dump at a time on the server, globals included: no two backups' times overlap.
    const list0 = await runCli(['list', '--all', '--json'], env);
    const storage = createStorage(testConfig(env).storage);
    const manifests = await Promise.all(
      (await scanBackups(storage))
        .filter((b) => b.manifestKey !== undefined)
        .map(async (b) => JSON.parse((await storage.getObject(b.manifestKey!))!.toString()) as Manifest),
    );
    await storage.close();
    expect(list0.code).toBe(0);
    const spans = manifests
      .map((m) => [Date.parse(m.startedAt), Date.parse(m.finishedAt)] as const)
      .sort((a, b) => a[0] - b[0]);
    expect(spans.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
    // Listed anew at each slot, with the server named in the log.
    expect(scheduler.stderr()).toMatch(/databases discovered/);
    expect(worker.stderr()).not.toMatch(/does not back up/);

    await source.query('postgres', 'DROP DATABASE disc_a');
    const list = await runCli(['list', '--all', '--json'], env);
    expect(list.code, list.stderr).toBe(0);
    const listed = JSON.parse(list.stdout) as {
      backups: { database: string }[];
      missing: { server: string; missing: string[]; error: string | null }[];
    };
    expect(listed.missing).toEqual([
      { server: `${source.host}:${source.port}`, missing: ['disc_a'], error: null },
    ]);
    // Its backups are kept and listed.
    expect(listed.backups.some((b) => b.database === 'disc_a')).toBe(true);
    const text = await runCli(['list', '--all'], env);
    expect(text.stdout).toContain(`"disc_a" no longer exists on ${source.host}:${source.port}`);

    // status and /metrics say it too; the discovered databases and the globals have their schedule (overdue rule).
    const status = await runCli(['status', '--json'], env);
    const report = JSON.parse(status.stdout) as {
      databases: { name: string; missingFrom: string | null; overdue: unknown; failing: boolean }[];
    };
    const byName = new Map(report.databases.map((d) => [d.name, d]));
    expect(byName.get('disc_a')).toMatchObject({
      missingFrom: `${source.host}:${source.port}`,
      overdue: null,
    });
    expect(byName.get('disc_a')!.failing).toBe(false);
    expect(byName.get('disc_new')).toMatchObject({ missingFrom: null, overdue: { overdue: false } });
    expect(byName.get(globals)).toMatchObject({ missingFrom: null, overdue: { overdue: false } });
    const served = await startServe(env, defer);
    const m = await scrape(served.url);
    expect(m.value('pgshelf_database_missing', { database: 'disc_a' })).toBe(1);
    expect(m.value('pgshelf_database_missing', { database: 'disc_new' })).toBe(0);
  }, 300_000);
});

describe("README's disaster-recovery walk-through", () => {
  it('brings a server back on a fresh cluster from the bucket, as written', async () => {
    // The lost server: two roles, a database owned by one with grants to the other, a second database, and a
    // third that was dropped before the last slot.
    for (const sql of [
      `CREATE ROLE dr_owner LOGIN PASSWORD 'owner-pw'`,
      `CREATE ROLE dr_reader LOGIN`,
      `CREATE DATABASE dr_app OWNER dr_owner`,
      `CREATE DATABASE dr_other`,
      `CREATE DATABASE dr_gone`,
    ]) {
      await source.query('postgres', sql);
    }
    await source.query(
      'dr_app',
      `SET ROLE dr_owner; CREATE TABLE orders (id int PRIMARY KEY, total numeric);
       INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 200) g;
       GRANT SELECT ON orders TO dr_reader;`,
    );
    const bucket = await createBucket();
    const s3 = s3Env(bucket, 'pg');
    // The archives are encrypted with age; the walk-through has the key file.
    const keyDir = await tempDir();
    defer(() => rm(keyDir, { recursive: true, force: true }));
    const keyFile = path.join(keyDir, 'pgshelf-age-key.txt');
    const { stderr: keygen } = await execFileAsync('age-keygen', ['-o', keyFile]);
    const recipient = /Public key: (age1[0-9a-z]+)/.exec(keygen)![1]!;
    const run = jobs({ ...s3, ...server(source), PGSHELF_AGE_RECIPIENTS: recipient });
    const globals = globalsName(source.host, source.port);
    // Two slots, as the scheduler makes them (each backup records its slot).
    const slot = async (s: string, databases: string[]): Promise<void> => {
      for (const database of [globals, ...databases]) await run.backup({ database, slot: s }, ctx());
    };
    await slot('2026-11-24T02:00:00', ['dr_app', 'dr_other', 'dr_gone']);
    await source.query('postgres', 'DROP DATABASE dr_gone');
    await source.query('dr_app', 'INSERT INTO orders VALUES (201, 999)');
    await slot('2026-11-25T02:00:00', ['dr_app', 'dr_other']);
    await run.storage.close();
    const listed = await runCli(['list', '--all', '--json'], { ...s3 });
    const archives = (JSON.parse(listed.stdout) as { backups: { archive: string }[] }).backups;
    expect(archives.length).toBe(7);
    expect(archives.every((b) => b.archive.endsWith('.sql.gz.age'))).toBe(true);

    const readme = await readFile(README, 'utf8');
    const section = readme.split('### Disaster recovery\n')[1]!.split('\n## ')[0]!;
    const [settings, commands] = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
    // The settings the walk-through asks for are the ones given here.
    const names = [...settings!.matchAll(/(?:export |\s)([A-Z][A-Z0-9_]+)=/g)].map((m) => m[1]);
    // S3_REGION and S3_FORCE_PATH_STYLE have the defaults an endpoint needs.
    const { S3_REGION: _region, S3_FORCE_PATH_STYLE: _pathStyle, ...bucketSettings } = s3;
    const given: Env = {
      ...bucketSettings,
      ...server(target),
      POSTGRES_PASSWORD: 'unused-trust-auth',
      PGSHELF_AGE_IDENTITY_FILE: keyFile,
      OLD_SERVER: `${source.host}:${source.port}`,
    };
    expect(names.sort()).toEqual(Object.keys(given).sort());

    const bin = await tempDir();
    defer(() => rm(bin, { recursive: true, force: true }));
    await mkdir(bin, { recursive: true });
    await symlink(CLI, path.join(bin, 'pgshelf'));
    const base = baseEnv();
    // Not part of the walk-through: a webhook, to see restore-server report each database as a restore does.
    const hook = await startReceiver(defer);
    const { stdout, stderr } = await execFileAsync('bash', ['-e', '-o', 'pipefail', '-c', commands!], {
      env: { ...base, ...given, PGSHELF_WEBHOOK_URL: `${hook.url}/hook`, PATH: `${bin}:${base.PATH ?? ''}` },
      maxBuffer: 16 << 20,
    });
    expect(stdout).toMatch(/would restore "dr_app" from backup [0-9a-f]{8}/);
    expect(stdout).toMatch(
      /globals [0-9a-f]{8}: 2 role\(s\) to create; existing, would be left as they are: postgres\n/,
    );
    expect(stdout).toContain('not in this slot: "dr_gone"');
    expect(stdout).toMatch(/globals [0-9a-f]{8}: 2 role\(s\) created; existing, left as they are: postgres/);
    expect(stdout).toMatch(/restored "dr_app" from backup [0-9a-f]{8} \(owner dr_owner\)/);
    expect(stdout).toMatch(/restored "dr_other" from backup [0-9a-f]{8} \(owner postgres\)/);
    expect(stderr).not.toMatch(/FAILED/);
    // One restore.succeeded per database restored (the dry run sends none), delivered before the command ended.
    expect(
      hook
        .json<{ event: string; database: string }>('/hook')
        .map((a) => `${a.event} ${a.database}`)
        .sort(),
    ).toEqual(['restore.succeeded dr_app', 'restore.succeeded dr_other']);

    // The new server holds the latest slot: same rows, owners and grants; the dropped database stays gone.
    const state = async (c: Cluster) => ({
      databases: await c.query(
        'postgres',
        `SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname LIKE 'dr\\_%' ORDER BY 1`,
      ),
      orders: await c.query('dr_app', 'SELECT count(*)::int AS n, sum(total)::text AS total FROM orders'),
      acl: await c.query(
        'dr_app',
        `SELECT pg_get_userbyid(relowner) AS owner, relacl::text AS acl FROM pg_class WHERE relname = 'orders'`,
      ),
    });
    const after = await state(target);
    expect(after).toEqual(await state(source));
    expect(after.databases).toEqual([
      { datname: 'dr_app', owner: 'dr_owner' },
      { datname: 'dr_other', owner: 'postgres' },
    ]);
    expect(after.orders).toEqual([{ n: 201, total: expect.any(String) as string }]);
  }, 180_000);
});
