/**
 * The only reader of process.env. Every setting is described once in SETTINGS, parsed once into a typed, frozen
 * Config, and fails at start-up with a message that names the variable, the bad value and a good example.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfigFile } from './file.js';
import { childBaseEnv, parseSsl } from './postgres.js';
import { ConfigError } from '../errors.js';
import { maskUrl } from '../url.js';
import { validateCron, validateTimezone } from '../cron.js';
import type {
  Config,
  DatabaseTarget,
  Env,
  PgSettings,
  Retention,
  S3Credentials,
  StorageSettings,
} from './types.js';

export type * from './types.js';

interface SettingDoc {
  readonly name: string;
  readonly default: string;
  readonly meaning: string;
}

/** Every environment variable pgshelf reads, for the README and `pgshelf --help`. */
export const SETTINGS: readonly SettingDoc[] = [
  {
    name: 'POSTGRES_DB',
    default: 'none',
    meaning: 'database to back up (the default target; needed where no --db is given, and by workers)',
  },
  { name: 'POSTGRES_HOST', default: 'localhost', meaning: 'host name, or a UNIX socket directory' },
  { name: 'POSTGRES_PORT', default: '5432', meaning: 'port' },
  { name: 'POSTGRES_USER', default: 'libpq default', meaning: 'user that dumps and owns restored databases' },
  {
    name: 'POSTGRES_PASSWORD',
    default: 'none',
    meaning: 'its password (given to child processes by env only)',
  },
  { name: 'POSTGRES_ADMIN_USER', default: 'POSTGRES_USER', meaning: 'user that runs createdb for restores' },
  { name: 'POSTGRES_ADMIN_PASSWORD', default: 'POSTGRES_PASSWORD', meaning: 'its password' },
  {
    name: 'POSTGRES_SSLMODE',
    default: 'PGSSLMODE, else prefer',
    meaning: 'TLS: disable, allow, prefer, require, verify-ca, verify-full',
  },
  {
    name: 'POSTGRES_SSLROOTCERT',
    default: 'PGSSLROOTCERT',
    meaning: 'CA certificate file (PEM) the server certificate must chain to',
  },
  {
    name: 'DB_ECHO',
    default: 'false',
    meaning: '`true`, `True` or `1`: log SQL statements and child commands',
  },
  { name: 'REDIS_URL', default: 'redis://127.0.0.1:6379', meaning: 'BullMQ connection' },
  { name: 'PGSHELF_STORAGE', default: 'file://./backups', meaning: '`file:///path` or `s3://bucket/prefix`' },
  { name: 'S3_ENDPOINT', default: 'AWS', meaning: 'endpoint of an S3-compatible service' },
  { name: 'S3_REGION', default: 'AWS chain', meaning: 'region' },
  { name: 'S3_FORCE_PATH_STYLE', default: 'true with S3_ENDPOINT', meaning: 'path-style bucket addressing' },
  { name: 'PGSHELF_S3_MAX_PARTS', default: '10000', meaning: 'most parts per multipart upload' },
  { name: 'PGSHELF_S3_CONNECT_TIMEOUT', default: '10', meaning: 'seconds to open a connection to S3' },
  {
    name: 'PGSHELF_S3_REQUEST_TIMEOUT',
    default: '30',
    meaning: 'seconds an S3 request or transfer may go without a byte',
  },
  { name: 'PGSHELF_GZIP_LEVEL', default: '6', meaning: 'gzip level 1-9' },
  { name: 'PGSHELF_GZIP_THREADS', default: 'cores, at most 4', meaning: 'cores compressing one backup' },
  { name: 'PGSHELF_SCHEDULE', default: '0 2 * * *', meaning: 'cron expression for backups' },
  { name: 'PGSHELF_TIMEZONE', default: 'UTC', meaning: 'time zone of the schedule and retention buckets' },
  { name: 'PGSHELF_DRILL_SCHEDULE', default: 'none', meaning: 'cron expression for restore drills' },
  { name: 'PGSHELF_KEEP_LAST', default: '7', meaning: 'keep the newest N backups' },
  { name: 'PGSHELF_KEEP_DAILY', default: '7', meaning: 'keep the newest backup of each of N days' },
  { name: 'PGSHELF_KEEP_WEEKLY', default: '4', meaning: '... of each of N weeks' },
  { name: 'PGSHELF_KEEP_MONTHLY', default: '12', meaning: '... of each of N months' },
  { name: 'PGSHELF_KEEP_YEARLY', default: '0', meaning: '... of each of N years' },
  { name: 'PGSHELF_MIN_KEEP', default: '3', meaning: 'prune never leaves fewer backups than this' },
  {
    name: 'PGSHELF_ORPHAN_GRACE',
    default: '24',
    meaning: 'hours before prune removes an archive without manifest',
  },
  {
    name: 'PGSHELF_MANIFEST_KEY',
    default: 'none',
    meaning: 'HMAC key signing manifests; when set, unsigned or mismatched ones are refused',
  },
  { name: 'PGSHELF_HOST_CONCURRENCY', default: '2', meaning: 'dumps at once against one PostgreSQL server' },
  {
    name: 'PGSHELF_CATCH_UP',
    default: 'last',
    meaning: 'at start-up, run a slot missed while no scheduler ran',
  },
  { name: 'PGSHELF_QUEUE_PREFIX', default: 'pgshelf', meaning: 'BullMQ key prefix' },
  { name: 'PGSHELF_CONCURRENCY', default: '1', meaning: 'jobs one worker runs at once' },
  { name: 'PGSHELF_ATTEMPTS', default: '3', meaning: 'tries per job for transient failures' },
  {
    name: 'PGSHELF_RETRY_DELAY',
    default: '30',
    meaning: "seconds before the first retry (then doubling); the worker's setting applies",
  },
  {
    name: 'PGSHELF_LOCK_DURATION',
    default: '60',
    meaning: 'seconds after which a job whose worker died is run again',
  },
  {
    name: 'PGSHELF_SHUTDOWN_GRACE',
    default: '30',
    meaning: 'seconds running jobs get to stop cleanly after SIGTERM/SIGINT',
  },
  { name: 'PGSHELF_HTTP_HOST', default: '127.0.0.1', meaning: '`pgshelf serve` address' },
  { name: 'PGSHELF_HTTP_PORT', default: '9187', meaning: '`pgshelf serve` port' },
  { name: 'PGSHELF_CONFIG', default: 'none', meaning: 'YAML file listing several databases' },
  { name: 'PGSHELF_PG_BIN', default: 'auto', meaning: 'directory with pg_dump, psql and createdb' },
  {
    name: 'PGSHELF_LOG_LEVEL',
    default: 'info for workers, warn for commands',
    meaning: 'trace, debug, info, warn, error, silent',
  },
];

