/**
 * The status model on S3 (s3rver), counting the storage requests: a refresh lists the bucket once and reads only
 * the markers and the manifests that are new or rewritten; a scrape within the TTL asks the storage nothing.
 */
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { silentLogger } from '../../src/logger.js';
import { collectStatus, createMonitor, type ManifestCache } from '../../src/monitor/index.js';
import { createStorage, type RequestCounts } from '../../src/storage/index.js';
import { nextSecond } from '../helpers/cli.js';
import { pgEnv, s3Env, testConfig } from '../helpers/env.js';
import { ctx, jobs } from '../helpers/jobs.js';
import { sampleDatabase, useCleanup } from '../helpers/lifecycle.js';
import { createBucket } from '../helpers/s3.js';

const defer = useCleanup();

/** The requests `fn` made, by kind. */
async function counted(requests: RequestCounts, fn: () => Promise<unknown>): Promise<RequestCounts> {
  const before = { ...requests };
  await fn();
  return Object.fromEntries(
    Object.entries(requests).map(([k, v]) => [k, v - before[k as keyof RequestCounts]]),
  ) as unknown as RequestCounts;
}

describe('collectStatus on S3', () => {
  it('lists once per refresh, reads a manifest again only when a drill rewrote it, and caches within the TTL', async () => {
    const db = await sampleDatabase(defer, 30);
    const env: Env = { ...pgEnv(db), ...s3Env(await createBucket()), PGSHELF_SCHEDULE: '0 0 1 1 *' };
    const j = jobs(env);
    const first = await j.backup({}, ctx());
    await nextSecond();
    const second = await j.backup({}, ctx());

    const config = testConfig(env);
    const storage = createStorage(config.storage);
    defer(() => storage.close());
    const manifests: ManifestCache = new Map();
    const deps = { config, storage, manifests };

    let report = await collectStatus(deps);
    const cold = await counted(storage.requests, async () => (report = await collectStatus(deps)));
    expect(report.databases).toHaveLength(1);
    const status = report.databases[0]!;
    expect(status.lastSuccess?.id).toBe(second.id);
    expect(status.stored.count).toBe(2);
    expect(status.stored.bytes).toBe(first.bytes + second.bytes);
    expect(status.lastDrill).toBeNull();
    // Warm: one listing and the two markers; no manifest read again.
    expect(cold).toMatchObject({ list: 1, get: 2, put: 0 });

    await j.drill({}, ctx());
    const afterDrill = await counted(storage.requests, async () => (report = await collectStatus(deps)));
    // The drilled manifest (rewritten) is read again, the other is not.
    expect(afterDrill).toMatchObject({ list: 1, get: 3 });
    const drilled = report.databases[0]!.lastDrill;
    expect(drilled).toMatchObject({ backupId: second.id, verified: true });
    expect(report.databases[0]!.lastVerifiedDrill).toEqual(drilled);

    // A fresh cache (a restarted serve) reads every manifest once and finds the same.
    const now = new Date(report.generatedAt);
    const restarted = await counted(storage.requests, async () =>
      expect((await collectStatus({ config, storage }, now)).databases).toEqual(report.databases),
    );
    expect(restarted).toMatchObject({ list: 1, get: 4 });

    // Through the monitor: a second request within the TTL asks the storage nothing.
    const monitor = createMonitor({ config, storage, logger: silentLogger(), ttlMs: 60_000 });
    defer(() => monitor.close());
    const snap = await monitor.status();
    expect(snap.value?.databases[0]?.lastSuccess?.id).toBe(second.id);
    expect(snap.value?.queues.ok).toBe(true);
    const again = await counted(storage.requests, async () => {
      await Promise.all([monitor.status(), monitor.status(), monitor.status()]);
    });
    expect(again).toMatchObject({ list: 0, get: 0, head: 0 });
  });
});
