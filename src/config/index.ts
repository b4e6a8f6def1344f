/**
 * The only reader of process.env (the CLI hands it over). Every setting is described once in settings.ts, parsed
 * into a typed, frozen Config, and fails at start-up with a message that names the variable, the bad value and a
 * good example.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAge } from './age.js';
import { parseConfigFile } from './file.js';
import { childBaseEnv, parseSsl } from './postgres.js';
import { get, raw as str, read, RETENTION_SETTINGS, TABLE } from './settings.js';
import { envNaming, invalid } from './validators.js';
import { ConfigError } from '../errors.js';
import type {
  Config,
  DatabaseTarget,
  Env,
  PgSettings,
  Retention,
  S3Credentials,
  ServerTarget,
  StorageSettings,
} from './types.js';
import { matchesGlobs, parseGlobalsName } from '../names.js';

export type * from './types.js';
export { SETTINGS, type SettingDoc } from './settings.js';
export { MIN_MANIFEST_KEY_LENGTH, parseDbEcho } from './validators.js';
export { readIdentityFile } from './age.js';
export { ageLibrary } from './age-lib.js';

export function parsePgSettings(env: Env, database: string, cwd = process.cwd()): PgSettings {
  const host = get(env, 'POSTGRES_HOST');
  const port = get(env, 'POSTGRES_PORT');
  const user = read(env, 'POSTGRES_USER');
  const password = read(env, 'POSTGRES_PASSWORD');
  return Object.freeze({
    host,
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
  const accessKeyId = read(env, 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = read(env, 'AWS_SECRET_ACCESS_KEY');
  if (accessKeyId === undefined && secretAccessKey === undefined) return undefined;
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new ConfigError(
      `${accessKeyId === undefined ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} is not set but its pair is: ` +
        'set both (e.g. AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin) or neither, to use the ' +
        "AWS SDK's default credential chain (profiles, instance roles)",
    );
  }
  const sessionToken = read(env, 'AWS_SESSION_TOKEN');
  return Object.freeze({ accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) });
}

/**
 * PGSHELF_STORAGE: `s3://bucket/prefix`, `file:///absolute/folder`, `file://./relative`, or a plain path that
 * looks like one. Anything else is refused rather than taken as a folder name: `s3:/bucket` or `file:/tmp/x`
 * would otherwise quietly become a folder under the current directory.
 */
