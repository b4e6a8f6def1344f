/**
 * Every setting pgshelf reads, once: its default, validator, example and meaning, and its key when the
 * PGSHELF_CONFIG file may set it too. loadConfig's parsing, the YAML keys, `pgshelf --help` and the README's
 * `## Settings` table (checked by test/unit/docs.test.ts) all come from TABLE.
 */
import type { Env, Retention } from './types.js';
import * as v from './validators.js';
import { envNaming, type Validator } from './validators.js';

export interface YamlKey {
  readonly key: string;
  /** Where in an entry: a connection, schedule or alert setting, or a key of its `retention` mapping. */
  readonly group: 'connection' | 'schedule' | 'retention' | 'alerts';
  /** The example in YAML messages, when not the setting's own. */
  readonly example?: string;
  /** Also `<key>_env`, naming an environment variable that holds the value (passwords). */
  readonly secret?: boolean;
  readonly field?: keyof Retention;
}

export interface Setting<T> {
  /** The value when unset, as text: parsed like a set value and shown (in backticks) as the default. */
  readonly fallback?: string;
  /** The default as shown, when it is not one fixed value (Markdown; backticks are dropped in --help). */
  readonly shown?: string;
  readonly example: string;
  /** Markdown, as in the README; backticks are dropped in --help. */
  readonly meaning: string;
  readonly parse: Validator<T>;
  readonly yaml?: YamlKey;
}

const setting = <T>(s: Setting<T>): Setting<T> => s;
const seconds = (fallback: string, min: number, max: number, example: string, meaning: string) =>
  setting({ fallback, example, meaning, parse: v.seconds(min, max) });
