import { ConfigError, DatabaseNotFoundError, PgshelfError } from '../errors.js';
import type { PgSettings } from '../config/index.js';
import type { Logger } from '../logger.js';
import { withDb, type QueryOptions } from './connection.js';
import { listExtensions, type ExtensionRef } from './extensions.js';
import { serverMajor } from './tools.js';

export interface ServerInfo {
  /** e.g. "15.19 (Debian 15.19-0+deb12u1)" */
  readonly version: string;
  readonly versionNum: number;
  readonly major: number;
  /** pg_database_size(), bytes on disk. */
  readonly databaseSize: number;
  /** The database's owner (the restore of a whole server creates it with this owner again). */
  readonly owner: string;
  /** Set when this host's clock is more than CLOCK_SKEW_TOLERANCE_MS off from the server's. */
  readonly clockSkew: ClockSkew | undefined;
  /** The database's extensions, as pg_dump writes them (built-in ones left out). */
  readonly extensions: readonly ExtensionRef[];
}

/** Schedules, backup timestamps and retention ages come from this host's clock; a minute off is worth a word. */
export const CLOCK_SKEW_TOLERANCE_MS = 60_000;

export interface ClockSkew {
  /** This host's time when the server read its own (the midpoint of the round trip). */
  readonly local: Date;
  readonly server: Date;
  /** local - server: positive when this host is ahead. */
  readonly skewMs: number;
}

/**
 * Compares this host's clock, read just `before` and `after` a query, with the server's time from that query.
 * Only a difference that the round trip cannot explain, and that exceeds the tolerance, counts.
 */
export function clockSkew(
  before: Date,
  after: Date,
  server: Date,
  toleranceMs = CLOCK_SKEW_TOLERANCE_MS,
): ClockSkew | undefined {
  const local = new Date((before.getTime() + after.getTime()) / 2);
  const skewMs = local.getTime() - server.getTime();
  const uncertainty = Math.max(0, after.getTime() - before.getTime()) / 2;
  return Math.abs(skewMs) - uncertainty > toleranceMs ? { local, server, skewMs } : undefined;
}

export function describeClockSkew(skew: ClockSkew, where: string): string {
  const seconds = Math.round(Math.abs(skew.skewMs) / 1000);
  return (
    `this host's clock says ${skew.local.toISOString()} but PostgreSQL at ${where} says ` +
    `${skew.server.toISOString()} (${seconds} s ${skew.skewMs > 0 ? 'ahead' : 'behind'}): backup times, ` +
    "schedules and retention use this host's clock; synchronise it (NTP, e.g. systemd-timesyncd or chrony)"
  );
}

/**
 * Warns (once per server) when this host's clock is off from a PostgreSQL server's. Never fails: a server that
 * cannot be reached now is the jobs' business, not this check's.
 */
export async function warnClockSkew(servers: readonly PgSettings[], logger: Logger): Promise<void> {
  const seen = new Set<string>();
  for (const settings of servers) {
    const where = `${settings.host}:${settings.port}`;
    if (seen.has(where)) continue;
    seen.add(where);
    try {
      await inspectDatabase(settings, { logger });
    } catch (err) {
      logger.debug({ err: (err as Error).message, server: where }, 'clock check skipped');
    }
  }
}

interface PgError {
  code?: string;
  message?: string;
}

