/** Settings for tests: a real Config from an explicit environment, never the developer's own. */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { loadConfig, type Config, type Env } from '../../src/config/index.js';
import { PG_HOST, PG_PORT, PG_USER } from './pg.js';

export async function tempDir(prefix = 'pgshelf-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/** PATH and the like, for child processes. */
export function baseEnv(): Env {
  const { PATH, HOME, LANG, LC_ALL, TMPDIR } = process.env;
  return { PATH, HOME, LANG, LC_ALL, TMPDIR };
}

export function pgEnv(database: string): Env {
  return {
    POSTGRES_DB: database,
    POSTGRES_HOST: PG_HOST,
    POSTGRES_PORT: String(PG_PORT),
    POSTGRES_USER: PG_USER,
  };
}

export function uniquePrefix(): string {
  return `pgshelf-test-${randomBytes(4).toString('hex')}`;
}

/** Environment for an S3 bucket on the test server (credentials for s3rver; moto accepts any). */
export function s3Env(bucket: string, prefix = 'backups', endpoint = inject('s3Endpoint')): Env {
  return {
    PGSHELF_STORAGE: `s3://${bucket}/${prefix}`,
    S3_ENDPOINT: endpoint,
    S3_REGION: 'us-east-1',
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
  };
}

export function testConfig(env: Env, cwd?: string): Config {
  return loadConfig(
    { ...baseEnv(), PGSHELF_QUEUE_PREFIX: uniquePrefix(), PGSHELF_RETRY_DELAY: '1', ...env },
    { cwd },
  );
}
