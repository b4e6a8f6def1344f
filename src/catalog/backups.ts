/** The catalog of backups in storage: scan, find and list them (used by the CLI, the jobs and the dashboard). */
import { mapLimit } from '../concurrency.js';
import {
  BackupNotFoundError,
  errorMessage,
  ManifestInvalidError,
  ManifestSignatureError,
  StorageError,
} from '../errors.js';
import type { Storage } from '../storage/index.js';
import { databasePrefix, parseKey, type ParsedKey } from './layout.js';
import { readAttemptMarker } from './markers.js';
import {
  MANIFEST_MAX_BYTES,
  manifestTrust,
  parseManifest,
  readManifest,
  type Manifest,
  type ManifestTrust,
} from './manifest.js';

/** A backup found in storage: a manifest (committed) or an archive without one (an orphan). */
export interface StoredBackup {
  readonly id: string;
  readonly database: string;
  /** From the key's name: what the listing says, not yet checked against the manifest. */
  readonly startedAt: Date;
  readonly base: string;
  readonly archiveKey: string | undefined;
  readonly archiveBytes: number | undefined;
  readonly archiveModified: Date | undefined;
  readonly manifestKey: string | undefined;
  /**
   * The manifest object's listing time and size: a drill's rewrite changes both (it appends a record; S3 times
   * have whole seconds), so a reader can cache a manifest by them.
   */
  readonly manifestModified: Date | undefined;
  readonly manifestBytes: number | undefined;
}

/**
 * Every backup of `database` (or of all databases), newest first by the names' timestamps, from one listing:
 * no object is read. Foreign files in the storage are ignored.
 */
export async function scanBackups(storage: Storage, database?: string): Promise<StoredBackup[]> {
  interface Entry {
    parsed: ParsedKey;
    archive?: { key: string; size: number; modified: Date };
    manifest?: { key: string; size: number; modified: Date };
  }
  const map = new Map<string, Entry>();
  for await (const obj of storage.list(database === undefined ? '' : databasePrefix(database))) {
    const parsed = parseKey(obj.key);
    if (!parsed || (database !== undefined && parsed.database !== database)) continue;
    let entry = map.get(parsed.base);
    if (!entry) map.set(parsed.base, (entry = { parsed }));
    if (parsed.kind === 'manifest')
      entry.manifest = { key: obj.key, size: obj.size, modified: obj.lastModified };
    else entry.archive = { key: obj.key, size: obj.size, modified: obj.lastModified };
  }
  const out: StoredBackup[] = [...map.entries()].map(([base, e]) => ({
    id: e.parsed.id,
    database: e.parsed.database,
    startedAt: e.parsed.startedAt,
    base,
    archiveKey: e.archive?.key,
    archiveBytes: e.archive?.size,
    archiveModified: e.archive?.modified,
    manifestKey: e.manifest?.key,
    manifestModified: e.manifest?.modified,
    manifestBytes: e.manifest?.size,
  }));
  return out.sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime() || (a.id < b.id ? 1 : -1));
}

/**
 * The committed backup `idOrLatest` ('latest', an id, or a base name ending in the id) of `database`, with its
 * checked manifest. Throws BackupNotFoundError naming what exists, and when the archive is missing, naming it
 * and the newest backup that has one: nothing is skipped silently.
 */
export async function findBackup(
  storage: Storage,
  database: string | undefined,
  idOrLatest: string,
  trust: ManifestTrust = {},
): Promise<{ backup: StoredBackup; manifest: Manifest }> {
  const backups = (await scanBackups(storage, database)).filter((b) => b.manifestKey !== undefined);
  const where = database === undefined ? storage.url : `${storage.url} for database "${database}"`;
  let found: StoredBackup | undefined;
  if (idOrLatest === 'latest') {
    found = backups[0];
    if (!found) throw new BackupNotFoundError(`no backups in ${where}: run \`pgshelf backup\` first`);
  } else {
    found = backups.find(
      (b) => b.id === idOrLatest || b.base.endsWith(`/${idOrLatest}`) || b.base.endsWith(`_${idOrLatest}`),
    );
    if (!found) {
      const recent = backups.slice(0, 3).map((b) => b.id);
      throw new BackupNotFoundError(
        `backup ${JSON.stringify(idOrLatest)} not found in ${where}` +
          (recent.length
            ? `; the newest are ${recent.join(', ')} (see \`pgshelf list\`)`
            : ': there are no backups'),
      );
    }
  }
  const other = backups.find((b) => b !== found && b.archiveKey !== undefined);
  let manifest: Manifest;
  try {
    manifest = await readManifest(storage, found.manifestKey!, trust);
  } catch (err) {
    // Refused, never skipped: but say which backup the operator can choose instead.
    if (other && (err instanceof ManifestInvalidError || err instanceof ManifestSignatureError)) {
      const Refusal = err.constructor as new (message: string, options?: ErrorOptions) => Error;
      throw new Refusal(`${err.message}. The newest other backup is ${other.id}: use --backup ${other.id}`, {
        cause: err,
      });
    }
    throw err;
  }
  if (found.archiveKey !== manifest.archive.key) {
    throw new BackupNotFoundError(
      `backup ${found.id} of "${found.database}" has a manifest but its archive ` +
        `${storage.locate(manifest.archive.key)} is missing: ` +
        (other
          ? `the newest backup with an archive is ${other.id}: use --backup ${other.id}`
          : 'there is no other backup with an archive'),
    );
  }
  return { backup: found, manifest };
}

