/**
 * Backups by server: which databases in storage come from a server (their manifests say so), the backups of one
 * slot (globals and every database) for `pgshelf restore-server`, and the databases that have backups but no
 * longer exist on their server (reported by `list`, and for status and metrics).
 */
import { mapLimit } from '../concurrency.js';
import { serverTakes, type Config } from '../config/index.js';
import { BackupNotFoundError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { listDatabases } from '../postgres/globals.js';
import type { Storage } from '../storage/index.js';
import { scanBackups, type StoredBackup } from './backups.js';
import { globalsName, isGlobalsName } from './layout.js';
import { readManifest, type Manifest, type ManifestTrust } from './manifest.js';

/** Manifests read when looking for a slot's backup of one database (or its globals), newest first. */
const MAX_MANIFEST_READS = 400;

export interface ServerAddress {
  readonly host: string;
  readonly port: number;
}

export interface PickedBackup {
  readonly backup: StoredBackup;
  readonly manifest: Manifest;
}

/** Which backups: of a slot (local time, as the scheduler names it), or the newest at or before a time. */
export interface SlotPick {
  readonly slot?: string;
  readonly at?: Date;
}

const sameServer = (m: Manifest, s: ServerAddress): boolean => m.host === s.host && m.port === s.port;

/** Committed backups of every database (not globals) in storage, newest first, from one listing. */
async function committedByDatabase(storage: Storage): Promise<Map<string, StoredBackup[]>> {
  const out = new Map<string, StoredBackup[]>();
  for (const b of await scanBackups(storage)) {
    if (b.manifestKey === undefined || b.archiveKey === undefined || isGlobalsName(b.database)) continue;
    const list = out.get(b.database) ?? [];
    list.push(b);
    out.set(b.database, list);
  }
  return out;
}

/**
 * The databases whose newest backup comes from `server` (its manifest's host and port), with their committed
 * backups, newest first. One manifest read per database in storage.
 */
export async function databasesOfServer(
  storage: Storage,
  trust: ManifestTrust,
  server: ServerAddress,
): Promise<Map<string, StoredBackup[]>> {
  const all = await committedByDatabase(storage);
  const entries = await mapLimit([...all.entries()], 16, async ([database, backups]) => {
    for (const b of backups.slice(0, 3)) {
      const manifest = await readManifest(storage, b.manifestKey!, trust).catch(() => undefined);
      if (manifest) return sameServer(manifest, server) ? ([database, backups] as const) : undefined;
    }
    return undefined;
  });
  return new Map(entries.filter((e) => e !== undefined));
}

/** The newest of `backups` (newest first) whose manifest `accept`s, reading at most MAX_MANIFEST_READS. */
async function firstAccepted(
  storage: Storage,
  trust: ManifestTrust,
  backups: readonly StoredBackup[],
  accept: (m: Manifest, b: StoredBackup) => boolean,
): Promise<PickedBackup | undefined> {
  for (const backup of backups.slice(0, MAX_MANIFEST_READS)) {
    const manifest = await readManifest(storage, backup.manifestKey!, trust).catch(() => undefined);
    if (manifest && accept(manifest, backup)) return { backup, manifest };
  }
  return undefined;
}

/** `backups` (newest first by their keys' second) with the ones sharing the newest second ordered by manifest. */
async function newestByManifest(
  storage: Storage,
  trust: ManifestTrust,
  backups: readonly StoredBackup[],
): Promise<readonly StoredBackup[]> {
  const second = backups[0]?.startedAt.getTime();
  const ties = backups.filter((b) => b.startedAt.getTime() === second);
  if (ties.length < 2) return backups;
  const started = new Map<StoredBackup, number>();
  for (const b of ties) {
    const m = await readManifest(storage, b.manifestKey!, trust).catch(() => undefined);
    started.set(b, m ? Date.parse(m.startedAt) : -Infinity);
  }
  const sorted = [...ties].sort((a, b) => started.get(b)! - started.get(a)!);
  return [...sorted, ...backups.slice(ties.length)];
}

/**
 * The globals backup of `server` that `pick` names: its slot's; or the newest started at or before `at`; or the
 * newest. Throws BackupNotFoundError naming what exists.
 */
export async function findGlobals(
  storage: Storage,
  trust: ManifestTrust,
  server: ServerAddress,
  pick: SlotPick & { readonly near?: Manifest },
): Promise<PickedBackup> {
  const where = `${server.host}:${server.port}`;
  const backups = (await scanBackups(storage, globalsName(server.host, server.port))).filter(
    (b) => b.manifestKey !== undefined && b.archiveKey !== undefined,
  );
  if (backups.length === 0) {
    throw new BackupNotFoundError(
      `no globals of server ${where} in ${storage.url}: a \`servers:\` entry of PGSHELF_CONFIG backs them up ` +
        'at every slot, `pgshelf backup --globals` by hand (see `pgshelf list --all`)',
    );
  }
  const slot = pick.slot ?? pick.near?.slot;
  if (slot !== undefined) {
    const found = await firstAccepted(storage, trust, backups, (m) => m.slot === slot);
    if (found) return found;
    if (pick.slot !== undefined) {
      throw new BackupNotFoundError(
        `no globals of server ${where} for slot ${slot}; the newest are from ` +
          `${backups
            .slice(0, 3)
            .map((b) => b.startedAt.toISOString())
            .join(', ')} (see \`pgshelf list --all\`)`,
      );
    }
  }
  // A database backup's globals: the newest taken before it ended (5 minutes of leeway between jobs of a slot).
  const before = pick.at ?? (pick.near ? new Date(Date.parse(pick.near.finishedAt) + 5 * 60_000) : undefined);
  const cutoff = before?.getTime() ?? Infinity;
  // Keys name the second a backup started; two slots' globals made within one second (by hand, or a catch-up)
  // would otherwise come in no defined order: the manifests' millisecond times decide.
  const ordered = before === undefined ? await newestByManifest(storage, trust, backups) : backups;
  const found = await firstAccepted(storage, trust, ordered, (m) => Date.parse(m.startedAt) <= cutoff);
  if (found) return found;
  if (pick.near) {
    const oldest = await firstAccepted(storage, trust, [...backups].reverse(), () => true);
    if (oldest) return oldest;
  }
  throw new BackupNotFoundError(
    `no globals of server ${where} taken at or before ${before?.toISOString() ?? 'now'} (see \`pgshelf list --all\`)`,
  );
}

/** What `restore-server` restores: the globals and one backup per database of the slot, and what it leaves. */
export interface ServerSlot {
  readonly globals: PickedBackup;
  /** The slot, or null when the backups were made by hand (then: the newest at or before the globals' time). */
  readonly slot: string | null;
  readonly databases: readonly PickedBackup[];
  /** Databases of the server with backups, but none of this slot: not restored. */
  readonly left: readonly { readonly database: string; readonly newest: string }[];
}

/**
 * The backups of one slot of `server`: its globals and, for each database whose backups come from it, the backup
 * of the same slot. Without slots (backups by hand), the newest backup of each database taken at or before the
 * globals' time plus a day.
 */
export async function serverSlot(
  storage: Storage,
  trust: ManifestTrust,
  server: ServerAddress,
  pick: SlotPick,
): Promise<ServerSlot> {
  const globals = await findGlobals(storage, trust, server, pick);
  const slot = globals.manifest.slot ?? null;
  const cutoff = Date.parse(globals.manifest.finishedAt) + 86_400_000;
  const byDatabase = await databasesOfServer(storage, trust, server);
  const picked = await mapLimit([...byDatabase.entries()], 8, async ([database, backups]) => {
    const found = await firstAccepted(storage, trust, backups, (m, b) =>
      slot !== null ? m.slot === slot && sameServer(m, server) : b.startedAt.getTime() <= cutoff,
    );
    return { database, found, newest: backups[0]!.startedAt.toISOString() };
  });
  return {
    globals,
    slot,
    databases: picked
      .flatMap((p) => (p.found ? [p.found] : []))
      .sort((a, b) => (a.manifest.database < b.manifest.database ? -1 : 1)),
    left: picked.flatMap((p) => (p.found ? [] : [{ database: p.database, newest: p.newest }])),
  };
}

/** A server's databases that have backups in storage but no longer exist on it. */
export interface MissingDatabases {
  /** `host:port` of the `servers:` entry. */
  readonly server: string;
  readonly missing: readonly string[];
  /** Why the server could not be listed (then `missing` is empty: unknown, not none). */
  readonly error: string | null;
}

/**
 * For each `servers:` entry: the databases with backups in storage that its globs take, but that neither it nor
 * any other entry whose globs take them has any more (a database with its own `databases:` entry is that
 * entry's business). Their backups are kept; this says so, for `pgshelf list`, `pgshelf status` and the
 * `pgshelf_database_missing` metric. One storage listing (or `stored`, the names already listed) and one query
 * per server; no manifest is read.
 */
export async function missingDatabases(
  config: Config,
  storage: Storage,
  logger: Logger,
  stored?: Iterable<string>,
): Promise<MissingDatabases[]> {
  if (config.servers.length === 0) return [];
  const names = new Set(stored ?? (await scanBackups(storage)).map((b) => b.database));
  const listed = new Set(config.databases.map((d) => d.name));
  const present = await mapLimit(config.servers, 4, async (server) => {
    try {
      return {
        server,
        names: new Set(await listDatabases(server.postgres, { echo: config.dbEcho, logger })),
      };
    } catch (err) {
      return { server, names: undefined, error: errorMessage(err) };
    }
  });
  const missing = new Map<string, string[]>(config.servers.map((s) => [s.id, []]));
  for (const name of [...names].sort()) {
    if (listed.has(name) || isGlobalsName(name)) continue;
    const takers = present.filter((p) => serverTakes(p.server, name));
    // Unknown while a server that could have it cannot be listed; gone when none of them has it.
    if (takers.length === 0 || takers.some((p) => p.names === undefined || p.names.has(name))) continue;
    missing.get(takers[0]!.server.id)!.push(name);
  }
  return present.map((p) => ({
    server: p.server.id,
    missing: missing.get(p.server.id)!,
    error: p.names === undefined ? (p as { error: string }).error : null,
  }));
}
