#!/usr/bin/env node
// Prune benchmark: 10,000 stored backups of one database (20,000 objects) on a local S3-compatible server
// (moto_server when installed, else s3rver), pruned with the default policy. Reports wall time and the
// list/get/delete requests it made.
//   node --openssl-legacy-provider bench/prune.mjs [--backups 10000]
import { loadConfig } from '../dist/config/index.js';
import { createPruneJob } from '../dist/jobs/prune.js';
import { silentLogger } from '../dist/logger.js';
import { createStorage } from '../dist/storage/index.js';
import { backupKeys } from '../dist/catalog/layout.js';
import { args, startS3Server } from './lib.mjs';

const opts = args({ backups: 10000 });

const server = await startS3Server();
try {
  const env = { POSTGRES_DB: 'shop', ...server.env('pg') };
  const config = loadConfig(env);
  const storage = createStorage(config.storage);
  const t0 = Date.now();
  // Hourly backups going back 10,000 hours.
  const end = Date.parse('2026-11-25T02:00:00Z');
  for (let i = 0; i < opts.backups; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, opts.backups - i) }, async (_, j) => {
        const n = i + j;
        const keys = backupKeys('shop', new Date(end - n * 3_600_000), n.toString(16).padStart(8, '0'));
        await storage.putObject(keys.archive, 'x', 'application/gzip');
        await storage.putObject(keys.manifest, '{}');
      }),
    );
  }
  console.error(
    `stored ${opts.backups} backups on ${server.name} in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  const before = { ...storage.requests };
  const prune = createPruneJob({
    config,
    storage,
    logger: silentLogger(),
    now: () => new Date(end + 3_600_000),
  });
  const t1 = process.hrtime.bigint();
  const result = await prune(
    {},
    { signal: new AbortController().signal, logger: silentLogger(), progress: () => {} },
  );
  const ms = Number(process.hrtime.bigint() - t1) / 1e6;
  const requests = Object.fromEntries(Object.entries(storage.requests).map(([k, v]) => [k, v - before[k]]));
  await storage.close();
  const summary = {
    bench: 'prune',
    server: server.name,
    backups: opts.backups,
    objects: opts.backups * 2,
    kept: result.keep.length,
    deleted: result.delete.length,
    pruneMs: Math.round(ms),
    requests,
  };
  console.error(
    `prune over ${opts.backups} backups: ${summary.kept} kept, ${summary.deleted} deleted in ${(ms / 1000).toFixed(2)} s; ` +
      `requests: ${JSON.stringify(requests)}`,
  );
  console.log(JSON.stringify(summary, null, 2));
} finally {
  await server.stop();
}
