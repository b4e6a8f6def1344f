/**
 * Fault: PostgreSQL restarts while pg_dump is streaming a table (a throwaway cluster of the test's own; the shared
 * server is never touched). The attempt must fail naming the cause, the retry must succeed, and storage must end
 * up with exactly one complete backup that restores to the source.
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { runCli, waitFor } from '../helpers/cli.js';
import { tempDir, uniquePrefix } from '../helpers/env.js';
import { settled, sha256File, storedFiles, TABLE_DIGEST_SQL } from '../helpers/faults.js';
import { daemon, queues, useCleanup } from '../helpers/lifecycle.js';
import { throwawayCluster } from '../helpers/services.js';

const defer = useCleanup();

describe('fault: PostgreSQL restarted mid-dump', () => {
  it('fails the attempt with pg_dump’s reason, retries, and stores exactly one complete backup', async () => {
    const cluster = await throwawayCluster(defer);
    await cluster.query('postgres', 'CREATE DATABASE shop');
    // ~90 MB of md5 text: gzip holds pg_dump's COPY for a few seconds, time to restart the server.
    await cluster.query(
      'shop',
      `CREATE TABLE big AS SELECT i, md5(i::text) AS a, md5((-i)::text) AS b FROM generate_series(1, 1000000) i;
       CREATE TABLE small (id int PRIMARY KEY, note text); INSERT INTO small VALUES (1, 'one'), (2, 'two')`,
    );
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const prefix = uniquePrefix();
    const env: Env = {
      POSTGRES_DB: 'shop',
      POSTGRES_HOST: cluster.host,
      POSTGRES_PORT: String(cluster.port),
      POSTGRES_USER: cluster.user,
      PGSHELF_STORAGE: dir,
      PGSHELF_QUEUE_PREFIX: prefix,
      PGSHELF_RETRY_DELAY: '1',
      // One gzip thread at level 6 keeps the COPY of the big table running for seconds on any machine.
      PGSHELF_GZIP_THREADS: '1',
      PGSHELF_LOG_LEVEL: 'info',
    };
    const queue = queues(prefix, defer)('backup');
    const worker = daemon('worker', env, defer);
    // Enqueued as a user does, so the job carries pgshelf's retry settings.
    const queued = await runCli(['backup', '--no-wait', '--json'], env);
    expect(queued.code, queued.stderr).toBe(0);
    const { jobId } = JSON.parse(queued.stdout) as { jobId: string };

    await waitFor(
      'pg_dump to be streaming the big table',
      async () =>
        (
          await cluster.query(
            'postgres',
            `SELECT 1 FROM pg_stat_activity WHERE datname = 'shop' AND query LIKE 'COPY public.big %'`,
          )
        ).length > 0,
      30_000,
    );
    await cluster.restart();

    const done = await settled(queue, jobId);
    // Two attempts: the first failed with pg_dump's own words for the cause, the second succeeded.
    expect(done.attemptsMade).toBe(2);
    expect(done.stacktrace).toHaveLength(1);
    expect(done.stacktrace?.[0]).toMatch(
      /pg_dump exited with code 1:\npg_dump: error: Dumping the contents of table "big" failed[\s\S]*(server closed the connection unexpectedly|terminating connection)/,
    );
    expect(worker.stderr()).toMatch(/backup job failed/);

    // Exactly one complete backup: one archive, its manifest, no temp file, and the archive matches the manifest.
    const files = (await storedFiles(dir)).filter((f) => !f.endsWith('.pgshelf-last-attempt.json'));
    expect(files).toHaveLength(2);
    const archive = files.find((f) => f.endsWith('.sql.gz'));
    const manifestFile = files.find((f) => f.endsWith('.manifest.json'));
    expect(archive && manifestFile).toBeTruthy();
    const manifest = JSON.parse(await readFile(path.join(dir, manifestFile!), 'utf8')) as {
      id: string;
      archive: { sha256: string };
      tables: Record<string, number>;
    };
    expect(manifest.id).toBe((done.returnvalue as { id: string }).id);
    expect(await sha256File(path.join(dir, archive!))).toBe(manifest.archive.sha256);
    expect(manifest.tables['public.big']).toBe(1_000_000);

    // Its restore, into the same cluster, equals the source.
    const restored = await runCli(['restore', '--in-process', '--into', 'shop_restored'], env);
    expect(restored.code, restored.stderr).toBe(0);
    for (const table of ['big', 'small']) {
      const [source] = await cluster.query('shop', TABLE_DIGEST_SQL(table));
      const [copy] = await cluster.query('shop_restored', TABLE_DIGEST_SQL(table));
      expect(copy).toEqual(source);
    }
  }, 240_000);
});
