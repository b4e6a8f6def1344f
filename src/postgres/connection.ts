import { readFileSync } from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import type { Env, PgSettings } from '../config/index.js';
import { childBaseEnv } from '../config/postgres.js';
import { ConfigError } from '../errors.js';
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
 * Environment for a child process: the allowlisted inherited one (PATH, locale, ...; see childBaseEnv), the TLS
 * settings, and PGPASSWORD of the one role that runs. The password goes here and only here, never into argv,
 * where `ps` would show it.
 */
export function childEnv(base: Env, settings: PgSettings, role: Role = 'user'): NodeJS.ProcessEnv {
  const { password } = roleUser(settings, role);
  const env: NodeJS.ProcessEnv = {
    ...childBaseEnv(base),
    PGAPPNAME: 'pgshelf',
    PGCONNECT_TIMEOUT: base.PGCONNECT_TIMEOUT ?? '15',
  };
  if (settings.sslMode !== undefined) env.PGSSLMODE = settings.sslMode;
  if (settings.sslRootCert !== undefined) env.PGSSLROOTCERT = settings.sslRootCert;
  if (password !== undefined) env.PGPASSWORD = password;
  return env;
}

/** A UNIX socket directory: libpq ignores sslmode there, and so must the Node connections. */
function isSocket(host: string): boolean {
  return host.startsWith('/');
}

/**
 * node-postgres TLS options with libpq's meaning of sslmode. `prefer` (libpq's default) is tried with TLS first
 * and falls back to plain in Db.connect; `allow` connects in plain text, as libpq does first.
 */
export function sslConfig(settings: PgSettings): pg.ClientConfig['ssl'] {
  const mode = settings.sslMode ?? 'prefer';
  if (isSocket(settings.host) || mode === 'disable' || mode === 'allow') return false;
  let ca: string | undefined;
  if (settings.sslRootCert !== undefined) {
    try {
      ca = readFileSync(settings.sslRootCert, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `POSTGRES_SSLROOTCERT=${settings.sslRootCert} cannot be read ` +
          `(${(err as NodeJS.ErrnoException).code ?? String(err)}): point it at the CA certificate (PEM) that ` +
          'signed the server certificate, e.g. POSTGRES_SSLROOTCERT=/etc/pgshelf/root.crt',
      );
    }
  }
  // libpq: require with a root certificate verifies the chain like verify-ca; prefer never verifies.
  if (mode === 'prefer' || (mode === 'require' && ca === undefined)) return { rejectUnauthorized: false };
  if (mode === 'verify-full') return { ca };
  return { ca, checkServerIdentity: () => undefined };
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
    ssl: sslConfig(settings),
  };
}

/** sslmode=prefer: a server without TLS, or whose pg_hba.conf only takes plain connections, is tried again. */
function preferFallback(settings: PgSettings, err: unknown): boolean {
  if ((settings.sslMode ?? 'prefer') !== 'prefer' || isSocket(settings.host)) return false;
  const e = err as { code?: string; message?: string };
  return e.code === '28000' || /does not support SSL/i.test(e.message ?? '');
}

/** A connected client whose queries are logged when DB_ECHO is on. */
export class Db {
  private constructor(
    private readonly client: pg.Client,
    private readonly options: QueryOptions,
  ) {}

  static async connect(settings: PgSettings, options: QueryOptions = {}): Promise<Db> {
    const config = clientConfig(settings, options);
    try {
      return new Db(await open(config, options), options);
    } catch (err) {
      if (!preferFallback(settings, err)) throw err;
      return new Db(await open({ ...config, ssl: false }, options), options);
    }
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
  ): Promise<R[]> {
    if (this.options.echo) this.options.logger?.info({ sql, params }, 'sql');
    const result = await this.client.query<R>(sql, params);
    return result.rows;
  }

  /**
   * Runs one statement through the extended protocol, which takes exactly one statement: text that would hold
   * two is an error, never run. `shown` is what DB_ECHO logs instead of the SQL (e.g. without a password).
   */
  async statement(sql: string, shown = sql): Promise<void> {
    if (this.options.echo) this.options.logger?.info({ sql: shown }, 'sql');
    await this.client.query({ text: sql, queryMode: 'extended' } as pg.QueryConfig);
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}

async function open(config: pg.ClientConfig, options: QueryOptions): Promise<pg.Client> {
  const client = new pg.Client(config);
  // An idle client whose server goes away emits 'error'; without a listener that would crash the process.
  client.on('error', (err) => options.logger?.warn({ err }, 'PostgreSQL connection error'));
  await client.connect();
  return client;
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