export function parseStorage(env: Env, cwd: string): StorageSettings {
  const raw = get(env, 'PGSHELF_STORAGE');
  const bad = (why: string): ConfigError =>
    invalid(envNaming('PGSHELF_STORAGE'), raw, why, TABLE.PGSHELF_STORAGE.example);
  // S3 settings are checked even for folder storage, so a typo shows up before the day someone switches.
  const endpoint = read(env, 'S3_ENDPOINT');
  const forcePathStyle = read(env, 'S3_FORCE_PATH_STYLE') ?? endpoint !== undefined;
  const maxParts = get(env, 'PGSHELF_S3_MAX_PARTS');
  const firstPartSize = get(env, 'PGSHELF_S3_PART_SIZE') * 1024 * 1024;
  const connectTimeoutMs = get(env, 'PGSHELF_S3_CONNECT_TIMEOUT');
  const requestTimeoutMs = get(env, 'PGSHELF_S3_REQUEST_TIMEOUT');
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
      region: read(env, 'S3_REGION') ?? str(env, 'AWS_REGION') ?? str(env, 'AWS_DEFAULT_REGION'),
      forcePathStyle,
      maxParts,
      firstPartSize,
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

export function parseRetention(env: Env): Retention {
  const out: Partial<Record<keyof Retention, number>> = {};
  for (const { name, field } of RETENTION_SETTINGS) out[field] = get(env, name) as number;
  return Object.freeze(out as Retention);
}

export interface LoadOptions {
  /** Base for relative paths (default: process.cwd()). */
  readonly cwd?: string;
  /** Log level when PGSHELF_LOG_LEVEL is unset and DB_ECHO is off (commands: warn; workers: info). */
  readonly defaultLogLevel?: string;
}

/** Parses the environment into a frozen Config. Throws ConfigError naming the first bad setting. */
export function loadConfig(env: Env, options: LoadOptions = {}): Config {
  const cwd = options.cwd ?? process.cwd();
  const defaultDatabase = read(env, 'POSTGRES_DB');
  const configFile = read(env, 'PGSHELF_CONFIG');
  const timezone = get(env, 'PGSHELF_TIMEZONE');
  const schedule = get(env, 'PGSHELF_SCHEDULE');
  const drillSchedule = read(env, 'PGSHELF_DRILL_SCHEDULE');
  const retention = parseRetention(env);
  const envPg = parsePgSettings(env, defaultDatabase ?? '', cwd);
  // The environment's webhooks go to every database; its ping URL is the default database's check only.
  const webhooks = read(env, 'PGSHELF_WEBHOOK_URL') ?? Object.freeze([]);
  const envAlerts = Object.freeze({ webhooks, pings: Object.freeze([]) });
  const envPing = read(env, 'PGSHELF_PING_URL');
  const databases: DatabaseTarget[] = [];
  const servers: ServerTarget[] = [];
  if (configFile !== undefined) {
    const file = path.resolve(cwd, configFile);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `PGSHELF_CONFIG=${configFile}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); ` +
          `point it at a YAML file, e.g. PGSHELF_CONFIG=${TABLE.PGSHELF_CONFIG.example}`,
      );
    }
    // The environment's settings are the defaults every listed database starts from.
    const inherited = { postgres: envPg, schedule, timezone, retention, drillSchedule, alerts: envAlerts };
    const parsed = parseConfigFile(text, file, inherited, env);
    databases.push(...parsed.databases);
    servers.push(...parsed.servers);
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
      retention: RETENTION_SETTINGS.some((s) => str(env, s.name) !== undefined)
        ? retention
        : (fromFile?.retention ?? retention),
      drillSchedule: drillSchedule ?? fromFile?.drillSchedule,
      alerts: Object.freeze({
        webhooks: fromFile?.alerts.webhooks ?? webhooks,
        pings:
          envPing !== undefined ? Object.freeze([envPing]) : (fromFile?.alerts.pings ?? Object.freeze([])),
      }),
    });
    if (listed >= 0) databases[listed] = target;
    else databases.unshift(target);
  }
  const dbEcho = get(env, 'DB_ECHO');
  const logLevel = read(env, 'PGSHELF_LOG_LEVEL') ?? (dbEcho ? 'info' : (options.defaultLogLevel ?? 'info'));
  const redisUrl = get(env, 'REDIS_URL');
  const queuePrefix = get(env, 'PGSHELF_QUEUE_PREFIX');
  const pgBinDir = read(env, 'PGSHELF_PG_BIN');
  return Object.freeze({
    defaultDatabase,
    databases: Object.freeze(databases),
    servers: Object.freeze(servers),
    envDefaults: Object.freeze({
      postgres: envPg,
      schedule,
      timezone,
      retention,
      drillSchedule,
      alerts: envAlerts,
    }),
    dbEcho,
    redisUrl,
    storage: parseStorage(env, cwd),
    compression: get(env, 'PGSHELF_COMPRESSION'),
    gzipLevel: get(env, 'PGSHELF_GZIP_LEVEL'),
    gzipThreads: read(env, 'PGSHELF_GZIP_THREADS') ?? Math.min(4, os.availableParallelism()),
    restoreJobs: read(env, 'PGSHELF_RESTORE_JOBS') ?? os.availableParallelism(),
    queuePrefix,
    concurrency: get(env, 'PGSHELF_CONCURRENCY'),
    attempts: get(env, 'PGSHELF_ATTEMPTS'),
    retryDelayMs: get(env, 'PGSHELF_RETRY_DELAY'),
    orphanGraceMs: get(env, 'PGSHELF_ORPHAN_GRACE'),
    manifestKey: read(env, 'PGSHELF_MANIFEST_KEY'),
    age: parseAge(env, cwd),
    hostConcurrency: get(env, 'PGSHELF_HOST_CONCURRENCY'),
    catchUp: get(env, 'PGSHELF_CATCH_UP'),
    lockDurationMs: get(env, 'PGSHELF_LOCK_DURATION'),
    shutdownGraceMs: get(env, 'PGSHELF_SHUTDOWN_GRACE'),
    http: Object.freeze({
      host: get(env, 'PGSHELF_HTTP_HOST'),
      port: get(env, 'PGSHELF_HTTP_PORT'),
      token: read(env, 'PGSHELF_HTTP_TOKEN'),
    }),
    overdueGraceMs: get(env, 'PGSHELF_OVERDUE_GRACE') * 60_000,
    webhookSecret: read(env, 'PGSHELF_WEBHOOK_SECRET'),
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
  if (config.databases.length === 0 && config.servers.length === 0) {
    throw new ConfigError(
      `POSTGRES_DB is not set: ${who} needs the databases it serves: set it to the database to back up, e.g. ` +
        'POSTGRES_DB=fractal_db (or list databases in a YAML file named by PGSHELF_CONFIG)',
    );
  }
}

/** The `servers:` entry `host:port`, or undefined. */
export function findServer(config: Config, id: string): ServerTarget | undefined {
  return config.servers.find((s) => s.id === id);
}

/** Whether discovery on `server` takes database `name` (its globs). */
export function serverTakes(server: ServerTarget, name: string): boolean {
  return matchesGlobs(name, server.include, server.exclude);
}

/** A database of a `servers:` entry (or the entry's globals, under their name) as a target. */
export function serverTarget(server: ServerTarget, name: string, database = name): DatabaseTarget {
  return Object.freeze({
    name,
    postgres: Object.freeze({ ...server.postgres, database }),
    schedule: server.schedule,
    timezone: server.timezone,
    retention: server.retention,
    drillSchedule: server.drillSchedule,
    alerts: server.alerts,
  });
}

/**
 * The target of a database (or a server's globals) these settings back up: listed, or taken by a `servers:`
 * entry; undefined for any other name (a database found in storage only).
 */
export function knownTarget(config: Config, name: string): DatabaseTarget | undefined {
  const listed = config.databases.find((d) => d.name === name);
  if (listed) return listed;
  const globals = parseGlobalsName(name);
  if (globals) {
    const entry = findServer(config, `${globals.host}:${globals.port}`);
    return entry && serverTarget(entry, name, entry.postgres.database);
  }
  const entry = config.servers.find((s) => serverTakes(s, name));
  return entry && serverTarget(entry, name);
}

/**
 * The target for `--db NAME`: a database listed in the config; a server's globals (`_servers/<host>-<port>/
 * globals`); a database of a `servers:` entry whose globs take it (`server`, `host:port`, when the job says which,
 * else the first such entry); or the default connection pointed at NAME (same host, port and users).
 */
export function resolveTarget(config: Config, name?: string, server?: string): DatabaseTarget {
  if (name === undefined || name === '') {
    const first = config.databases.find((d) => d.name === config.defaultDatabase) ?? config.databases[0];
    if (!first) throw noDatabaseError();
    return first;
  }
  const globals = parseGlobalsName(name);
  if (globals) {
    const entry = findServer(config, `${globals.host}:${globals.port}`);
    if (entry) return serverTarget(entry, name, entry.postgres.database);
  }
  const listed = config.databases.find((d) => d.name === name);
  if (listed) return listed;
  const named = server === undefined ? undefined : findServer(config, server);
  const discovered =
    named && serverTakes(named, name) ? named : config.servers.find((s) => serverTakes(s, name));
  if (discovered && !globals) return serverTarget(discovered, name);
  const base =
    config.databases.find((d) => d.name === config.defaultDatabase) ??
    config.databases[0] ??
    config.envDefaults;
  if (globals) {
    // Globals of a server no entry lists (a restore onto a new server): its address, the default users.
    return Object.freeze({
      ...base,
      name,
      postgres: Object.freeze({
        ...base.postgres,
        host: globals.host,
        port: globals.port,
        database: 'postgres',
        origin: undefined,
      }),
    });
  }
  return Object.freeze({
    ...base,
    name,
    postgres: Object.freeze({ ...base.postgres, database: name, origin: undefined }),
    // Not the default database's own ping check: only the webhooks every database shares.
    alerts: config.envDefaults.alerts,
  });
}
