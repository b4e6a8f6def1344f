/**
 * A server's globals, round trip: roles with passwords, a membership, a role setting, a database owned by one
 * role with grants to another, backed up on one throwaway cluster and restored onto another where neither role
 * exists. Owner, grants and role attributes must equal the source's; a role that already exists on the target is
 * left unaltered and reported.
 */
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { runCli } from '../helpers/cli.js';
import { baseEnv, tempDir } from '../helpers/env.js';
import { throwawayCluster, type Cluster } from '../helpers/services.js';

const cleanups: (() => Promise<unknown>)[] = [];
const defer = (fn: () => Promise<unknown>): void => void cleanups.push(fn);
let source: Cluster;
let target: Cluster;
let byHand: Cluster;
let dir: string;

const envOf = (c: Cluster): Env => ({
  ...baseEnv(),
  POSTGRES_HOST: c.host,
  POSTGRES_PORT: String(c.port),
  POSTGRES_USER: 'postgres',
  PGSHELF_STORAGE: dir,
});

/** The roles' attributes, settings and password hashes, and their memberships, as the catalogs say. */
async function roles(c: Cluster): Promise<unknown[]> {
  return c.query(
    'postgres',
    `SELECT r.rolname, r.rolcanlogin, r.rolcreatedb, r.rolconnlimit, r.rolpassword,
            (SELECT setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0) AS config,
            ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                  WHERE m.member = r.oid ORDER BY 1)::text[] AS member_of
       FROM pg_authid r WHERE r.rolname LIKE 'gt\\_%' ORDER BY r.rolname`,
  );
}

/** Owner of the database and of its table, the table's ACL, and its rows. */
async function shop(c: Cluster): Promise<unknown> {
  const [db] = await c.query(
    'postgres',
    `SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'gt_shop'`,
  );
  const [table] = await c.query(
    'gt_shop',
    `SELECT pg_get_userbyid(relowner) AS owner, relacl::text AS acl FROM pg_class WHERE relname = 'items'`,
  );
  const rows = await c.query('gt_shop', 'SELECT id, name FROM items ORDER BY id');
  const [reads] = await c.query(
    'gt_shop',
    `SELECT has_table_privilege('gt_reader', 'items', 'SELECT') AS select,
            has_table_privilege('gt_reader', 'items', 'INSERT') AS insert`,
  );
  return { db, table, rows, reads };
}

beforeAll(async () => {
  [source, target, byHand] = await Promise.all([
    throwawayCluster(defer),
    throwawayCluster(defer),
    throwawayCluster(defer),
  ]);
  dir = await tempDir();
  defer(() => rm(dir, { recursive: true, force: true }));
  for (const sql of [
    `CREATE ROLE gt_owner LOGIN CREATEDB CONNECTION LIMIT 5 PASSWORD 'owner-secret'`,
    `CREATE ROLE gt_reader LOGIN PASSWORD 'reader-secret'`,
    `CREATE ROLE gt_group NOLOGIN CONNECTION LIMIT 3`,
    `GRANT gt_group TO gt_reader`,
    `ALTER ROLE gt_reader SET statement_timeout = '42s'`,
    `COMMENT ON ROLE gt_owner IS 'owns the shop; it''s quoted'`,
    `CREATE DATABASE gt_shop OWNER gt_owner`,
  ]) {
    await source.query('postgres', sql);
  }
  // One session (SET ROLE does not carry to the next query's connection): the table belongs to gt_owner.
  await source.query(
    'gt_shop',
    `SET ROLE gt_owner; CREATE TABLE items (id int PRIMARY KEY, name text);
     INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;
     GRANT SELECT ON items TO gt_reader;`,
  );
  // The target already has gt_group, with another connection limit: it must stay as it is.
  await target.query('postgres', 'CREATE ROLE gt_group NOLOGIN CONNECTION LIMIT 7');
}, 120_000);

afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
});

