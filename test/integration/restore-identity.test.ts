import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config.js';
import { TargetExistsError } from '../../src/errors.js';
import { createBackupJob } from '../../src/jobs/backup.js';
import type { JobContext } from '../../src/jobs/context.js';
import { createRestoreJob, restoreNonce } from '../../src/jobs/restore.js';
import { silentLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import { pgEnv, tempDir, testConfig } from '../helpers/env.js';
import { useCleanup } from '../helpers/lifecycle.js';
import {
  createDatabase,
  createSampleSchema,
  dropDatabase,
  snapshotDatabase,
  uniqueName,
  withClient,
} from '../helpers/pg.js';

const defer = useCleanup();

function ctx(jobId?: string): JobContext {
  return {
    signal: new AbortController().signal,
    logger: silentLogger(),
    progress: () => undefined,
    ...(jobId !== undefined ? { jobId } : {}),
  };
}

async function fixture(rows = 200): Promise<{ source: string; env: Env }> {
  const source = uniqueName();
  await createDatabase(source);
  defer(() => dropDatabase(source), { keepOnFailure: true });
  await createSampleSchema(source, rows);
  const dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  const env = { ...pgEnv(source), PGSHELF_STORAGE: dir };
  const config = testConfig(env);
  await createBackupJob({ config, storage: createStorage(config.storage), logger: silentLogger() })(
    {},
    ctx(),
  );
  return { source, env };
}

function restoreJob(env: Env) {
  const config = testConfig(env);
  return createRestoreJob({ config, storage: createStorage(config.storage), logger: silentLogger() });
}

/** Staging databases of restores into `into` still there. */
async function stagingFor(into: string): Promise<string[]> {
  return withClient('postgres', async (c) => {
    const r = await c.query<{ d: string }>(
      `SELECT datname AS d FROM pg_database
       WHERE datname LIKE 'pgshelf\\_restore\\_%' AND shobj_description(oid, 'pg_database') LIKE $1`,
      [`%into ${into}`],
    );
    return r.rows.map((row) => row.d);
  });
}

describe('restore identity', () => {
  it('a reused job id does not make an existing target look restored; the same nonce does', async () => {
    const f = await fixture();
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const first = restoreNonce();
    await restoreJob(f.env)({ into, nonce: first }, ctx('1'));
    await withClient(into, (c) => c.query(`INSERT INTO app.users (email) VALUES ('after@restore')`));
    const before = await snapshotDatabase(into);
    // The queue was obliterated and its ids start again at 1: another restore, same job id, same target.
    await expect(restoreJob(f.env)({ into, nonce: restoreNonce() }, ctx('1'))).rejects.toThrow(
      TargetExistsError,
    );
    await expect(restoreJob(f.env)({ into }, ctx('1'))).rejects.toThrow(TargetExistsError);
    // A retry of the first restore (its nonce) finds it done and changes nothing.
    const again = await restoreJob(f.env)({ into, nonce: first }, ctx('1'));
    expect(again.uncompressedBytes).toBe(0);
    expect(await snapshotDatabase(into)).toEqual(before);
    expect(await stagingFor(into)).toEqual([]);
  });

  it('two restores into one target at once: one wins, the other fails clearly, neither drops the other', async () => {
    const f = await fixture(3000);
    const into = uniqueName('pgshelf_into');
    defer(() => dropDatabase(into), { keepOnFailure: true });
    const job = restoreJob(f.env);
    const results = await Promise.allSettled([job({ into }, ctx()), job({ into }, ctx())]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toBeInstanceOf(TargetExistsError);
    expect((lost[0]!.reason as Error).message).toMatch(/another restore finished first|already exists/);
    expect(await snapshotDatabase(into)).toEqual(await snapshotDatabase(f.source));
    expect(await stagingFor(into)).toEqual([]);
  });
});