function invalid(name: string, value: string, expected: string, example: string): ConfigError {
  return new ConfigError(`${name}=${JSON.stringify(value)} is invalid: ${expected}, e.g. ${name}=${example}`);
}

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

export function parseInteger(
  env: Env,
  name: string,
  fallback: number,
  min: number,
  max: number,
  example: string = String(fallback),
): number {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  const trimmed = raw.trim();
  if (!/^\d+$/.test(trimmed))
    throw invalid(name, raw, `expected a whole number from ${min} to ${max}`, example);
  const n = Number(trimmed);
  if (n < min || n > max) throw invalid(name, raw, `expected a whole number from ${min} to ${max}`, example);
  return n;
}

function parseCatchUp(env: Env): 'off' | 'last' {
  const raw = str(env, 'PGSHELF_CATCH_UP') ?? 'last';
  if (raw !== 'off' && raw !== 'last') {
    throw invalid('PGSHELF_CATCH_UP', raw, 'expected off or last', 'last');
  }
  return raw;
}

/** Hours, at least 1: a shorter grace could delete the upload of a backup that is running right now. */
function parseOrphanGrace(env: Env): number {
  const raw = str(env, 'PGSHELF_ORPHAN_GRACE');
  if (raw !== undefined && /^\s*0+\s*$/.test(raw)) {
    throw new ConfigError(
      `PGSHELF_ORPHAN_GRACE=${JSON.stringify(raw)} is invalid: prune must leave archives without a manifest ` +
        'alone for at least 1 hour (a running backup is writing them), e.g. PGSHELF_ORPHAN_GRACE=24',
    );
  }
  return parseInteger(env, 'PGSHELF_ORPHAN_GRACE', 24, 1, 100_000, '24') * 3_600_000;
}

