/** The shapes of pgshelf's settings, shared by index.ts, file.ts and postgres.ts so none imports index.ts. */

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

export interface SslSettings {
  /** libpq's sslmode; undefined means libpq's default (prefer). */
  readonly sslMode: SslMode | undefined;
  /** Absolute path of the CA certificate(s) the server's certificate must chain to. */
  readonly sslRootCert: string | undefined;
}

export type Env = Readonly<Record<string, string | undefined>>;

/** How to reach one PostgreSQL database, in the POSTGRES_* convention. */
export interface PgSettings extends SslSettings {
  /** Host name, IP address, or a UNIX socket directory (starts with '/'). */
  readonly host: string;
  readonly port: number;
  readonly database: string;
  /** User that dumps and that owns restored databases; undefined means libpq's default (the OS user). */
  readonly user: string | undefined;
  readonly password: string | undefined;
  /** User that runs createdb for restores; defaults to `user`. */
  readonly adminUser: string | undefined;
  readonly adminPassword: string | undefined;
  /** Where a PGSHELF_CONFIG entry came from (file and entry), for hints; undefined for POSTGRES_* and --db. */
  readonly origin?: string | undefined;
}

export interface Retention {
  readonly keepLast: number;
  readonly daily: number;
  readonly weekly: number;
  readonly monthly: number;
  readonly yearly: number;
  /** Prune never leaves fewer backups than this. */
  readonly minKeep: number;
}

/** Where a database's alerts go (src/alerts/): webhooks get JSON bodies, ping URLs healthchecks.io-style pings. */
export interface AlertTargets {
  /** PGSHELF_WEBHOOK_URL, plus the webhook_url of its PGSHELF_CONFIG entry (and of `defaults`). */
  readonly webhooks: readonly string[];
  /** PGSHELF_PING_URL (the default database), or its entry's ping_url. */
  readonly pings: readonly string[];
}

/** A database pgshelf backs up: its connection, schedule and retention. */
export interface DatabaseTarget {
  /** Name used in storage keys, job ids and `--db`; the PostgreSQL database name. */
  readonly name: string;
  readonly postgres: PgSettings;
  readonly schedule: string;
  readonly timezone: string;
  readonly retention: Retention;
  /** Cron expression for restore drills, or undefined for none. */
  readonly drillSchedule: string | undefined;
  readonly alerts: AlertTargets;
}

/**
 * A `servers:` entry of PGSHELF_CONFIG: every database on the server whose name the globs take is backed up
 * (listed anew at each slot), and the server's globals (roles, tablespaces) with it.
 */
export interface ServerTarget {
  /** `host:port`, as jobs and messages name the server. */
  readonly id: string;
  /** The connection; `database` is the one discovery and globals connect to (postgres). */
  readonly postgres: PgSettings;
  readonly schedule: string;
  readonly timezone: string;
  readonly retention: Retention;
  readonly drillSchedule: string | undefined;
  /** Shell-style globs (`*`, `?`) over database names: backed up when one of include and none of exclude matches. */
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  /** pg_dumpall --no-role-passwords, for managed services that do not show them. */
  readonly noRolePasswords: boolean;
  /** Where alerts about its databases and globals go. */
  readonly alerts: AlertTargets;
}

export type StorageSettings =
  | { readonly kind: 'file'; readonly url: string; readonly root: string }
  | {
      readonly kind: 's3';
      readonly url: string;
      readonly bucket: string;
      /** Key prefix without leading or trailing slash; may be ''. */
      readonly prefix: string;
      readonly endpoint: string | undefined;
      readonly region: string | undefined;
      readonly forcePathStyle: boolean;
      /** Most parts a multipart upload may have (10,000 on AWS; some providers allow fewer). */
      readonly maxParts: number;
      /** Bytes of the first parts of a multipart upload (PGSHELF_S3_PART_SIZE); later ones grow from it. */
      readonly firstPartSize: number;
      /** Static credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; otherwise the SDK's default chain. */
      readonly credentials: S3Credentials | undefined;
      /** Most time to open a connection to S3 (PGSHELF_S3_CONNECT_TIMEOUT). */
      readonly connectTimeoutMs: number;
      /** Most time an S3 request or stream may go without a byte either way (PGSHELF_S3_REQUEST_TIMEOUT). */
      readonly requestTimeoutMs: number;
    };

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** age encryption: the public keys backups are encrypted to, and where the secret key to decrypt them is. */
export interface AgeSettings {
  /** Empty: backups are not encrypted. */
  readonly recipients: readonly string[];
  /** Absolute path; the keys are read from it when needed, never kept in the Config. */
  readonly identityFile: string | undefined;
}

