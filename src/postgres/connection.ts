import os from 'node:os';
import pg from 'pg';
import type { Env, PgSettings } from '../config.js';
import type { Logger } from '../logger.js';

export type Role = 'user' | 'admin';

function roleUser(
  settings: PgSettings,
  role: Role,
): { user: string | undefined; password: string | undefined } {
  return role === 'admin'
    ? { user: settings.adminUser, password: settings.adminPassword }
    : { user: settings.user, password: settings.password };
}

/** libpq connection arguments for pg_dump, psql and createdb. Never contains a password. */
export function connectionArgs(settings: PgSettings, role: Role = 'user'): string[] {
  const { user } = roleUser(settings, role);
  const args = [`--host=${settings.host}`, `--port=${settings.port}`];
  if (user !== undefined) args.push(`--username=${user}`);
  return args;
}

/**
 * Environment for a child process: the inherited one plus PGPASSWORD when a password is set. The password goes
 * here and only here, never into argv, where `ps` would show it.
 */
export function childEnv(base: Env, settings: PgSettings, role: Role = 'user'): NodeJS.ProcessEnv {
  const { password } = roleUser(settings, role);
  const env: NodeJS.ProcessEnv = {
    ...base,
    PGAPPNAME: 'pgshelf',
    PGCONNECT_TIMEOUT: base.PGCONNECT_TIMEOUT ?? '15',
  };
  if (password !== undefined) env.PGPASSWORD = password;
  return env;
}

export interface QueryOptions {
  readonly echo?: boolean;
  readonly logger?: Logger;
  readonly role?: Role;
  /** Connect to this database instead of settings.database (e.g. `postgres` for CREATE/DROP DATABASE). */
  readonly database?: string;
}

export function clientConfig(settings: PgSettings, options: QueryOptions = {}): pg.ClientConfig {
  const { user, password } = roleUser(settings, options.role ?? 'user');
  return {
    host: settings.host,
    port: settings.port,
    database: options.database ?? settings.database,
    // libpq's default is the operating-system user; node-postgres would look at $USER, which may be unset.
    user: user ?? os.userInfo().username,
    password,
    application_name: 'pgshelf',
    connectionTimeoutMillis: 15_000,
  };
}

/** A connected client whose queries are logged when DB_ECHO is on. */
export class Db {
  private constructor(
    private readonly client: pg.Client,
    private readonly options: QueryOptions,
  ) {}

  static async connect(settings: PgSettings, options: QueryOptions = {}): Promise<Db> {
    const client = new pg.Client(clientConfig(settings, options));
    // An idle client whose server goes away emits 'error'; without a listener that would crash the process.
    client.on('error', (err) => options.logger?.warn({ err }, 'PostgreSQL connection error'));
    await client.connect();
    return new Db(client, options);
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
  ): Promise<R[]> {
    if (this.options.echo) this.options.logger?.info({ sql, params }, 'sql');
    const result = await this.client.query<R>(sql, params);
    return result.rows;
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}

export async function withDb<T>(
  settings: PgSettings,
  options: QueryOptions,
  fn: (db: Db) => Promise<T>,
): Promise<T> {
  const db = await Db.connect(settings, options);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** Quotes an SQL identifier (database, role) the way PostgreSQL's quote_ident does. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