/** Long enough to resist guessing; the value itself never appears in a message. */
export const MIN_MANIFEST_KEY_LENGTH = 32;

function parseManifestKey(env: Env): string | undefined {
  const raw = env.PGSHELF_MANIFEST_KEY;
  if (raw === undefined || raw === '') return undefined;
  if (raw.length < MIN_MANIFEST_KEY_LENGTH || raw.trim() !== raw) {
    throw new ConfigError(
      `PGSHELF_MANIFEST_KEY is invalid: it has ${raw.length} characters${raw.trim() !== raw ? ' with leading or trailing blanks' : ''}; ` +
        `use at least ${MIN_MANIFEST_KEY_LENGTH} random characters, e.g. PGSHELF_MANIFEST_KEY=$(openssl rand -hex 32)`,
    );
  }
  return raw;
}

/** DB_ECHO follows the published convention: `true`, `True` or `1` turn it on, and nothing else does. */
export function parseDbEcho(raw: string | undefined): boolean {
  if (raw === undefined) return false;
  if (raw === 'true' || raw === 'True' || raw === '1') return true;
  if (raw === '' || raw === 'false' || raw === 'False' || raw === '0') return false;
  throw new ConfigError(
    `DB_ECHO=${JSON.stringify(raw)} is not recognised: use true, True or 1 to log every SQL statement and ` +
      `child command, or false, False or 0 (or leave it unset) for quiet, e.g. DB_ECHO=true`,
  );
}

function parseBool(env: Env, name: string, fallback: boolean): boolean {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  if (/^(true|1|yes)$/i.test(raw)) return true;
  if (/^(false|0|no)$/i.test(raw)) return false;
  throw invalid(name, raw, 'expected true or false', 'true');
}

export function parsePgSettings(env: Env, database: string, cwd = process.cwd()): PgSettings {
  const host = str(env, 'POSTGRES_HOST') ?? 'localhost';
  if (/\s/.test(host.trim()) || host.trim() === '') {
    throw invalid(
      'POSTGRES_HOST',
      host,
      'expected a host name or a UNIX socket directory',
      '/var/run/postgresql',
    );
  }
  const port = parseInteger(env, 'POSTGRES_PORT', 5432, 1, 65535, '5432');
  const user = str(env, 'POSTGRES_USER');
  const password = str(env, 'POSTGRES_PASSWORD');
  return Object.freeze({
    host: host.trim(),
    port,
    database,
    user,
    password,
    adminUser: str(env, 'POSTGRES_ADMIN_USER') ?? user,
    adminPassword:
      str(env, 'POSTGRES_ADMIN_PASSWORD') ?? (str(env, 'POSTGRES_ADMIN_USER') ? undefined : password),
    ...parseSsl(env, cwd),
  });
}

function s3Credentials(env: Env): S3Credentials | undefined {
  const accessKeyId = str(env, 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = str(env, 'AWS_SECRET_ACCESS_KEY');
  if (accessKeyId === undefined && secretAccessKey === undefined) return undefined;
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new ConfigError(
      `${accessKeyId === undefined ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} is not set but its pair is: ` +
        'set both (e.g. AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin) or neither, to use the ' +
        "AWS SDK's default credential chain (profiles, instance roles)",
    );
  }
  const sessionToken = str(env, 'AWS_SESSION_TOKEN');
  return Object.freeze({ accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) });
}

/**
 * PGSHELF_STORAGE: `s3://bucket/prefix`, `file:///absolute/folder`, `file://./relative`, or a plain path that
 * looks like one. Anything else is refused rather than taken as a folder name: `s3:/bucket` or `file:/tmp/x`
 * would otherwise quietly become a folder under the current directory.
 */