/** A TLS failure, in the words of the settings that fix it; undefined for other errors. */
function describeTlsError(e: PgError, settings: PgSettings, where: string): ConfigError | undefined {
  const mode = settings.sslMode ?? 'prefer';
  const why = e.message ?? String(e.code);
  if (/does not support SSL/i.test(why)) {
    return new ConfigError(
      `PostgreSQL at ${where} does not accept TLS but POSTGRES_SSLMODE=${mode} requires it: turn ssl on in the ` +
        'server, or set POSTGRES_SSLMODE=prefer (or sslmode in PGSHELF_CONFIG)',
    );
  }
  if (e.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new ConfigError(
      `TLS to PostgreSQL at ${where}: the server's certificate does not name "${settings.host}" (${why}), and ` +
        'POSTGRES_SSLMODE=verify-full checks the host name: set POSTGRES_HOST to a name the certificate ' +
        'lists, or use POSTGRES_SSLMODE=verify-ca to check the CA only',
    );
  }
  if (e.code !== undefined && /CERT|SSL|TLS|ISSUER|SIGNATURE/.test(e.code)) {
    return new ConfigError(
      `TLS to PostgreSQL at ${where} failed: ${why}. The server's certificate does not chain to ` +
        `POSTGRES_SSLROOTCERT=${settings.sslRootCert ?? '(not set)'}: point it at the PEM file of the CA that ` +
        'signed the server certificate, e.g. POSTGRES_SSLROOTCERT=/etc/pgshelf/root.crt, or use ' +
        'POSTGRES_SSLMODE=require to encrypt without verifying',
    );
  }
  return undefined;
}

/** Turns a pg connection error into a message that says what to check. */
export function describeConnectError(err: unknown, settings: PgSettings, database: string): Error {
  const e = err as PgError;
  const where = `${settings.host}:${settings.port}`;
  const tls = describeTlsError(e, settings, where);
  if (tls) return tls;
  if (e.code === '3D000') {
    return new DatabaseNotFoundError(
      `database "${database}" does not exist on ${where}: ` +
        (settings.origin
          ? `check the entry ${settings.origin} and its host and port`
          : 'check POSTGRES_DB (or --db), e.g. POSTGRES_DB=fractal_db'),
      { cause: err },
    );
  }
  if (e.code === '28P01' || e.code === '28000') {
    return new PgshelfError(
      `PostgreSQL at ${where} refused user "${settings.user ?? '(default)'}": ${e.message ?? ''}. ` +
        (settings.origin
          ? `Check user and password_env of ${settings.origin}`
          : 'Check POSTGRES_USER and POSTGRES_PASSWORD'),
      { cause: err },
    );
  }
  return new PgshelfError(
    `cannot connect to PostgreSQL at ${where} (database "${database}"): ${e.message ?? String(err)}. ` +
      (settings.origin
        ? `Check host and port of ${settings.origin} and that the server is running`
        : 'Check POSTGRES_HOST and POSTGRES_PORT and that the server is running'),
    { cause: err },
  );
}

/** The server's version and the database's size; logs a warning when this host's clock is off from the server's. */
export async function inspectDatabase(
  settings: PgSettings,
  options: QueryOptions & { readonly now?: () => Date } = {},
): Promise<ServerInfo> {
  const database = options.database ?? settings.database;
  const now = options.now ?? (() => new Date());
  try {
    return await withDb(settings, options, async (db) => {
      const before = now();
      const [row] = await db.query<{ version: string; num: string; size: string; now: Date; owner: string }>(
        `SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS num,
                pg_database_size(current_database())::text AS size, clock_timestamp() AS now,
                (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()) AS owner`,
      );
      const after = now();
      if (!row) throw new PgshelfError('the server returned no version');
      const extensions = await listExtensions(db);
      const versionNum = Number(row.num);
      const skew = clockSkew(before, after, row.now);
      if (skew) {
        options.logger?.warn(
          { local: skew.local.toISOString(), server: skew.server.toISOString(), skewMs: skew.skewMs },
          describeClockSkew(skew, `${settings.host}:${settings.port}`),
        );
      }
      return {
        version: row.version,
        versionNum,
        major: serverMajor(versionNum),
        databaseSize: Number(row.size),
        owner: row.owner,
        clockSkew: skew,
        extensions,
      };
    });
  } catch (err) {
    if (err instanceof PgshelfError) throw err;
    throw describeConnectError(err, settings, database);
  }
}
