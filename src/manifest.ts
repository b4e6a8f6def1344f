import { BackupNotFoundError, PgshelfError } from './errors.js';
import type { Storage } from './storage/index.js';
import { databasePrefix, parseKey, type ParsedKey } from './storage/layout.js';

export const MANIFEST_FORMAT = 'pgshelf-backup';
export const MANIFEST_VERSION = 1;

export interface DrillRecord {
  readonly verified: boolean;
  readonly at: string;
  /** Restore duration (download + gunzip + psql), the figure to quote as recovery time. */
  readonly restoreMs: number;
  readonly scratchDatabase: string;
  readonly detail?: string;
}

export interface Manifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly formatVersion: number;
  readonly id: string;
  readonly database: string;
  readonly host: string;
  readonly port: number;
  readonly serverVersion: string;
  readonly serverVersionNum: number;
  readonly pgDumpVersion: string;
  readonly pgDumpPath: string;
  readonly dumpOptions: { readonly noOwner: boolean; readonly noPrivileges: boolean };
  readonly compression: { readonly format: 'gzip'; readonly level: number; readonly threads?: number };
  readonly encryption: null | { readonly format: 'age'; readonly recipients: readonly string[] };
  readonly archive: { readonly key: string; readonly bytes: number; readonly sha256: string };
  readonly uncompressedBytes: number;
  readonly databaseSize: number;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  /** Rows per table as counted in the dump, keyed by the table name as pg_dump printed it. */
  readonly tables: Readonly<Record<string, number>>;
  /** The latest restore drill of this backup, or null. */
  readonly drill: DrillRecord | null;
  /** Every drill, oldest first. */
  readonly drills: readonly DrillRecord[];
}

/** A backup found in storage: a manifest (committed) or an archive without one (an orphan). */
export interface StoredBackup {
  readonly id: string;
  readonly database: string;
  readonly startedAt: Date;
  readonly base: string;
  readonly archiveKey: string | undefined;
  readonly archiveBytes: number | undefined;
  readonly archiveModified: Date | undefined;
  readonly manifestKey: string | undefined;
}

export function parseManifest(text: string, key: string): Manifest {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new PgshelfError(`manifest ${key} is not valid JSON: ${(err as Error).message}`);
  }
  const o = m as Partial<Manifest>;
  if (
    o.format !== MANIFEST_FORMAT ||
    typeof o.id !== 'string' ||
    !o.archive ||
    typeof o.archive.key !== 'string'
  ) {
    throw new PgshelfError(`${key} is not a pgshelf manifest (format ${JSON.stringify(o.format)})`);
  }
  if ((o.formatVersion ?? 0) > MANIFEST_VERSION) {
    throw new PgshelfError(
      `manifest ${key} has format version ${o.formatVersion}, newer than this pgshelf understands ` +
        `(${MANIFEST_VERSION}): upgrade pgshelf`,
    );
  }
  return { drill: null, drills: [], tables: {}, ...o } as Manifest;
}

export async function readManifest(storage: Storage, key: string): Promise<Manifest> {
  const body = await storage.getObject(key);
  if (!body) throw new BackupNotFoundError(`manifest ${storage.locate(key)} does not exist`);
  return parseManifest(body.toString('utf8'), key);
}

export async function writeManifest(storage: Storage, key: string, manifest: Manifest): Promise<void> {
  await storage.putObject(key, JSON.stringify(manifest, null, 2) + '\n', 'application/json');
}

/**
 * Every backup of `database` (or of all databases), newest first, from one listing: no object is read.
 * Foreign files in the storage are ignored.
 */
export async function scanBackups(storage: Storage, database?: string): Promise<StoredBackup[]> {
  interface Entry {
    parsed: ParsedKey;
    archive?: { key: string; size: number; modified: Date };
    manifestKey?: string;
  }
  const map = new Map<string, Entry>();
  for await (const obj of storage.list(database === undefined ? '' : databasePrefix(database))) {
    const parsed = parseKey(obj.key);
    if (!parsed || (database !== undefined && parsed.database !== database)) continue;
    let entry = map.get(parsed.base);
    if (!entry) map.set(parsed.base, (entry = { parsed }));
    if (parsed.kind === 'manifest') entry.manifestKey = obj.key;
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
    manifestKey: e.manifestKey,
  }));
  return out.sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime() || (a.id < b.id ? 1 : -1));
}

/**
 * The committed backup `idOrLatest` ('latest', an id, or a base name ending in the id) of `database`, with its
 * manifest. Throws BackupNotFoundError naming what exists.
 */
export async function findBackup(
  storage: Storage,
  database: string | undefined,
  idOrLatest: string,
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
  const manifest = await readManifest(storage, found.manifestKey!);
  return { backup: found, manifest };
}
