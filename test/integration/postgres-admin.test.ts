/** SQL pgshelf builds as the admin role: literals go through the driver's escaping, whatever the session's settings. */
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/lifecycle.js';
import { pgEnv, testConfig } from '../helpers/env.js';
import { createDatabase, dropDatabase, uniqueName, withClient } from '../helpers/pg.js';
import { commentOnDatabase, databaseInfo } from '../../src/postgres/admin.js';
import { Db } from '../../src/postgres/connection.js';
import { resolveTarget } from '../../src/config.js';

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
