/**
 * TLS to PostgreSQL: POSTGRES_SSLMODE and POSTGRES_SSLROOTCERT reach pgshelf's own connections and pg_dump, psql
 * and createdb alike. The cluster here refuses every plain connection, so any one that ignored them would fail.
 */
import { rm } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { Db } from '../../src/postgres/connection.js';
import { inspectDatabase } from '../../src/postgres/server.js';
import { runCli } from '../helpers/cli.js';
import { useCleanup } from '../helpers/lifecycle.js';
import { tempDir, testConfig } from '../helpers/env.js';
import { PG_PORT, PG_USER } from '../helpers/pg.js';
import { startTlsCluster, type TlsCluster } from '../helpers/tls.js';

const defer = useCleanup();
let cluster: TlsCluster;
const SOURCE = 'tls_source';

async function onCluster<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: 'postgres', database });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Rows of the sample table, in order, as text. */
async function rows(database: string): Promise<string[]> {
  return onCluster(database, async (c) =>
    (await c.query<{ r: string }>('SELECT t::text AS r FROM items t ORDER BY id')).rows.map((r) => r.r),
  );
}

function env(mode: string, rootCert?: string): Env {
  return {
    POSTGRES_DB: SOURCE,
    POSTGRES_HOST: '127.0.0.1',
    POSTGRES_PORT: String(cluster.port),
    POSTGRES_USER: 'postgres',
    POSTGRES_SSLMODE: mode,
    ...(rootCert ? { POSTGRES_SSLROOTCERT: rootCert } : {}),
  };
}

beforeAll(async () => {
  cluster = await startTlsCluster();
  await onCluster('postgres', (c) => c.query(`CREATE DATABASE ${SOURCE}`));
  await onCluster(SOURCE, (c) =>
    c.query(`CREATE TABLE items (id int PRIMARY KEY, name text, at timestamptz);
             INSERT INTO items SELECT i, 'item ' || i || E' \\'q\\'', '2024-01-01'::timestamptz + i * interval '1 h'
             FROM generate_series(1, 300) i`),
  );
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('TLS to PostgreSQL', () => {
  it.each([
    ['require', false],
    ['verify-full', true],
  ])('backs up and restores with POSTGRES_SSLMODE=%s', async (mode, withCa) => {
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const e = { ...env(mode, withCa ? cluster.caFile : undefined), PGSHELF_STORAGE: dir };
    const into = `tls_into_${mode.replace('-', '_')}`;
    const backup = await runCli(['backup', '--in-process', '--json'], e);
    expect(backup.code, backup.stderr).toBe(0);
    const restore = await runCli(['restore', '--in-process', '--into', into, '--json'], e);
    expect(restore.code, restore.stderr).toBe(0);
    const restored = await rows(into);
    expect(restored).toHaveLength(300);
    expect(restored).toEqual(await rows(SOURCE));
    // The restore's own connections were TLS too: the server saw them in pg_stat_ssl while they lasted.
    const db = await Db.connect(testConfig(e).databases[0]!.postgres, {});
    try {
      const [row] = await db.query<{ ssl: boolean }>(
        'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
      );
      expect(row?.ssl).toBe(true);
    } finally {
      await db.close();
    }
  });

  it('verify-full with a CA that did not sign the server certificate fails, naming POSTGRES_SSLROOTCERT', async () => {
    const dir = await tempDir();
    defer(() => rm(dir, { recursive: true, force: true }));
    const e = { ...env('verify-full', cluster.wrongCaFile), PGSHELF_STORAGE: dir };
    const res = await runCli(['backup', '--in-process'], e);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('POSTGRES_SSLROOTCERT');
    expect(res.stderr).toContain(cluster.wrongCaFile);
    await expect(inspectDatabase(testConfig(e).databases[0]!.postgres)).rejects.toThrow(ConfigError);
  });

  it('verify-ca skips the host name check and verify-full does not', async () => {
    // The certificate names 127.0.0.1 and localhost; the cluster listens on 127.0.0.2 as well.
    const at = (mode: string) =>
      testConfig({ ...env(mode, cluster.caFile), POSTGRES_HOST: '127.0.0.2' }).databases[0]!.postgres;
    await expect(inspectDatabase(at('verify-ca'))).resolves.toMatchObject({ major: 15 });
    await expect(inspectDatabase(at('verify-full'))).rejects.toThrow(
      /127\.0\.0\.2.*POSTGRES_SSLMODE=verify-ca/s,
    );
  });

  it('prefer (the default) falls back to plain text on a server without TLS; require does not', async () => {
    const shared = { POSTGRES_DB: 'postgres', POSTGRES_HOST: '127.0.0.1', POSTGRES_PORT: String(PG_PORT) };
    const plain = testConfig({ ...shared, POSTGRES_USER: PG_USER }).databases[0]!.postgres;
    await expect(inspectDatabase(plain)).resolves.toMatchObject({ major: 15 });
    const required = testConfig({ ...shared, POSTGRES_USER: PG_USER, POSTGRES_SSLMODE: 'require' });
    await expect(inspectDatabase(required.databases[0]!.postgres)).rejects.toThrow(/POSTGRES_SSLMODE/);
  });
});
