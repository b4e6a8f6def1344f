import { rm, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { createBackupJob } from '../../src/jobs/backup.js';
import { createPruneJob } from '../../src/jobs/prune.js';
import { createLogger, silentLogger } from '../../src/logger.js';
import { scanBackups } from '../../src/catalog/backups.js';
import { writeManifest } from '../../src/catalog/manifest.js';
import { attemptKey, verifiedKey } from '../../src/catalog/markers.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { backupKeys } from '../../src/catalog/layout.js';
import { BackupGuards } from '../../src/worker/locks.js';
import { runCli, waitFor } from '../helpers/cli.js';
import { pgEnv, tempDir, testConfig } from '../helpers/env.js';
import { daemon, redis, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { fakeManifest, storeFake } from '../helpers/manifests.js';
import { createDatabase, createSampleSchema, dropDatabase, uniqueName } from '../helpers/pg.js';
import { ctx } from '../helpers/jobs.js';

const defer = useCleanup();

/** A logger whose JSON lines are kept, to check what was reported. */
function capturingLogger(): {
  logger: ReturnType<typeof createLogger>;
  lines: () => Record<string, unknown>[];
} {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  return {
    logger: createLogger('info', stream),
    lines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

async function folder(db: string, env: Env = {}): Promise<{ env: Env; storage: Storage; dir: string }> {
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const full = { ...pgEnv(db), PGSHELF_STORAGE: dir, ...env };
  return { env: full, storage: createStorage(testConfig(full).storage), dir };
}

const KEEP_TWO = {
  PGSHELF_KEEP_LAST: '2',
  PGSHELF_KEEP_DAILY: '0',
  PGSHELF_KEEP_WEEKLY: '0',
  PGSHELF_KEEP_MONTHLY: '0',
  PGSHELF_MIN_KEEP: '2',
};

describe('prune trusts manifests, not names', () => {
  it('keeps two real backups next to files and manifests dated 2099, and reports those as ignored', async () => {
    const db = uniqueName();
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    await createSampleSchema(db, 20);
    const { env, storage, dir } = await folder(db, KEEP_TWO);
    const config = testConfig(env);
    const backup = createBackupJob({ config, storage, logger: silentLogger() });
    const real = [(await backup({}, ctx())).id, (await backup({}, ctx())).id];

    // 12 empty files named as backups of 2099: 6 manifests, 6 archives.
    const planted: string[] = [];
    for (let i = 0; i < 12; i++) {
      const id = `0099${String(i).padStart(4, '0')}`;
      const keys = backupKeys(db, new Date(Date.UTC(2099, 0, 1 + i)), id);
      const file = path.join(dir, ...(i % 2 ? keys.archive : keys.manifest).split('/'));
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, '');
      planted.push(id);
    }
    // And a schema-valid manifest whose name is in the past but whose startedAt is 2099.
    const past = new Date(Date.now() - 86_400_000);
    await storeFake(storage, db, past, 'fa1ce000');
    const keys = backupKeys(db, past, 'fa1ce000');
    await writeManifest(storage, keys.manifest, {
      ...fakeManifest(db, past, 'fa1ce000'),
      startedAt: '2099-06-01T00:00:00.000Z',
    });

    const res = await runCli(['prune', '--dry-run', '--json'], env);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as {
      keep: string[];
      delete: string[];
      ignored: { id: string; key: string; reason: string }[];
    };
    expect([...out.keep].sort()).toEqual([...real].sort());
    expect(out.delete).toEqual([]);
    expect(out.ignored.map((i) => i.id).sort()).toEqual([...planted, 'fa1ce000'].sort());
    const byId = new Map(out.ignored.map((i) => [i.id, i.reason]));
    expect(byId.get(planted[0]!)).toMatch(/its name is dated 2099-01-01T00:00:00.000Z, in the future/);
    expect(byId.get('fa1ce000')).toMatch(/its manifest is dated 2099-06-01T00:00:00.000Z, in the future/);
    // Reported in the log too (the command logs warnings on stderr).
    const logged = res.stderr.split('\n').filter((l) => l.includes('"msg":"prune ignored an object"'));
    expect(logged).toHaveLength(13);
    // A real prune then deletes none of the real backups.
    const result = await createPruneJob({ config, storage, logger: silentLogger() })({}, ctx());
    expect(result.delete).toEqual([]);
    const left = (await scanBackups(storage, db)).map((b) => b.id);
    expect(left).toEqual(expect.arrayContaining(real));
  });

  it('deletes nothing, and says why, when the last-attempt marker cannot be read', async () => {
    const { env, storage } = await folder('shop', { PGSHELF_KEEP_LAST: '1', PGSHELF_MIN_KEEP: '1' });
    for (let i = 0; i < 5; i++) {
      await storeFake(storage, 'shop', new Date(Date.UTC(2026, 10, 20 + i, 2)), `aaaa000${i}`);
    }
    await storage.putObject(attemptKey('shop'), JSON.stringify({ status: 'done', id: 'x', at: 'yesterday' }));
    const result = await createPruneJob({ config: testConfig(env), storage, logger: silentLogger() })(
      {},
      ctx(),
    );
    expect(result.delete).toEqual([]);
    expect(result.blocked).toContain(storage.locate(attemptKey('shop')));
    expect(result.blocked).toMatch(/status: .*; at: .*prune cannot tell whether the latest backup failed/);
    expect((await scanBackups(storage, 'shop')).length).toBe(5);

    // Oversized: refused without being parsed, same outcome.
    await storage.putObject(attemptKey('shop'), ' '.repeat(100_000));
    const big = await createPruneJob({ config: testConfig(env), storage, logger: silentLogger() })({}, ctx());
    expect(big.blocked).toMatch(/larger than 65536 bytes/);
    expect((await scanBackups(storage, 'shop')).length).toBe(5);
  });

  it('ignores an unusable last-verified marker, and logs it', async () => {
    const { env, storage } = await folder('shop', {
      PGSHELF_KEEP_LAST: '1',
      PGSHELF_KEEP_DAILY: '0',
      PGSHELF_KEEP_WEEKLY: '0',
      PGSHELF_KEEP_MONTHLY: '0',
      PGSHELF_MIN_KEEP: '1',
    });
    for (let i = 0; i < 3; i++) {
      await storeFake(storage, 'shop', new Date(Date.UTC(2026, 10, 20 + i, 2)), `bbbb000${i}`);
    }
    await storage.putObject(verifiedKey('shop'), JSON.stringify({ id: ['bbbb0000'] }));
    const { logger, lines } = capturingLogger();
    const result = await createPruneJob({ config: testConfig(env), storage, logger })({}, ctx({ logger }));
    expect(result.keep).toEqual(['bbbb0002']);
    expect(result.delete).toEqual(['bbbb0001', 'bbbb0000']);
    const warning = lines().find((l) => l.msg === 'ignoring an unusable marker');
    expect(String(warning?.problem)).toMatch(/last-verified\.json is invalid: id: .*; at: /);
  });
});

describe('prune and the database guard', () => {
  it('waits while a backup of the same database holds the guard, then runs', async () => {
    const { db, env, dir, queue } = await workerFixture(defer, {
      rows: 10,
      env: { PGSHELF_KEEP_LAST: '1', PGSHELF_MIN_KEEP: '1', PGSHELF_KEEP_DAILY: '0' },
    });
    const storage = createStorage(testConfig({ ...env, PGSHELF_STORAGE: dir }).storage);
    for (let i = 0; i < 3; i++) {
      await storeFake(storage, db, new Date(Date.UTC(2026, 9, 1 + i, 2)), `cccc000${i}`);
    }
    const guards = new BackupGuards(redis, env.PGSHELF_QUEUE_PREFIX!, 2);
    defer(() => guards.close());
    const held = await guards.acquireDatabase(db);
    expect(held.ok).toBe(true);
    const w = daemon('worker', env, defer);
    await waitFor('the worker', () => w.stderr().includes('worker started'));
    const job = await queue('prune').add('prune', { database: db });
    await waitFor('the prune to wait', () =>
      w.stderr().includes('a backup or prune of this database is running: prune waiting'),
    );
    // The line is written just before the worker moves the job to delayed: wait for the move.
    await waitFor('the prune to be delayed', async () => (await job.getState()) === 'delayed');
    expect((await scanBackups(storage, db)).length).toBe(3);
    if (held.ok) await held.release();
    await waitFor('the prune', async () => (await queue('prune').getCompletedCount()) === 1, 60_000);
    expect((await scanBackups(storage, db)).map((b) => b.id)).toEqual(['cccc0002']);
  });
  it('`prune --in-process` refuses while a backup of the same database holds the guard, deleting nothing', async () => {
    const { db, env, dir } = await workerFixture(defer, {
      rows: 10,
      env: { PGSHELF_KEEP_LAST: '1', PGSHELF_MIN_KEEP: '1', PGSHELF_KEEP_DAILY: '0' },
    });
    const storage = createStorage(testConfig({ ...env, PGSHELF_STORAGE: dir }).storage);
    for (let i = 0; i < 3; i++) {
      await storeFake(storage, db, new Date(Date.UTC(2026, 9, 1 + i, 2)), `dddd000${i}`);
    }
    const guards = new BackupGuards(redis, env.PGSHELF_QUEUE_PREFIX!, 2);
    defer(() => guards.close());
    const held = await guards.acquire(db, env.POSTGRES_HOST!, Number(env.POSTGRES_PORT ?? 5432));
    expect(held.ok).toBe(true);
    const refused = await runCli(['prune', '--in-process'], env);
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(`another backup or prune of "${db}" is running`);
    expect((await scanBackups(storage, db)).length).toBe(3);
    // A dry run changes nothing, so it needs no guard.
    expect((await runCli(['prune', '--dry-run'], env)).code).toBe(0);
    if (held.ok) await held.release();
    const ran = await runCli(['prune', '--in-process'], env);
    expect(ran.code, ran.stderr).toBe(0);
    expect((await scanBackups(storage, db)).map((b) => b.id)).toEqual(['dddd0002']);
  });
});