export function parseStorage(env: Env, cwd: string): StorageSettings {
  const raw = str(env, 'PGSHELF_STORAGE') ?? 'file://./backups';
  const example = 'file:///var/backups/pgshelf or PGSHELF_STORAGE=s3://my-bucket/pgshelf';
  const bad = (why: string): ConfigError => invalid('PGSHELF_STORAGE', raw, why, example);
  // S3 settings are checked even for folder storage, so a typo shows up before the day someone switches.
  const endpoint = str(env, 'S3_ENDPOINT');
  if (endpoint !== undefined && !/^https?:\/\/[^/\s]+/.test(endpoint)) {
    throw invalid('S3_ENDPOINT', maskUrl(endpoint), 'expected an http(s) URL', 'http://127.0.0.1:9000');
  }
  const forcePathStyle = parseBool(env, 'S3_FORCE_PATH_STYLE', endpoint !== undefined);
  const maxParts = parseInteger(env, 'PGSHELF_S3_MAX_PARTS', 10_000, 1, 10_000, '1000');
  const connectTimeoutMs = parseInteger(env, 'PGSHELF_S3_CONNECT_TIMEOUT', 10, 1, 3600, '10') * 1000;
  const requestTimeoutMs = parseInteger(env, 'PGSHELF_S3_REQUEST_TIMEOUT', 30, 1, 86_400, '120') * 1000;
  if (raw !== raw.trim()) throw bad('it has spaces around it (quoting in a .env file?); remove them');
  if (/\p{Cc}/u.test(raw)) throw bad('it contains a control character');
  if (raw.startsWith('s3://')) {
    const rest = raw.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash === -1 ? rest : rest.slice(0, slash);
    const prefix = slash === -1 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw bad(`"${bucket}" is not a valid S3 bucket name`);
    }
    return Object.freeze({
      kind: 's3',
      url: `s3://${bucket}${prefix ? `/${prefix}` : ''}`,
      bucket,
      prefix,
      endpoint,
      region: str(env, 'S3_REGION') ?? str(env, 'AWS_REGION') ?? str(env, 'AWS_DEFAULT_REGION'),
      forcePathStyle,
      maxParts,
      credentials: s3Credentials(env),
      connectTimeoutMs,
      requestTimeoutMs,
    });
  }
  let dir: string;
  if (raw.startsWith('file://')) {
    dir = raw.slice('file://'.length);
    if (dir === '') throw bad('file:// needs a folder');
    if (!/^(\/|\.\.?\/|\.\.?$)/.test(dir)) {
      throw bad(
        `file:// is followed by "${dir}", which is not a path: write file:///absolute/folder or ` +
          'file://./relative/folder',
      );
    }
    dir = decodeURIComponent(dir);
  } else if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(raw)) {
    // s3:/bucket, file:/tmp/x, file:relative, http://...: a mistyped or unsupported URL, not a folder name.
    throw bad('only s3://bucket/prefix and file:///folder are supported (note the two slashes)');
  } else if (raw.includes(':') || raw.includes('//')) {
    // s3//bucket (a colon lost) and the like: a plain path needs neither.
    throw bad('it looks like a mistyped URL; a folder is written /absolute/path or ./relative/path');
  } else {
    dir = raw; // a plain path: /abs, ./rel, ../rel or a bare relative name
  }
  const root = path.resolve(cwd, dir);
  return Object.freeze({ kind: 'file', url: `file://${root}`, root });
}

/**
 * The storage as a job records it and a worker logs it: its URL, and the endpoint for S3-compatible services
 * (with any password in it masked: this goes to Redis and to logs).
 */
export function storageIdentity(storage: StorageSettings): string {
  if (storage.kind !== 's3' || !storage.endpoint) return storage.url;
  const endpoint = storage.endpoint.replace(/\/+$/, '').replace(/^(\w+:\/\/[^/:@]*):[^/@]*@/, '$1:***@');
  return `${storage.url} at ${endpoint}`;
}

const RETENTION_VARS = [
  'PGSHELF_KEEP_LAST',
  'PGSHELF_KEEP_DAILY',
  'PGSHELF_KEEP_WEEKLY',
  'PGSHELF_KEEP_MONTHLY',
  'PGSHELF_KEEP_YEARLY',
  'PGSHELF_MIN_KEEP',
];