export interface ListedBackup {
  readonly id: string;
  readonly database: string;
  readonly startedAt: string;
  readonly bytes: number | null;
  readonly durationMs: number | null;
  readonly verified: boolean | null;
  readonly verifiedAt: string | null;
  /** The scheduler's slot (local time) the backup was made for; null when made by hand. */
  readonly slot: string | null;
  /** How long the latest drill's restore took (the recovery time it measured); null when never drilled. */
  readonly drillRestoreMs: number | null;
  /**
   * complete: manifest and archive; missing: a manifest whose archive is gone (not restorable); invalid: a
   * manifest that cannot be read or trusted (see `problem`); orphan: an archive without a manifest.
   */
  readonly status: 'complete' | 'missing' | 'invalid' | 'orphan';
  readonly archive: string | null;
  readonly manifest: string | null;
  /** Why a backup is missing or invalid; null otherwise. */
  readonly problem: string | null;
}

export async function listBackups(
  storage: Storage,
  config: { readonly manifestKey: string | undefined },
  database?: string,
): Promise<ListedBackup[]> {
  const backups = await scanBackups(storage, database);
  const trust = manifestTrust(config);
  return mapLimit(backups, 16, async (b: StoredBackup): Promise<ListedBackup> => {
    let manifest: Manifest | undefined;
    let problem: string | null = null;
    if (b.manifestKey) {
      try {
        manifest = await readManifest(storage, b.manifestKey, trust);
      } catch (err) {
        problem = errorMessage(err);
      }
    }
    const missing = manifest !== undefined && b.archiveKey !== manifest.archive.key;
    if (missing) problem = `archive ${storage.locate(manifest!.archive.key)} is missing`;
    return {
      id: b.id,
      database: b.database,
      startedAt: b.startedAt.toISOString(),
      bytes: manifest?.archive.bytes ?? b.archiveBytes ?? null,
      durationMs: manifest?.durationMs ?? null,
      verified: manifest ? (manifest.drill?.verified ?? false) : null,
      verifiedAt: manifest?.drill?.at ?? null,
      slot: manifest?.slot ?? null,
      drillRestoreMs: manifest?.drill?.restoreMs ?? null,
      status:
        b.manifestKey === undefined ? 'orphan' : !manifest ? 'invalid' : missing ? 'missing' : 'complete',
      archive: b.archiveKey ? storage.locate(b.archiveKey) : null,
      manifest: b.manifestKey ? storage.locate(b.manifestKey) : null,
      problem,
    };
  });
}

/** An archive to restore, with its manifest when it has one. */
export interface LocatedArchive {
  readonly key: string;
  readonly bytes: number;
  readonly manifest: Manifest | undefined;
  readonly backupId: string | null;
  readonly sourceDatabase: string | null;
}

/**
 * The archive a restore reads: a backup of `database` (`backup`: 'latest' or an id), or any stored `key` (a
 * pgshelf archive given by key still gets its manifest).
 */
export async function locateArchive(
  storage: Storage,
  database: string,
  input: { readonly key?: string; readonly backup?: string },
  trust: ManifestTrust,
): Promise<LocatedArchive> {
  if (input.key !== undefined) {
    const info = await storage.stat(input.key);
    if (!info) throw new BackupNotFoundError(`${storage.locate(input.key)} does not exist: check --key`);
    // A pgshelf archive given by key still gets its manifest checks.
    const parsed = parseKey(input.key);
    const manifestKey = parsed ? `${parsed.base}.manifest.json` : undefined;
    const manifestBody = manifestKey
      ? await storage.getObject(manifestKey, { maxBytes: MANIFEST_MAX_BYTES })
      : undefined;
    const manifest =
      manifestBody && manifestKey
        ? parseManifest(manifestBody, manifestKey, trust, storage.locate(manifestKey))
        : undefined;
    return {
      key: input.key,
      bytes: info.size,
      manifest,
      backupId: manifest?.id ?? null,
      sourceDatabase: manifest?.database ?? null,
    };
  }
  const { backup, manifest } = await findBackup(storage, database, input.backup ?? 'latest', trust);
  return {
    key: manifest.archive.key,
    bytes: manifest.archive.bytes,
    manifest,
    backupId: backup.id,
    sourceDatabase: manifest.database,
  };
}

/** Manifests tried, newest first, when the newest cannot be read or trusted. */
const LAST_SUCCESS_TRIES = 3;

/**
 * When the newest successful backup of `database` finished, read cheaply: the attempt marker alone (one small
 * GET) when it records a success at or after `atLeast`; otherwise one listing and the newest manifests (the
 * marker is written best effort, so it may be stale). undefined when storage holds no successful backup.
 */
export async function lastSuccessAt(
  storage: Storage,
  database: string,
  options: { readonly trust?: ManifestTrust; readonly atLeast?: Date } = {},
): Promise<Date | undefined> {
  const attempt = await readAttemptMarker(storage, database);
  const marked =
    attempt.state === 'ok' && attempt.record.status === 'succeeded' ? new Date(attempt.record.at) : undefined;
  if (marked && options.atLeast && marked >= options.atLeast) return marked;
  const committed = (await scanBackups(storage, database)).filter(
    (b) => b.manifestKey !== undefined && b.archiveKey !== undefined,
  );
  for (const b of committed.slice(0, LAST_SUCCESS_TRIES)) {
    try {
      return new Date((await readManifest(storage, b.manifestKey!, options.trust)).finishedAt);
    } catch (err) {
      if (err instanceof StorageError) throw err;
    }
  }
  // A success the marker records but whose backup is not in storage (or not trusted) cannot be restored.
  return undefined;
}