export interface Config {
  /** The default database (POSTGRES_*), or undefined when only PGSHELF_CONFIG lists databases (or none does). */
  readonly defaultDatabase: string | undefined;
  /** The databases this process knows: POSTGRES_DB and PGSHELF_CONFIG's entries. May be empty. */
  readonly databases: readonly DatabaseTarget[];
  /** PGSHELF_CONFIG's `servers:` entries, whose databases are discovered at each slot. May be empty. */
  readonly servers: readonly ServerTarget[];
  /** POSTGRES_* connection and PGSHELF_* schedule settings, the base for `--db NAME` when nothing else is. */
  readonly envDefaults: Omit<DatabaseTarget, 'name'>;
  readonly dbEcho: boolean;
  readonly redisUrl: string;
  readonly storage: StorageSettings;
  /** Archive compression (PGSHELF_COMPRESSION): gzip, or zstd where Node has it. */
  readonly compression: 'gzip' | 'zstd';
  readonly gzipLevel: number;
  /** Cores used to compress one backup (1: a single gzip stream; more: parallel gzip members). */
  readonly gzipThreads: number;
  /** Sessions a restore runs on (PGSHELF_RESTORE_JOBS); 1 is one psql in one transaction. */
  readonly restoreJobs: number;
  readonly queuePrefix: string;
  readonly concurrency: number;
  /** Jobs are tried this many times in all when they fail for a reason a retry can fix. */
  readonly attempts: number;
  /** First retry delay; later ones double (exponential backoff). */
  readonly retryDelayMs: number;
  /** Orphaned archives and incomplete uploads younger than this are left alone (a backup may be writing them). */
  readonly orphanGraceMs: number;
  /** HMAC key signing manifests (PGSHELF_MANIFEST_KEY); when set, unsigned or mismatched manifests are refused. */
  readonly manifestKey: string | undefined;
  readonly age: AgeSettings;
  /** Most dumps running at once against one PostgreSQL server (host:port), across all workers. */
  readonly hostConcurrency: number;
  /** Catch up a slot missed while no scheduler ran: 'off' or 'last'. */
  readonly catchUp: 'off' | 'last';
  /** BullMQ job lock: a job whose worker died is picked up again after about this long. */
  readonly lockDurationMs: number;
  /** How long a worker lets running jobs finish after SIGTERM before aborting them. */
  readonly shutdownGraceMs: number;
  /** `pgshelf serve`: where it listens, and the token it asks for (required off loopback). */
  readonly http: { readonly host: string; readonly port: number; readonly token: string | undefined };
  /** A database with no successful backup since its latest slot + this is overdue (scheduler/overdue.ts). */
  readonly overdueGraceMs: number;
  /** PGSHELF_WEBHOOK_SECRET: HMAC-SHA256 key signing webhook bodies; undefined sends them unsigned. */
  readonly webhookSecret: string | undefined;
  readonly configFile: string | undefined;
  /** Directory holding pg_dump/psql/createdb, when not the version-matched /usr/lib/postgresql/<major>/bin. */
  readonly pgBinDir: string | undefined;
  readonly logLevel: string;
  /** The allowlisted environment child processes inherit (PATH, locale, ...), before pgshelf adds PG* variables. */
  readonly childEnv: Env;
}