export function parseRetention(env: Env): Retention {
  return Object.freeze({
    keepLast: parseInteger(env, 'PGSHELF_KEEP_LAST', 7, 0, 100_000),
    daily: parseInteger(env, 'PGSHELF_KEEP_DAILY', 7, 0, 100_000),
    weekly: parseInteger(env, 'PGSHELF_KEEP_WEEKLY', 4, 0, 100_000),
    monthly: parseInteger(env, 'PGSHELF_KEEP_MONTHLY', 12, 0, 100_000),
    yearly: parseInteger(env, 'PGSHELF_KEEP_YEARLY', 0, 0, 100_000, '5'),
    minKeep: parseInteger(env, 'PGSHELF_MIN_KEEP', 3, 1, 100_000),
  });
}

export interface LoadOptions {
  /** Base for relative paths (default: process.cwd()). */
  readonly cwd?: string;
}

/** Parses the environment into a frozen Config. Throws ConfigError naming the first bad setting. */
export function loadConfig(env: Env = process.env, options: LoadOptions = {}): Config {
  const cwd = options.cwd ?? process.cwd();
  const defaultDatabase = str(env, 'POSTGRES_DB');
  const configFile = str(env, 'PGSHELF_CONFIG');
  const timezone = validateTimezone(str(env, 'PGSHELF_TIMEZONE') ?? 'UTC', 'PGSHELF_TIMEZONE');
  const schedule = str(env, 'PGSHELF_SCHEDULE') ?? '0 2 * * *';
  validateCron(schedule, 'PGSHELF_SCHEDULE');
  const drillSchedule = str(env, 'PGSHELF_DRILL_SCHEDULE');
  if (drillSchedule !== undefined) validateCron(drillSchedule, 'PGSHELF_DRILL_SCHEDULE');
  const retention = parseRetention(env);
  const envPg = parsePgSettings(env, defaultDatabase ?? '', cwd);
  const databases: DatabaseTarget[] = [];
  if (configFile !== undefined) {
    const file = path.resolve(cwd, configFile);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `PGSHELF_CONFIG=${configFile}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); ` +
          'point it at a YAML file, e.g. PGSHELF_CONFIG=/etc/pgshelf/databases.yaml',
      );
    }
    // The environment's settings are the defaults every listed database starts from.
    const inherited = { postgres: envPg, schedule, timezone, retention, drillSchedule };
    databases.push(...parseConfigFile(text, file, inherited, env, validateTimezone));
  }
  if (defaultDatabase !== undefined) {
    // Env wins for the default database: its POSTGRES_* connection, and any PGSHELF_* schedule setting that is set.
    const listed = databases.findIndex((d) => d.name === defaultDatabase);
    const fromFile = listed >= 0 ? databases[listed] : undefined;
    const target: DatabaseTarget = Object.freeze({
      name: defaultDatabase,
      postgres: envPg,
      schedule: str(env, 'PGSHELF_SCHEDULE') ?? fromFile?.schedule ?? schedule,
      timezone: str(env, 'PGSHELF_TIMEZONE') ?? fromFile?.timezone ?? timezone,
      retention: RETENTION_VARS.some((v) => str(env, v) !== undefined)
        ? retention
        : (fromFile?.retention ?? retention),
      drillSchedule: drillSchedule ?? fromFile?.drillSchedule,
    });
    if (listed >= 0) databases[listed] = target;
    else databases.unshift(target);
  }
  const logLevel = str(env, 'PGSHELF_LOG_LEVEL') ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(logLevel)) {
    throw invalid(
      'PGSHELF_LOG_LEVEL',
      logLevel,
      'expected trace, debug, info, warn, error or silent',
      'info',
    );
  }
  const redisUrl = str(env, 'REDIS_URL') ?? 'redis://127.0.0.1:6379';
  if (!/^rediss?:\/\//.test(redisUrl)) {
    throw invalid(
      'REDIS_URL',
      maskUrl(redisUrl),
      'expected a redis:// or rediss:// URL',
      'redis://127.0.0.1:6379',
    );
  }
  const queuePrefix = str(env, 'PGSHELF_QUEUE_PREFIX') ?? 'pgshelf';
  if (!/^[A-Za-z0-9_.-]+$/.test(queuePrefix)) {
    throw invalid('PGSHELF_QUEUE_PREFIX', queuePrefix, 'expected letters, digits, _ . or -', 'pgshelf-prod');
  }
  const pgBinDir = str(env, 'PGSHELF_PG_BIN');
  return Object.freeze({
    defaultDatabase,
    databases: Object.freeze(databases),
    envDefaults: Object.freeze({ postgres: envPg, schedule, timezone, retention, drillSchedule }),
    dbEcho: parseDbEcho(env.DB_ECHO),
    redisUrl,
    storage: parseStorage(env, cwd),
    gzipLevel: parseInteger(env, 'PGSHELF_GZIP_LEVEL', 6, 1, 9),
    gzipThreads: parseInteger(
      env,
      'PGSHELF_GZIP_THREADS',
      Math.min(4, os.availableParallelism()),
      1,
      64,
      '2',
    ),
    queuePrefix,
    concurrency: parseInteger(env, 'PGSHELF_CONCURRENCY', 1, 1, 64, '2'),
    attempts: parseInteger(env, 'PGSHELF_ATTEMPTS', 3, 1, 100),
    retryDelayMs: parseInteger(env, 'PGSHELF_RETRY_DELAY', 30, 0, 86_400, '60') * 1000,
    orphanGraceMs: parseOrphanGrace(env),
    manifestKey: parseManifestKey(env),
    hostConcurrency: parseInteger(env, 'PGSHELF_HOST_CONCURRENCY', 2, 1, 1000, '2'),
    catchUp: parseCatchUp(env),
    lockDurationMs: parseInteger(env, 'PGSHELF_LOCK_DURATION', 60, 2, 3600, '60') * 1000,
    shutdownGraceMs: parseInteger(env, 'PGSHELF_SHUTDOWN_GRACE', 30, 0, 86_400, '60') * 1000,
    http: Object.freeze({
      host: str(env, 'PGSHELF_HTTP_HOST') ?? '127.0.0.1',
      port: parseInteger(env, 'PGSHELF_HTTP_PORT', 9187, 0, 65535),
    }),
    configFile: configFile === undefined ? undefined : path.resolve(cwd, configFile),
    pgBinDir: pgBinDir === undefined ? undefined : path.resolve(cwd, pgBinDir),
    logLevel,
    childEnv: childBaseEnv(env),
  });
}

