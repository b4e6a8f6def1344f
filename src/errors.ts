/**
 * Named errors. Each says what went wrong and how to fix it. `recoverable === false` marks the ones that a retry
 * cannot fix: the worker turns them into BullMQ's UnrecoverableError so the job fails at once instead of retrying.
 */
export class PgshelfError extends Error {
  /** Whether retrying the same job could succeed (network blips, a server restart, a killed worker). */
  readonly recoverable: boolean = true;
  /** CLI exit code when this error ends a command. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A setting or a command-line argument is missing or invalid. */
export class ConfigError extends PgshelfError {
  override readonly recoverable = false;
  override readonly exitCode = 2;
}

/** pg_dump exited non-zero, was killed, or wrote nothing. */
export class DumpFailedError extends PgshelfError {}

/** psql or createdb failed during a restore. */
export class RestoreFailedError extends PgshelfError {}

/** The installed client tools cannot talk to the server (e.g. pg_dump older than the server). */
export class VersionMismatchError extends PgshelfError {
  override readonly recoverable = false;
}

/** A required client program (pg_dump, psql, createdb) was not found. */
export class ToolNotFoundError extends PgshelfError {
  override readonly recoverable = false;
}

/** The database to back up does not exist. */
export class DatabaseNotFoundError extends PgshelfError {
  override readonly recoverable = false;
}

/** A restore target already exists: pgshelf never overwrites a database it did not create. */
export class TargetExistsError extends PgshelfError {
  override readonly recoverable = false;
}

/** No backup matches the requested id, or the database has no backups. */
export class BackupNotFoundError extends PgshelfError {
  override readonly recoverable = false;
}

/** An archive's bytes do not match its manifest. */
export class ChecksumMismatchError extends PgshelfError {
  override readonly recoverable = false;
}

/** An archive could not be read to the end (truncated or corrupt gzip). */
export class CorruptArchiveError extends PgshelfError {
  override readonly recoverable = false;
}

/**
 * An age-encrypted archive that the keys of PGSHELF_AGE_IDENTITY_FILE cannot open (none is among its recipients).
 * Retrying with the same keys cannot help.
 */
export class DecryptionError extends PgshelfError {
  override readonly recoverable = false;
}

/** A manifest (or marker) in storage is too large, not JSON, fails the schema, or points at another archive. */
export class ManifestInvalidError extends PgshelfError {
  override readonly recoverable = false;
}

/** PGSHELF_MANIFEST_KEY is set and a manifest is unsigned or its signature does not match. */
export class ManifestSignatureError extends PgshelfError {
  override readonly recoverable = false;
}

/**
 * An archive holds something other than plain SQL a one-database pg_dump writes: a psql meta-command, transaction
 * control, a cluster-wide statement, or text psql and pgshelf could read differently. Nothing after it was sent.
 */
export class UnsafeArchiveError extends PgshelfError {
  override readonly recoverable = false;
}

/** Storage could not be reached or refused a request. Usually transient. */
export class StorageError extends PgshelfError {}

/** Storage refused a request in a way no retry fixes: no such bucket, access denied, bad credentials. */
export class StorageRefusedError extends StorageError {
  override readonly recoverable = false;
}

/** A folder-storage key that resolves, through a symbolic link, outside the storage folder. */
export class OutsideStorageError extends StorageError {
  override readonly recoverable = false;
}

/** Another backup of the same database is running (a worker's, or another `backup --in-process`). */
export class BackupRunningError extends PgshelfError {}

/** The job was aborted (shutdown, cancellation). */
export class AbortedError extends PgshelfError {
  constructor(message = 'the job was aborted', options?: ErrorOptions) {
    super(message, options);
  }
}

export function isRecoverable(err: unknown): boolean {
  return !(err instanceof PgshelfError) || err.recoverable;
}

/** A restore drill found the restored data different from what the backup recorded. */
export class DrillFailedError extends PgshelfError {
  override readonly recoverable = false;
}

/** The shell's convention for a command ended by a signal: 128 + its number (SIGINT 130, SIGTERM 143). */
export function exitCodeFor(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 130 : 143;
}

/** Thrown to end a command with an exit code after its message has been printed. */
export class CommandFailed extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