describe('globals', () => {
  it('round-trip onto a cluster where neither role exists: owner, grants and roles equal the source', async () => {
    const globals = await runCli(['backup', '--globals', '--in-process', '--json'], envOf(source));
    expect(globals.code, globals.stderr).toBe(0);
    const g = JSON.parse(globals.stdout) as { database: string; archiveKey: string };
    expect(g.database).toBe(`_servers/127.0.0.1-${source.port}/globals`);
    expect(g.archiveKey).toMatch(
      new RegExp(
        `^_servers/127\\.0\\.0\\.1-${source.port}/globals/\\d{4}/\\d{2}/globals_\\d{8}T\\d{6}Z_[0-9a-f]{8}\\.sql\\.gz$`,
      ),
    );
    const db = await runCli(['backup', '--db', 'gt_shop', '--in-process', '--json'], envOf(source));
    expect(db.code, db.stderr).toBe(0);

    const verify = await runCli(['verify', '--db', g.database, '--json'], envOf(source));
    expect(verify.code, verify.stderr).toBe(0);

    const restored = await runCli(
      ['restore', '--db', 'gt_shop', '--into', 'gt_shop', '--with-globals', '--in-process', '--json'],
      envOf(target),
    );
    expect(restored.code, restored.stderr).toBe(0);
    const r = JSON.parse(restored.stdout) as {
      owner: string;
      globals: { createdRoles: string[]; existingRoles: string[] };
    };
    expect(r.owner).toBe('gt_owner');
    expect(r.globals.createdRoles).toEqual(expect.arrayContaining(['gt_owner', 'gt_reader']));
    expect(r.globals.existingRoles).toEqual(expect.arrayContaining(['postgres', 'gt_group']));
    expect(r.globals.createdRoles).not.toContain('gt_group');

    expect(await shop(target)).toEqual(await shop(source));
    const [src, dst] = [await roles(source), await roles(target)];
    // gt_group existed on the target: left as it was (connection limit 7), everything else equal.
    const without = (rows: unknown[]) =>
      rows.filter((x) => (x as { rolname: string }).rolname !== 'gt_group');
    expect(without(dst)).toEqual(without(src));
    expect(dst.find((x) => (x as { rolname: string }).rolname === 'gt_group')).toMatchObject({
      rolconnlimit: 7,
    });
    expect(without(dst)).toHaveLength(2);
    expect(without(dst)).toEqual([
      expect.objectContaining({ rolname: 'gt_owner', rolconnlimit: 5, rolcreatedb: true, config: null }),
      expect.objectContaining({
        rolname: 'gt_reader',
        config: ['statement_timeout=42s'],
        member_of: ['gt_group'],
      }),
    ]);
    expect((without(dst)[0] as { rolpassword: string }).rolpassword).toMatch(/^SCRAM-SHA-256\$/);
    const [comment] = await target.query(
      'postgres',
      `SELECT shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = 'gt_owner'`,
    );
    expect(comment).toEqual({ c: "owns the shop; it's quoted" });
  });

  it("restores by hand with the README's commands, as written: the globals line, createdb, gunzip | psql", async () => {
    const backup = async (args: string[]) => {
      const res = await runCli(['backup', ...args, '--in-process', '--json'], envOf(source));
      expect(res.code, res.stderr).toBe(0);
      return (JSON.parse(res.stdout) as { archiveLocation: string }).archiveLocation;
    };
    const [globals, shopArchive] = [await backup(['--globals']), await backup(['--db', 'gt_shop'])];
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const block = readme
      .split('restorable by hand with PostgreSQL')[1]!
      .split('```sh\n')[1]!
      .split('```')[0]!;
    // The block as written, its example names replaced by this test's files, owner and database.
    // The plain lines (the age line, for encrypted archives, is the encryption tests' business).
    const plain = block
      .split('\n')
      .filter((l) => !l.startsWith('#') && !l.includes('.age'))
      .join('\n');
    const script = plain
      .replace(/\bglobals_\d{8}T\d{6}Z_[0-9a-f]{8}\.sql\.gz\b/g, globals)
      .replace(/\bapp_\d{8}T\d{6}Z_[0-9a-f]{8}\.sql\.gz\b/g, shopArchive)
      .replace(/--owner=app\b/g, '--owner=gt_owner')
      .replace(/\bnew_db\b/g, 'gt_shop');
    expect(script.split('\n').filter(Boolean)).toHaveLength(3);
    await promisify(execFile)('bash', ['-e', '-o', 'pipefail', '-c', script], {
      env: { ...baseEnv(), PGHOST: byHand.host, PGPORT: String(byHand.port), PGUSER: 'postgres' },
    });
    expect(await shop(byHand)).toEqual(await shop(source));
    expect(await roles(byHand)).toEqual(await roles(source));
  });
});
