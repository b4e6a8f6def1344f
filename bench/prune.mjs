#!/usr/bin/env node
// Prune benchmark: 10,000 stored backups of one database (20,000 objects) on a local S3-compatible server
// (moto_server when installed, else s3rver), pruned with the default policy. Reports wall time and the
// list/get/delete requests it made.
//   node --openssl-legacy-provider bench/prune.mjs [--backups 10000]
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../dist/config.js';
import { createPruneJob } from '../dist/jobs/prune.js';
import { silentLogger } from '../dist/logger.js';
import { createStorage } from '../dist/storage/index.js';
import { backupKeys } from '../dist/storage/layout.js';
import { args, execFileAsync } from './lib.mjs';

const opts = args({ backups: 10000 });

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let hasMoto = true;
  await execFileAsync('bash', ['-c', 'command -v moto_server']).catch(() => (hasMoto = false));
  if (hasMoto) {
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
    return { name: 'moto', endpoint, stop: async () => child.kill('SIGTERM') };
  }
  const { default: S3rver } = await import('s3rver');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-s3rver-'));
  const server = new S3rver({ port, address: '127.0.0.1', silent: true, directory: dir });
  await server.run();
  return {
    name: 's3rver',
    endpoint,
    stop: async () => (await server.close(), await rm(dir, { recursive: true, force: true })),
  };
}

const server = await startServer();
try {
  const bucket = `bench-${randomBytes(3).toString('hex')}`;
  const creds = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  const client = new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: creds,
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  const env = {
    POSTGRES_DB: 'shop',
    PGSHELF_STORAGE: `s3://${bucket}/pg`,
    S3_ENDPOINT: server.endpoint,
    AWS_ACCESS_KEY_ID: creds.accessKeyId,
    AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
  };
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
