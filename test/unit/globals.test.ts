import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseGlobals, planGlobals } from '../../src/archive/globals-sql.js';
import { backupKeys, globalsName, parseGlobalsName, parseKey } from '../../src/catalog/layout.js';
import { loadConfig, resolveTarget } from '../../src/config/index.js';
import { ConfigError, UnsafeArchiveError } from '../../src/errors.js';
import { matchesGlobs } from '../../src/names.js';

/** What pg_dumpall 15 --globals-only writes (its \restrict lines included), with a tablespace. */
const DUMP = `--
-- PostgreSQL database cluster dump
--

\\restrict kXQ5eAwcyj5iN9zCjpALnGjoMif8wTw2yXrNqTMjfviHtFgakF3a0tHDqQJ30Az

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:abc==$x:y';
CREATE ROLE "Reader ""Q""";
ALTER ROLE "Reader ""Q""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE app IS 'it''s the app; -- not a comment';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;

--
-- User Configurations
--

--
-- User Config "app"
--

ALTER ROLE app SET search_path TO 'app', 'public';

--
-- Role memberships
--

GRANT app TO "Reader ""Q""" GRANTED BY gone_admin;
GRANT pg_read_all_data TO postgres GRANTED BY postgres;

GRANT SET ON PARAMETER work_mem TO app;

--
-- Tablespaces
--

CREATE TABLESPACE fast OWNER app LOCATION '/srv/fast';
GRANT CREATE ON TABLESPACE fast TO "Reader ""Q""";

\\unrestrict kXQ5eAwcyj5iN9zCjpALnGjoMif8wTw2yXrNqTMjfviHtFgakF3a0tHDqQJ30Az

--
-- PostgreSQL database cluster dump complete
--

`;