/**
 * What a command that needs a database says when it has none. POSTGRES_DB is needed only then: `list --all`,
 * `backup --db x` and the like work without it.
 */
export function noDatabaseError(): ConfigError {
  return new ConfigError(
    'no database given: pass --db NAME, or set POSTGRES_DB to the database to back up, e.g. ' +
      'POSTGRES_DB=fractal_db (or list databases in a YAML file named by PGSHELF_CONFIG)',
  );
}

/** `pgshelf worker` and `pgshelf scheduler` serve the databases they know, so they need at least one. */
export function requireDatabases(config: Config, who: string): void {
  if (config.databases.length === 0) {
    throw new ConfigError(
      `POSTGRES_DB is not set: ${who} needs the databases it serves: set it to the database to back up, e.g. ` +
        'POSTGRES_DB=fractal_db (or list databases in a YAML file named by PGSHELF_CONFIG)',
    );
  }
}

/**
 * The target for `--db NAME`: a database listed in the config, or the default connection pointed at NAME
 * (same host, port and users).
 */
export function resolveTarget(config: Config, name?: string): DatabaseTarget {
  if (name === undefined || name === '') {
    const first = config.databases.find((d) => d.name === config.defaultDatabase) ?? config.databases[0];
    if (!first) throw noDatabaseError();
    return first;
  }
  const listed = config.databases.find((d) => d.name === name);
  if (listed) return listed;
  const base =
    config.databases.find((d) => d.name === config.defaultDatabase) ??
    config.databases[0] ??
    config.envDefaults;
  return Object.freeze({
    ...base,
    name,
    postgres: Object.freeze({ ...base.postgres, database: name, origin: undefined }),
  });
}