const keep = (fallback: string, key: string, field: keyof Retention, meaning: string, example = fallback) =>
  setting({
    fallback,
    example,
    meaning,
    parse: v.retentionCount(field === 'minKeep' ? 1 : 0),
    yaml: { key, group: 'retention', field },
  });

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const TABLE = {
  POSTGRES_DB: setting({
    shown: 'none',
    example: 'fractal_db',
    meaning: 'database to back up (the default target); needed by commands without `--db`, and by workers',
    parse: v.text,
  }),
  POSTGRES_HOST: setting({
    fallback: 'localhost',
    example: '/var/run/postgresql',
    meaning: 'host name, or a UNIX socket directory such as `/var/run/postgresql`',
    parse: v.hostName,
    yaml: { key: 'host', group: 'connection', example: 'db.internal' },
  }),
  POSTGRES_PORT: setting({
    fallback: '5432',
    example: '5432',
    meaning: 'port',
    parse: v.port,
    yaml: { key: 'port', group: 'connection' },
  }),
  POSTGRES_USER: setting({
    shown: 'libpq default (the OS user)',
    example: 'backup',
    meaning: 'user that dumps, and that owns restored databases',
    parse: v.text,
    yaml: { key: 'user', group: 'connection' },
  }),
  POSTGRES_PASSWORD: setting({
    shown: 'none',
    example: 's3cret',
    meaning:
      'its password; given to `pg_dump`/`psql` through `PGPASSWORD` in their environment, never on a command line',
    parse: v.text,
    yaml: { key: 'password', group: 'connection', secret: true, example: 'BACKUP_PASSWORD' },
  }),
  POSTGRES_ADMIN_USER: setting({
    shown: '`POSTGRES_USER`',
    example: 'postgres',
    meaning: 'user that runs `createdb --owner=POSTGRES_USER` for restores',
    parse: v.text,
    yaml: { key: 'admin_user', group: 'connection' },
  }),
  POSTGRES_ADMIN_PASSWORD: setting({
    shown: '`POSTGRES_PASSWORD`',
    example: 's3cret',
    meaning: 'its password',
    parse: v.text,
    yaml: { key: 'admin_password', group: 'connection', secret: true, example: 'PG_ADMIN_PASSWORD' },
  }),
  // Parsed together by parseSsl/checkSsl (postgres.ts): the mode decides whether the certificate is needed.
  POSTGRES_SSLMODE: setting({
    shown: '`PGSSLMODE`, else `prefer`',
    example: 'verify-full',
    meaning:
      "TLS to PostgreSQL, with libpq's meaning: `disable`, `allow`, `prefer`, `require`, `verify-ca`, " +
      "`verify-full`; for pgshelf's own connections and for `pg_dump`/`psql`/`createdb` alike (see " +
      '[TLS to PostgreSQL](#tls-to-postgresql))',
    parse: v.text,
    yaml: { key: 'sslmode', group: 'connection' },
  }),
  POSTGRES_SSLROOTCERT: setting({
    shown: '`PGSSLROOTCERT`',
    example: '/etc/pgshelf/root.crt',
    meaning:
      "CA certificate file (PEM) the server's certificate must chain to; required by `verify-ca` and `verify-full`",
    parse: v.text,
    yaml: { key: 'sslrootcert', group: 'connection' },
  }),
  DB_ECHO: setting({
    fallback: 'false',
    example: 'true',
    meaning:
      "`true`, `True` or `1`: log every SQL statement pgshelf issues and every child command's argv (never " +
      'secrets). `false`, `False`, `0` or empty: off. Anything else is an error',
    parse: v.dbEcho,
  }),
  REDIS_URL: setting({
    fallback: 'redis://127.0.0.1:6379',
    example: 'redis://127.0.0.1:6379',
    meaning: 'BullMQ connection (`rediss://` for TLS)',
    parse: v.url(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL'),
  }),
  // Parsed by parseStorage (index.ts): a URL or a folder, with the S3 settings below.
  PGSHELF_STORAGE: setting({
    fallback: 'file://./backups',
    example: 'file:///var/backups/pgshelf or PGSHELF_STORAGE=s3://my-bucket/pgshelf',
    meaning:
      '`s3://bucket/prefix`, `file:///folder`, `file://./folder` or a plain path; typos such as `s3:/bucket` or ' +
      '`file:/tmp/x` are refused',
    parse: v.text,
  }),
  S3_ENDPOINT: setting({
    shown: 'AWS',
    example: 'http://127.0.0.1:9000',
    meaning: 'endpoint of an S3-compatible service (MinIO, R2, Scaleway, ...)',
    parse: v.url(/^https?:\/\/[^/\s]+/, 'expected an http(s) URL'),
  }),
  S3_REGION: setting({
    shown: '`AWS_REGION`, else `us-east-1` with an endpoint',
    example: 'eu-west-3',
    meaning: 'region',
    parse: v.text,
  }),
  S3_FORCE_PATH_STYLE: setting({
    shown: '`true` when `S3_ENDPOINT` is set',
    example: 'true',
    meaning: 'path-style bucket addressing',
    parse: v.bool,
  }),
  AWS_ACCESS_KEY_ID: setting({
    shown: "the AWS SDK's default chain",
    example: 'minioadmin',
    meaning: 'S3 access key id (set it and `AWS_SECRET_ACCESS_KEY`, or neither)',
    parse: v.text,
  }),
  AWS_SECRET_ACCESS_KEY: setting({
    shown: "the AWS SDK's default chain",
    example: 'minioadmin',
    meaning: 'S3 secret key (set it and `AWS_ACCESS_KEY_ID`, or neither)',
    parse: v.text,
  }),
  AWS_SESSION_TOKEN: setting({
    shown: 'none',
    example: 'FwoGZXIvYXdzE...',
    meaning: 'S3 session token, for temporary credentials',
    parse: v.text,
  }),
  PGSHELF_S3_MAX_PARTS: setting({
    fallback: '10000',
    example: '1000',
    meaning:
      'most parts of a multipart upload; lower it (e.g. `1000`) for providers that limit parts. Parts grow as ' +
      'an upload goes so that this many hold 5 TiB (10,000 parts; proportionally less with fewer)',
    parse: v.wholeNumber(1, 10_000),
  }),
  PGSHELF_S3_PART_SIZE: setting({
    fallback: '8',
    example: '16',
    meaning:
      'MiB of the first parts of a multipart upload (5-5120); later parts grow from it. Memory holds at most ' +
      'three 8 MiB parts, or one part once parts are larger than 24 MiB',
    parse: v.wholeNumber(5, 5120),
  }),
  PGSHELF_S3_CONNECT_TIMEOUT: seconds(
    '10',
    1,
    3600,
    '10',
    'seconds to open a connection to S3; past it the call fails naming `S3_ENDPOINT`',
  ),
  PGSHELF_S3_REQUEST_TIMEOUT: seconds(
    '30',
    1,
    86_400,
    '120',
    'seconds an S3 request, upload or download may go without a byte moving (an idle timeout: long transfers ' +
      'are fine); the SDK retries twice',
  ),
  PGSHELF_COMPRESSION: setting({
    fallback: 'gzip',
    example: 'zstd',
    meaning:
      'archive compression: `gzip` (`.sql.gz`) or `zstd` (`.sql.zst`, level 3, restorable with `zstd -dc`; ' +
      'needs Node 22.15 or later)',
    parse: v.compression,
  }),
  PGSHELF_GZIP_LEVEL: setting({
    fallback: '6',
    example: '6',
    meaning: 'gzip level 1-9',
    parse: v.wholeNumber(1, 9),
  }),
  PGSHELF_GZIP_THREADS: setting({
    shown: 'cores, at most 4',
    example: '2',
    meaning: 'cores compressing one backup (`1`: a single gzip stream)',
    parse: v.wholeNumber(1, 64),
  }),
  PGSHELF_RESTORE_JOBS: setting({
    shown: 'cores',
    example: '4',
    meaning:
      'connections a restore loads tables and builds indexes on (`1`: one `psql` in one transaction, as by hand)',
    parse: v.wholeNumber(1, 64),
  }),
  PGSHELF_SCHEDULE: setting({
    fallback: '0 2 * * *',
    example: '0 2 * * *',
    meaning: 'nightly backups, cron syntax, in the time zone `PGSHELF_TIMEZONE`',
    parse: v.cron,
    yaml: { key: 'schedule', group: 'schedule', example: '"0 2 * * *"' },
  }),
  PGSHELF_TIMEZONE: setting({
    fallback: 'UTC',
    example: 'Europe/Paris',
    meaning: 'time zone of the schedules and of the retention buckets',
    parse: v.timezone,
    yaml: { key: 'timezone', group: 'schedule' },
  }),
  PGSHELF_DRILL_SCHEDULE: setting({
    shown: 'none',
    example: '0 4 * * 0',
    meaning: 'cron expression for restore drills (e.g. `0 4 * * 0`, weekly)',
    parse: v.cron,
    yaml: { key: 'drill_schedule', group: 'schedule', example: '"0 5 * * 0"' },
  }),
  PGSHELF_KEEP_LAST: keep('7', 'keep_last', 'keepLast', 'retention: keep the newest N backups'),
  PGSHELF_KEEP_DAILY: keep('7', 'daily', 'daily', 'retention: keep the newest backup of each of N days'),
  PGSHELF_KEEP_WEEKLY: keep('4', 'weekly', 'weekly', '... of each of N weeks'),
  PGSHELF_KEEP_MONTHLY: keep('12', 'monthly', 'monthly', '... of each of N months'),
  PGSHELF_KEEP_YEARLY: keep('0', 'yearly', 'yearly', '... of each of N years', '5'),
  PGSHELF_MIN_KEEP: keep('3', 'min_keep', 'minKeep', 'prune never leaves fewer backups than this'),
  // At least 1 hour: a shorter grace could delete the upload of a backup that is running right now.
  PGSHELF_ORPHAN_GRACE: setting({
    fallback: '24',
    example: '24',
    meaning: 'hours (at least 1) before prune removes an archive without manifest, or an incomplete upload',
    parse: v.hours(
      1,
      100_000,
      'prune must leave archives without a manifest alone for at least 1 hour (a running backup is writing them)',
    ),
  }),
  PGSHELF_MANIFEST_KEY: setting({
    shown: 'none',
    example: '$(openssl rand -hex 32)',
    meaning:
      'HMAC-SHA256 key (at least 32 characters, e.g. `$(openssl rand -hex 32)`) signing every manifest; when ' +
      'set, unsigned or mismatched manifests are refused',
    parse: v.manifestKey,
  }),
  // Parsed together by parseAge (age.ts): both recipient settings add up; the identity file is read and checked.
  PGSHELF_AGE_RECIPIENTS: setting({
    shown: 'none',
    example: 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p',
    meaning:
      'age public keys (`age1...`, comma-separated) every archive is encrypted to, after gzip; archives are then ' +
      '`*.sql.gz.age` (see [Encryption](#encryption)). Workers that only back up need nothing else',
    parse: v.text,
  }),
  PGSHELF_AGE_RECIPIENTS_FILE: setting({
    shown: 'none',
    example: '/etc/pgshelf/age-recipients.txt',
    meaning: 'file of age public keys, one a line (`#` comments), as `age -R` reads it; adds to the above',
    parse: v.text,
  }),
  PGSHELF_AGE_IDENTITY_FILE: setting({
    shown: 'none',
    example: '/etc/pgshelf/age-identity.txt',
    meaning:
      'age secret key file (what `age-keygen` writes), needed where encrypted archives are restored, verified ' +
      'or drilled; keep it off the hosts that only back up',
    parse: v.text,
  }),
  PGSHELF_HOST_CONCURRENCY: setting({
    fallback: '2',
    example: '2',
    meaning: 'dumps running at once against one PostgreSQL server, across all workers',
    parse: v.wholeNumber(1, 1000),
  }),
  PGSHELF_CATCH_UP: setting({
    fallback: 'last',
    example: 'last',
    meaning: "at scheduler start-up, run the last slot missed while none ran (`off`: don't)",
    parse: v.oneOf(['off', 'last']),
  }),
  PGSHELF_QUEUE_PREFIX: setting({
    fallback: 'pgshelf',
    example: 'pgshelf-prod',
    meaning: 'BullMQ key prefix, so several deployments can share one Redis',
    parse: v.matching(/^[A-Za-z0-9_.-]+$/, 'expected letters, digits, _ . or -'),
  }),
  PGSHELF_CONCURRENCY: setting({
    fallback: '1',
    example: '2',
    meaning: 'jobs one worker runs at once, per queue',
    parse: v.wholeNumber(1, 64),
  }),
  PGSHELF_ATTEMPTS: setting({
    fallback: '3',
    example: '3',
    meaning: 'tries per job when it fails for a reason a retry can fix',
    parse: v.wholeNumber(1, 100),
  }),
  PGSHELF_RETRY_DELAY: seconds(
    '30',
    0,
    86_400,
    '60',
    'seconds before the first retry; each later one waits twice as long',
  ),
  PGSHELF_LOCK_DURATION: seconds(
    '60',
    2,
    3600,
    '60',
    'seconds after which a job whose worker died is run again by another worker',
  ),
  PGSHELF_SHUTDOWN_GRACE: seconds(
    '30',
    0,
    86_400,
    '60',
    'seconds a worker lets running jobs finish after SIGTERM (an interrupted `--in-process` command, the time it ' +
      'gets to clean up; the scheduler, to close its connections)',
  ),
  PGSHELF_HTTP_HOST: setting({
    fallback: '127.0.0.1',
    example: '0.0.0.0',
    meaning:
      'address `pgshelf serve` listens on (dashboard, metrics, health); any address but loopback needs ' +
      '`PGSHELF_HTTP_TOKEN`',
    parse: v.text,
  }),
  PGSHELF_HTTP_PORT: setting({
    fallback: '9187',
    example: '9187',
    meaning: 'port of `pgshelf serve`',
    parse: v.wholeNumber(0, 65535),
  }),
  PGSHELF_HTTP_TOKEN: setting({
    shown: 'none',
    example: 'c2VjcmV0LXRva2VuLWZvci1wZ3NoZWxm',
    meaning:
      'token every `pgshelf serve` route but `/healthz` asks for (`Authorization: Bearer <token>`, or basic auth ' +
      'with it as the password); at least 16 characters; required on a non-loopback address',
    parse: v.secretMatching(/^[\x21-\x7e]{16,}$/, 'at least 16 printable characters without spaces'),
  }),
  PGSHELF_OVERDUE_GRACE: setting({
    fallback: '120',
    example: '60',
    meaning:
      'minutes after a scheduled slot before a database without a newer successful backup counts as overdue ' +
      '(`backup.overdue`, `pgshelf_backup_overdue`, `pgshelf status`); 0 allowed',
    parse: v.wholeNumber(0, 525_600),
  }),
  PGSHELF_WEBHOOK_URL: setting({
    shown: 'none',
    example: 'https://hooks.slack.com/services/T0/B0/XXXX',
    meaning:
      'alert webhooks: http(s) URLs, comma-separated, each sent a JSON body per alert (see [Alerts](#alerts)); a ' +
      "`PGSHELF_CONFIG` entry's `webhook_url` adds its own",
    parse: v.urlList,
    yaml: { key: 'webhook_url', group: 'alerts', example: 'https://alerts.example.com/pgshelf' },
  }),
  PGSHELF_WEBHOOK_SECRET: setting({
    shown: 'none',
    example: '$(openssl rand -hex 32)',
    meaning:
      'HMAC-SHA256 key (at least 16 characters): every webhook request then carries ' +
      '`X-Pgshelf-Signature: sha256=<hex HMAC of the body>`',
    parse: v.secret(16),
  }),
  PGSHELF_PING_URL: setting({
    shown: 'none',
    example: 'https://hc-ping.com/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
    meaning:
      "ping URL (healthchecks.io style) of the default database's backups: `<url>/start` when one starts, " +
      "`<url>` when it succeeds, `<url>/fail` when it fails for good; a `PGSHELF_CONFIG` entry's `ping_url` " +
      'sets its own',
    parse: v.httpUrl,
    yaml: { key: 'ping_url', group: 'alerts', example: 'https://hc-ping.com/<uuid>' },
  }),
  PGSHELF_CONFIG: setting({
    shown: 'none',
    example: '/etc/pgshelf/databases.yaml',
    meaning: 'YAML file listing several databases, each with its own connection, schedule and retention',
    parse: v.text,
  }),
  PGSHELF_PG_BIN: setting({
    shown: 'automatic',
    example: '/usr/lib/postgresql/15/bin',
    meaning: 'directory holding `pg_dump`, `psql` and `createdb`',
    parse: v.text,
  }),
  PGSHELF_LOG_LEVEL: setting({
    shown: '`info` for workers, `warn` for commands',
    example: 'info',
    meaning: '`trace`, `debug`, `info`, `warn`, `error`, `silent`',
    parse: v.oneOf(LOG_LEVELS, ['trace', 'debug', 'info', 'warn', 'error', 'silent']),
  }),
};

export type SettingName = keyof typeof TABLE;
type ValueOf<K extends SettingName> = ReturnType<(typeof TABLE)[K]['parse']>;

export interface SettingDoc {
  readonly name: string;
  /** Markdown, as in the README. */
  readonly default: string;
  readonly meaning: string;
  readonly example: string;
}

/** Every setting, in the order of the README and `pgshelf --help`. */
export const SETTINGS: readonly SettingDoc[] = Object.freeze(
  (Object.entries(TABLE) as [SettingName, Setting<unknown>][]).map(([name, s]) =>
    Object.freeze({
      name,
      default: s.shown ?? (s.fallback === undefined ? 'none' : `\`${s.fallback}\``),
      meaning: s.meaning,
      example: s.example,
    }),
  ),
);

/** An unset or empty variable is not set. */
export function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** The setting's value from `env`, else its default; undefined when neither is there. */
export function read<K extends SettingName>(env: Env, name: K): ValueOf<K> | undefined {
  const s = TABLE[name] as Setting<ValueOf<K>>;
  const value = raw(env, name) ?? s.fallback;
  return value === undefined ? undefined : s.parse(value, envNaming(name), s.example);
}

/** Like read, for a setting with a default (or one whose absence the caller has ruled out). */
export function get<K extends SettingName>(env: Env, name: K): ValueOf<K> {
  const value = read(env, name);
  if (value === undefined) throw new Error(`${name} has no default`);
  return value;
}

export interface YamlSetting {
  readonly name: SettingName;
  readonly setting: Setting<unknown>;
  readonly yaml: YamlKey;
}

/** The settings a PGSHELF_CONFIG entry (or its `defaults`) may set too, in table order. */
export const YAML_SETTINGS: readonly YamlSetting[] = (
  Object.entries(TABLE) as [SettingName, Setting<unknown>][]
).flatMap(([name, setting]) => (setting.yaml ? [{ name, setting, yaml: setting.yaml }] : []));

/** The PGSHELF_KEEP_* and PGSHELF_MIN_KEEP settings, with the Retention field each sets. */
export const RETENTION_SETTINGS = YAML_SETTINGS.flatMap((s) =>
  s.yaml.group === 'retention' && s.yaml.field ? [{ ...s, field: s.yaml.field }] : [],
);