describe("globals SQL (pg_dumpall --globals-only's, and nothing else)", () => {
  it('reads every statement, with the role or tablespace it is about and its line', () => {
    const statements = parseGlobals(DUMP);
    expect(
      statements.map((s) => [s.kind, s.line, s.createsRole ?? s.tablespace ?? s.roles.join(',')]),
    ).toEqual([
      ['set', 7, ''],
      ['set', 9, ''],
      ['set', 10, ''],
      ['role', 16, 'app'],
      ['role', 17, 'app'],
      ['role', 18, 'Reader "Q"'],
      ['role', 19, 'Reader "Q"'],
      ['role', 20, 'app'],
      ['role', 21, 'postgres'],
      ['role', 22, 'postgres'],
      ['role', 32, 'app'],
      ['membership', 38, 'Reader "Q"'],
      ['membership', 39, 'postgres'],
      ['parameter', 41, 'app'],
      ['tablespace', 47, 'fast'],
      ['tablespace', 48, 'fast'],
    ]);
    expect(statements[7]!.sql).toBe("COMMENT ON ROLE app IS 'it''s the app; -- not a comment';");
  });

  it('leaves existing roles and tablespaces alone: none of their statements run', () => {
    const plan = planGlobals(
      parseGlobals(DUMP),
      new Set(['postgres', 'pg_read_all_data']),
      new Set(['pg_default']),
    );
    expect(plan.createRoles).toEqual(['app', 'Reader "Q"']);
    expect(plan.existingRoles).toEqual(['postgres']);
    expect(plan.createTablespaces).toEqual(['fast']);
    const run = plan.roleStatements.map((s) => s.sql);
    expect(run.some((s) => s.includes('postgres'))).toBe(false);
    expect(run).toContain('GRANT SET ON PARAMETER work_mem TO app;');
    // A grantor that exists nowhere is left out; the grant itself stays.
    expect(run).toContain('GRANT app TO "Reader ""Q""";');
    expect(plan.tablespaceStatements.map((s) => s.sql)).toEqual([
      "CREATE TABLESPACE fast OWNER app LOCATION '/srv/fast';",
      'GRANT CREATE ON TABLESPACE fast TO "Reader ""Q""";',
    ]);
    expect(plan.skipped).toBe(3);
    // Everything exists: nothing but the SET lines.
    const none = planGlobals(
      parseGlobals(DUMP),
      new Set(['postgres', 'app', 'Reader "Q"']),
      new Set(['fast']),
    );
    expect(none.roleStatements.every((s) => s.kind === 'set')).toBe(true);
    expect(none.tablespaceStatements).toEqual([]);
    expect(none.existingRoles).toEqual(['app', 'Reader "Q"', 'postgres']);
  });

  it.each([
    ['\\! touch /tmp/x\n', 1, /psql meta-command/],
    ['CREATE ROLE a;\nselect 1; \\! id\n', 2, /psql meta-command|SELECT/i],
    ['CREATE ROLE a;\nDROP ROLE postgres;\n', 2, /not part of a server's globals/],
    ['CREATE ROLE a;\nALTER ROLE postgres RENAME TO x;\n', 2, /renames a role/],
    ['ALTER ROLE ALL SET work_mem = 1;\n', 1, /names ALL/],
    ['CREATE ROLE a SUPERUSER;\n', 1, /CREATE ROLE with options/],
    ['GRANT ALL ON DATABASE app TO a;\n', 1, /ON DATABASE/],
    ['REVOKE app FROM postgres;\n', 1, /revokes a role membership/],
    ['CREATE ROLE a;\nDO $$ BEGIN END $$;\n', 2, /"\$"/],
    ['SET session_preload_libraries = x;\n', 1, /a SET pg_dumpall does not write/],
    ["SET client_encoding = 'SJIS';\n", 1, /UTF8 only/],
    ["COMMENT ON ROLE a IS 'open\n", 1, /inside a quoted string/],
    ['CREATE ROLE a', 1, /without its semicolon/],
    ['CREATE ROLE a; CREATE DATABASE b;\n', 1, /not part of a server's globals/],
  ])('refuses %j at line %i', (sql, line, why) => {
    const run = () => parseGlobals(sql);
    expect(run).toThrow(UnsafeArchiveError);
    expect(run).toThrow(new RegExp(`^line ${line} of the globals archive`));
    expect(run).toThrow(why);
  });

  it('reads backslashes in strings as the server does with standard_conforming_strings off', () => {
    const [, comment] = parseGlobals(
      "SET standard_conforming_strings = off;\nCOMMENT ON ROLE a IS 'x\\'; DROP ROLE b; --';\n",
    );
    expect(comment!.kind).toBe('role');
    expect(comment!.roles).toEqual(['a']);
  });
});

describe('globals in the storage layout', () => {
  it('names them _servers/<host>-<port>/globals, a folder no database name can make', () => {
    expect(globalsName('db.internal', 5432)).toBe('_servers/db.internal-5432/globals');
    expect(globalsName('/var/run/postgresql', 5433)).toBe('_servers/%2Fvar%2Frun%2Fpostgresql-5433/globals');
    expect(parseGlobalsName('_servers/%2Fvar%2Frun%2Fpostgresql-5433/globals')).toEqual({
      host: '/var/run/postgresql',
      port: 5433,
    });
    expect(parseGlobalsName('_servers')).toBeUndefined();
    const keys = backupKeys(
      '_servers/db.internal-5432/globals',
      new Date('2026-11-25T02:00:07Z'),
      '0a1b2c3d',
    );
    expect(keys.archive).toBe(
      '_servers/db.internal-5432/globals/2026/11/globals_20261125T020007Z_0a1b2c3d.sql.gz',
    );
    expect(parseKey(keys.manifest)).toMatchObject({
      database: '_servers/db.internal-5432/globals',
      id: '0a1b2c3d',
      kind: 'manifest',
    });
    // A database named _servers keeps its one-segment folder, beside the servers' folders.
    expect(backupKeys('_servers', new Date('2026-11-25T02:00:07Z'), '0a1b2c3d').base).toBe(
      '_servers/2026/11/_servers_20261125T020007Z_0a1b2c3d',
    );
    expect(parseKey('_servers/2026/11/_servers_20261125T020007Z_0a1b2c3d.sql.gz')).toMatchObject({
      database: '_servers',
    });
    expect(parseKey('_servers/x-1/other/2026/11/globals_20261125T020007Z_0a1b2c3d.sql.gz')).toBeUndefined();
  });
});

describe('servers: entries', () => {
  const load = async (yaml: string, env: Record<string, string> = {}) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-cfg-'));
    const file = path.join(dir, 'pgshelf.yaml');
    await writeFile(file, yaml);
    return loadConfig({ PGSHELF_CONFIG: file, ...env });
  };

  it('parse with discover globs, inherit defaults, and resolve discovered databases and globals', async () => {
    const c = await load(
      `defaults:\n  user: backup\n  retention: { daily: 9 }\ndatabases:\n  - name: app\n    host: a.internal\n` +
        `servers:\n  - host: pg2.internal\n    port: 6543\n    password_env: PG2\n    schedule: "0 3 * * *"\n` +
        `    discover: { include: ["shop_*", "crm"], exclude: ["shop_tmp?"] }\n    no_role_passwords: true\n` +
        `  - host: pg3.internal\n`,
      { PG2: 'pw' },
    );
    expect(c.servers).toHaveLength(2);
    const [pg2, pg3] = c.servers;
    expect(pg2).toMatchObject({
      id: 'pg2.internal:6543',
      schedule: '0 3 * * *',
      include: ['shop_*', 'crm'],
      exclude: ['shop_tmp?'],
      noRolePasswords: true,
      postgres: { host: 'pg2.internal', port: 6543, user: 'backup', password: 'pw', database: 'postgres' },
    });
    expect(pg2!.retention.daily).toBe(9);
    expect(pg3).toMatchObject({
      id: 'pg3.internal:5432',
      include: ['*'],
      exclude: [],
      noRolePasswords: false,
    });
    // A database of pg2 by its globs; an explicit server wins; listed databases keep their own entry.
    expect(resolveTarget(c, 'shop_1').postgres).toMatchObject({ host: 'pg2.internal', database: 'shop_1' });
    expect(resolveTarget(c, 'shop_1', 'pg3.internal:5432').postgres.host).toBe('pg3.internal');
    expect(resolveTarget(c, 'shop_tmp1').postgres.host).toBe('pg3.internal');
    expect(resolveTarget(c, 'app').postgres.host).toBe('a.internal');
    const g = resolveTarget(c, '_servers/pg2.internal-6543/globals');
    expect(g.postgres).toMatchObject({ host: 'pg2.internal', port: 6543, database: 'postgres' });
    expect(g.schedule).toBe('0 3 * * *');
  });

  it('refuse bad entries with the file, line and an example', async () => {
    await expect(load('servers:\n  - host: a\n    discover: { includes: ["x"] }\n')).rejects.toThrow(
      /pgshelf\.yaml:3: unknown key "includes" in servers\[0\]\.discover; did you mean "include"\?/,
    );
    await expect(load('servers:\n  - host: a\n    no_role_passwords: yes please\n')).rejects.toThrow(
      /pgshelf\.yaml:3: servers\[0\]\.no_role_passwords must be true or false/,
    );
    await expect(load('servers:\n  - host: a\n  - host: a\n')).rejects.toThrow(
      /server a:5432 is listed twice/,
    );
    await expect(load('servers:\n  - name: a\n')).rejects.toThrow(ConfigError);
    await expect(load('servers: []\n')).rejects.toThrow(/"servers" must be a non-empty list/);
  });

  it('globs: * and ? only, anchored; exclude wins', () => {
    expect(matchesGlobs('shop_1', ['shop_*'], [])).toBe(true);
    expect(matchesGlobs('my_shop_1', ['shop_*'], [])).toBe(false);
    expect(matchesGlobs('shop.1', ['shop?1'], [])).toBe(true);
    expect(matchesGlobs('shopx1', ['shop.1'], [])).toBe(false);
    expect(matchesGlobs('shop_tmp', ['*'], ['*_tmp'])).toBe(false);
    expect(matchesGlobs('a\nb', ['a*'], [])).toBe(true);
  });
});
