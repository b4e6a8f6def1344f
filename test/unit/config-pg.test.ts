import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, type PgSettings } from '../../src/config/index.js';
import { childBaseEnv } from '../../src/config/postgres.js';
import { ConfigError } from '../../src/errors.js';
import { childEnv, sslConfig } from '../../src/postgres/connection.js';

async function dirWithCa(): Promise<{ dir: string; ca: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-cfg-'));
  const ca = path.join(dir, 'root.crt');
  await writeFile(ca, '-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n');
  return { dir, ca };
}

const pgOf = (env: Record<string, string>): PgSettings =>
  loadConfig({ POSTGRES_DB: 'app', POSTGRES_HOST: 'db.internal', ...env }).databases[0]!.postgres;

describe('POSTGRES_SSLMODE and POSTGRES_SSLROOTCERT', () => {
  it('are parsed, with libpq PGSSLMODE/PGSSLROOTCERT as the fallback', async () => {
    const { ca } = await dirWithCa();
    expect(pgOf({ POSTGRES_SSLMODE: 'verify-full', POSTGRES_SSLROOTCERT: ca })).toMatchObject({
      sslMode: 'verify-full',
      sslRootCert: ca,
    });
    expect(pgOf({ PGSSLMODE: 'require' })).toMatchObject({ sslMode: 'require', sslRootCert: undefined });
    expect(pgOf({})).toMatchObject({ sslMode: undefined });
  });

  it.each([
    [{ POSTGRES_SSLMODE: 'required' }, /POSTGRES_SSLMODE="required" is invalid.*verify-full/],
    [{ POSTGRES_SSLMODE: 'verify-full' }, /verify-full needs POSTGRES_SSLROOTCERT/],
    [
      { POSTGRES_SSLROOTCERT: '/nonexistent/root.crt' },
      /POSTGRES_SSLROOTCERT=\/nonexistent\/root.crt: cannot read/,
    ],
    [{ PGSSLMODE: 'bogus' }, /PGSSLMODE="bogus"/],
  ])('refuses %o', (env, message) => {
    expect(() => pgOf(env)).toThrow(ConfigError);
    expect(() => pgOf(env)).toThrow(message);
  });

  it('maps to node-postgres TLS options with libpq meaning', async () => {
    const { ca } = await dirWithCa();
    const pem = '-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n';
    expect(sslConfig(pgOf({}))).toEqual({ rejectUnauthorized: false }); // prefer
    expect(sslConfig(pgOf({ POSTGRES_SSLMODE: 'disable' }))).toBe(false);
    expect(sslConfig(pgOf({ POSTGRES_SSLMODE: 'allow' }))).toBe(false);
    expect(sslConfig(pgOf({ POSTGRES_SSLMODE: 'require' }))).toEqual({ rejectUnauthorized: false });
    // libpq: require with a root certificate verifies the chain, like verify-ca.
    expect(sslConfig(pgOf({ POSTGRES_SSLMODE: 'require', POSTGRES_SSLROOTCERT: ca }))).toMatchObject({
      ca: pem,
    });
    const verifyCa = sslConfig(pgOf({ POSTGRES_SSLMODE: 'verify-ca', POSTGRES_SSLROOTCERT: ca }));
    expect(verifyCa).toMatchObject({ ca: pem });
    // verify-ca: the chain is checked (rejectUnauthorized stays on), the host name is not.
    expect(typeof verifyCa === 'object' && verifyCa.checkServerIdentity?.('other.host', {} as never)).toBe(
      undefined,
    );
    expect(typeof verifyCa === 'object' && verifyCa.rejectUnauthorized).toBe(undefined);
    expect(sslConfig(pgOf({ POSTGRES_SSLMODE: 'verify-full', POSTGRES_SSLROOTCERT: ca }))).toEqual({
      ca: pem,
    });
    // UNIX sockets never use TLS, in libpq either.
    expect(sslConfig(pgOf({ POSTGRES_SSLMODE: 'require', POSTGRES_HOST: '/var/run/postgresql' }))).toBe(
      false,
    );
  });

  it('reach the tools as PGSSLMODE and PGSSLROOTCERT', async () => {
    const { ca } = await dirWithCa();
    const pg = pgOf({ POSTGRES_SSLMODE: 'verify-ca', POSTGRES_SSLROOTCERT: ca });
    expect(childEnv({ PATH: '/bin' }, pg)).toMatchObject({ PGSSLMODE: 'verify-ca', PGSSLROOTCERT: ca });
  });

  it('are per database in the YAML file, relative to it', async () => {
    const { dir, ca } = await dirWithCa();
    const file = path.join(dir, 'databases.yaml');
    await writeFile(
      file,
      'defaults:\n  sslmode: require\ndatabases:\n  - name: a\n  - name: b\n    sslmode: verify-full\n    sslrootcert: root.crt\n',
    );
    const config = loadConfig({ PGSHELF_CONFIG: file });
    expect(config.databases.map((d) => [d.postgres.sslMode, d.postgres.sslRootCert])).toEqual([
      ['require', undefined],
      ['verify-full', ca],
    ]);
    await writeFile(file, 'databases:\n  - name: a\n    sslmode: verify-full\n');
    expect(() => loadConfig({ PGSHELF_CONFIG: file })).toThrow(
      /databases\.yaml:3: databases\[0\]\.sslmode: verify-full needs/,
    );
  });
});

describe('childBaseEnv', () => {
  it('keeps PATH, HOME, locale, TZ, TMPDIR and drops everything else', () => {
    expect(
      childBaseEnv({
        PATH: '/bin',
        HOME: '/root',
        LANG: 'C.UTF-8',
        LC_ALL: 'C',
        TZ: 'UTC',
        TMPDIR: '/tmp',
        AWS_SECRET_ACCESS_KEY: 'x',
        POSTGRES_PASSWORD: 'x',
        PGPASSWORD: 'x',
        PGHOST: 'elsewhere',
        PGOPTIONS: '-c x=y',
        REDIS_URL: 'redis://:x@h',
        PGSHELF_STORAGE: '/x',
      }),
    ).toEqual({ PATH: '/bin', HOME: '/root', LANG: 'C.UTF-8', LC_ALL: 'C', TZ: 'UTC', TMPDIR: '/tmp' });
  });
});
