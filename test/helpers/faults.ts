/** What the fault tests check afterwards: what storage holds, and whether a restored table equals its source. */
import type { Job, Queue } from 'bullmq';
import { readdir, readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { waitFor } from './cli.js';
import { createDatabase, dropDatabase, uniqueName, withClient } from './pg.js';

/** Every file under a storage folder, relative, sorted (temp files included: they start with '.'). */
export async function storedFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

export async function sha256File(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/**
 * A table's content in one line: row count and an order-independent digest of its rows (md5 of each row's text,
 * aggregated in order), cheap enough for tables of a few hundred MB.
 */
export const TABLE_DIGEST_SQL = (table: string): string =>
  `SELECT count(*)::text AS n, md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS md5
   FROM (SELECT md5(t::text) AS h FROM ${table} t) s`;

/** Waits for a job to settle; returns it reloaded, failing with its reason if it failed for good. */
export async function settled(queue: Queue, id: string, timeoutMs = 60_000): Promise<Job> {
  const state = await waitFor(
    `job ${id} to finish`,
    async () => {
      const s = await queue.getJobState(id);
      return s === 'completed' || s === 'failed' ? s : undefined;
    },
    timeoutMs,
  );
  const job = await queue.getJob(id);
  if (!job) throw new Error(`job ${id} vanished`);
  if (state === 'failed') throw new Error(`job ${id} failed: ${job.failedReason}`);
  return job;
}

/**
 * A database of random bytes (dumped as hex, which gzips to about 54%): `rows` KiB of them, so an upload is still
 * sending parts when a fault is injected. Dropped after the test (kept when it fails).
 */
export async function noiseDatabase(
  defer: (fn: () => Promise<unknown>, options?: { keepOnFailure?: boolean }) => void,
  rows: number,
): Promise<string> {
  const db = uniqueName();
  await createDatabase(db);
  defer(() => dropDatabase(db), { keepOnFailure: true });
  await withClient(db, async (c) => {
    await c.query('CREATE EXTENSION pgcrypto');
    await c.query(
      'CREATE TABLE noise AS SELECT i, gen_random_bytes(1024) AS b FROM generate_series(1, $1::int) i',
      [rows],
    );
  });
  return db;
}
