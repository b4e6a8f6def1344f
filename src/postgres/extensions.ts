/**
 * Extensions of a dump that only a superuser can create (dblink, postgres_fdw, pg_stat_statements, ...): a
 * backup records the database's extensions, and a restore whose POSTGRES_USER is not a superuser creates the
 * untrusted ones as POSTGRES_ADMIN_USER before the archive streams (which then skips them).
 */
import type { PgSettings } from '../config/index.js';
import { RestoreFailedError } from '../errors.js';
import { Db, quoteIdent, type QueryOptions } from './connection.js';

export interface ExtensionRef {
  readonly name: string;
  readonly schema: string;
}

/** The extensions pg_dump writes for the database (it skips built-in ones such as plpgsql: oid < 16384). */
export async function listExtensions(db: Db): Promise<ExtensionRef[]> {
  return db.query<ExtensionRef>(
    `SELECT e.extname AS name, n.nspname AS schema FROM pg_extension e
       JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.oid >= 16384 ORDER BY e.extname`,
  );
}

/** What the admin created in the staging database, for SqlGuard to skip and for the job to report. */
export interface PreCreated {
  readonly extensions: readonly ExtensionRef[];
  /** Schemas the admin created for them (the dump's `CREATE SCHEMA` of these is skipped). */
  readonly schemas: readonly string[];
}

/**
 * Creates, as POSTGRES_ADMIN_USER in `database`, those of `wanted` that the server does not trust (a trusted
 * extension the owner creates itself, as a restore by hand would), unless `owner` is a superuser and can create
 * them all itself. Their schema, when missing, is created owned by `owner`.
 */
export async function createUntrustedExtensions(
  settings: PgSettings,
  options: QueryOptions,
  database: string,
  owner: string,
  wanted: readonly ExtensionRef[],
): Promise<PreCreated> {
  if (wanted.length === 0) return { extensions: [], schemas: [] };
  const db = await Db.connect(settings, { ...options, role: 'admin', database });
  const extensions: ExtensionRef[] = [];
  const schemas: string[] = [];
  try {
    const [role] = await db.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = $1', [
      owner,
    ]);
    if (role?.rolsuper) return { extensions: [], schemas: [] };
    for (const ext of wanted) {
      const [row] = await db.query<{ trusted: boolean }>(
        `SELECT v.trusted FROM pg_available_extensions a
           JOIN pg_available_extension_versions v ON v.name = a.name AND v.version = a.default_version
         WHERE a.name = $1`,
        [ext.name],
      );
      if (!row) {
        throw new RestoreFailedError(
          `the backup's database has extension "${ext.name}", which this server does not have installed: ` +
            `install it on the server (for contrib extensions, the postgresql-contrib package), then restore again`,
        );
      }
      if (row.trusted) continue;
      const [schema] = await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [ext.schema]);
      try {
        if (!schema) {
          await db.query(`CREATE SCHEMA ${quoteIdent(ext.schema)} AUTHORIZATION ${quoteIdent(owner)}`);
          schemas.push(ext.schema);
        }
        await db.query(
          `CREATE EXTENSION IF NOT EXISTS ${quoteIdent(ext.name)} WITH SCHEMA ${quoteIdent(ext.schema)}`,
        );
      } catch (err) {
        throw new RestoreFailedError(
          `could not create extension "${ext.name}" as POSTGRES_ADMIN_USER (${settings.adminUser ?? 'default'}): ` +
            `${(err as Error).message}. Only a superuser can create it: set POSTGRES_ADMIN_USER to a superuser ` +
            '(e.g. POSTGRES_ADMIN_USER=postgres), or restore as one',
          { cause: err },
        );
      }
      extensions.push(ext);
    }
  } finally {
    await db.close();
  }
  return { extensions, schemas };
}
