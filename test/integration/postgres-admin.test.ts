/** SQL pgshelf builds as the admin role: literals go through the driver's escaping, whatever the session's settings. */
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/lifecycle.js';
import { pgEnv, testConfig } from '../helpers/env.js';
import { createDatabase, dropDatabase, uniqueName, withClient } from '../helpers/pg.js';
import { commentOnDatabase, databaseInfo } from '../../src/postgres/admin.js';
import { Db } from '../../src/postgres/connection.js';
import { resolveTarget } from '../../src/config/index.js';
import { createLogger } from '../../src/logger.js';
import { inspectDatabase } from '../../src/postgres/server.js';
import { Writable } from 'node:stream';

const defer = useCleanup();

describe('COMMENT ON DATABASE', () => {
  it('stores a comment with quotes and backslashes as given, even with standard_conforming_strings off', async () => {
    const db = uniqueName();
    const role = uniqueName('pgshelf_evil');
    await createDatabase(db);
    defer(() => dropDatabase(db), { keepOnFailure: true });
    defer(() => withClient('postgres', (c) => c.query(`DROP ROLE IF EXISTS ${role}`)));
    const pg = resolveTarget(testConfig(pgEnv(db))).postgres;
    const comment = `\\'; CREATE ROLE ${role}; -- it's \\\\ '' \\`;
    const admin = await Db.connect(pg, { role: 'admin', database: 'postgres' });
    try {
      await admin.query('SET standard_conforming_strings = off');
      await admin.query('SET escape_string_warning = off');
      await commentOnDatabase(admin, db, comment);
      const roles = await withClient('postgres', (c) =>
        c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]),
      );
      expect(roles.rowCount).toBe(0);
      expect((await databaseInfo(admin, db))?.comment).toBe(comment);
    } finally {
      await admin.close();
    }
  });
});

describe('clock skew', () => {
  it("a backup's server check warns, naming both times, when this host is more than a minute off", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(
          ...chunk
            .toString()
            .split('\n')
            .filter((l) => l !== ''),
        );
        done();
      },
    });
    const logger = createLogger('info', sink);
    const pg = resolveTarget(testConfig(pgEnv('postgres'))).postgres;
    const fast = () => new Date(Date.now() + 5 * 60_000);
    const info = await inspectDatabase(pg, { logger, now: fast });
    expect(info.clockSkew?.skewMs).toBeGreaterThan(4 * 60_000);
    const [warning] = lines.map(
      (l) => JSON.parse(l) as { level: number; msg: string; server: string; local: string },
    );
    expect(warning?.level).toBe(40);
    expect(warning?.msg).toContain(warning?.server);
    expect(warning?.msg).toContain(warning?.local);
    expect(warning?.msg).toMatch(/\d+ s ahead/);
    lines.length = 0;
    expect((await inspectDatabase(pg, { logger })).clockSkew).toBeUndefined();
    expect(lines).toEqual([]);
  });
});
