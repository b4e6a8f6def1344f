/**
 * Storage keys:
 *   <database>/<YYYY>/<MM>/<database>_<YYYYMMDDTHHMMSSZ>_<id>.sql.gz        (.sql.zst for zstd; + .age when encrypted)
 *   <database>/<YYYY>/<MM>/<database>_<YYYYMMDDTHHMMSSZ>_<id>.manifest.json
 * relative to the storage prefix. Database names may hold any character PostgreSQL allows; the few that cannot
 * stand in a path segment are percent-encoded. A server's globals (roles, memberships, tablespaces: pg_dumpall
 * --globals-only) are stored like a database's backups, under its own folder:
 *   _servers/<host>-<port>/globals/<YYYY>/<MM>/globals_<YYYYMMDDTHHMMSSZ>_<id>.sql.gz   (and .manifest.json)
 * and go by the name `_servers/<host>-<port>/globals` wherever a database name goes (jobs, retention, markers).
 * A database's folder is one encoded segment and never holds '/', so the two cannot collide.
 */
import { randomBytes } from 'node:crypto';
import { decodeSegment, encodeSegment, isGlobalsName } from '../names.js';

export {
  decodeSegment,
  encodeSegment,
  globalsName,
  isGlobalsName,
  parseGlobalsName,
  SERVERS_DIR,
} from '../names.js';

export const ARCHIVE_SUFFIX = '.sql.gz';
/** Added after the compression's suffix when the archive is encrypted with age: `.sql.gz.age`. */
export const AGE_SUFFIX = '.age';
export const ENCRYPTED_SUFFIX = ARCHIVE_SUFFIX + AGE_SUFFIX;
export const MANIFEST_SUFFIX = '.manifest.json';

export type Compression = 'gzip' | 'zstd';
export const COMPRESSIONS: readonly Compression[] = ['gzip', 'zstd'];
/** The file-name extension of each compression: an archive is `.sql` + this (+ `.age` when encrypted). */
export const COMPRESSION_EXT: Readonly<Record<Compression, string>> = { gzip: '.gz', zstd: '.zst' };

/** `.sql.gz`, `.sql.zst`, `.sql.gz.age`, ...: what an archive's key ends with. */
export function archiveSuffix(compression: Compression = 'gzip', encrypted = false): string {
  return `.sql${COMPRESSION_EXT[compression]}${encrypted ? AGE_SUFFIX : ''}`;
}

/** Every archive suffix, for finding the archive beside a manifest. */
export const ARCHIVE_SUFFIXES: readonly string[] = COMPRESSIONS.flatMap((c) => [
  archiveSuffix(c),
  archiveSuffix(c, true),
]);

/** The compression a key's name says: `.zst` (before any `.age`) is zstd, anything else gzip. */
export function compressionOfKey(key: string): Compression {
  return /\.zst(\.age)?$/.test(key) ? 'zstd' : 'gzip';
}

/** 2026-11-25T03:43:23.456Z -> 20261125T034323Z */
export function formatTimestamp(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

export function parseTimestamp(ts: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(ts);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}

export function newBackupId(): string {
  return randomBytes(4).toString('hex');
}

export interface BackupKeys {
  readonly base: string;
  readonly archive: string;
  readonly manifest: string;
}

export function backupKeys(
  database: string,
  startedAt: Date,
  id: string,
  encrypted = false,
  compression: Compression = 'gzip',
): BackupKeys {
  const globals = isGlobalsName(database);
  const db = globals ? database : encodeSegment(database);
  const iso = startedAt.toISOString();
  const file = globals ? 'globals' : db;
  const base = `${db}/${iso.slice(0, 4)}/${iso.slice(5, 7)}/${file}_${formatTimestamp(startedAt)}_${id}`;
  return {
    base,
    archive: base + archiveSuffix(compression, encrypted),
    manifest: base + MANIFEST_SUFFIX,
  };
}

/** Folder (key prefix, with trailing slash) that holds all of one database's backups. */
export function databasePrefix(database: string): string {
  return isGlobalsName(database) ? `${database}/` : `${encodeSegment(database)}/`;
}

export interface ParsedKey {
  readonly database: string;
  readonly startedAt: Date;
  readonly id: string;
  readonly kind: 'archive' | 'manifest';
  readonly encrypted: boolean;
  readonly compression: Compression;
  readonly base: string;
}

const KEY_RE =
  /^(.+)\/(\d{4})\/(\d{2})\/(.+)_(\d{8}T\d{6}Z)_([0-9a-f]{8})(\.sql\.(?:gz|zst)(?:\.age)?|\.manifest\.json)$/;

/** Parses a key written by backupKeys; undefined for anything else (foreign files are left alone). */
export function parseKey(key: string): ParsedKey | undefined {
  const m = KEY_RE.exec(key);
  if (!m) return undefined;
  const [, dbDir, , , dbFile, ts, id, suffix] = m;
  if (!dbDir || !dbFile || !ts || !id || !suffix) return undefined;
  const globals = dbFile === 'globals' && isGlobalsName(dbDir);
  if (!globals && (dbDir !== dbFile || dbDir.includes('/'))) return undefined;
  const startedAt = parseTimestamp(ts);
  if (!startedAt) return undefined;
  let database: string;
  try {
    database = globals ? dbDir : decodeSegment(dbDir);
  } catch {
    return undefined;
  }
  return {
    database,
    startedAt,
    id,
    kind: suffix === MANIFEST_SUFFIX ? 'manifest' : 'archive',
    encrypted: suffix.endsWith(AGE_SUFFIX),
    compression: compressionOfKey(suffix),
    base: key.slice(0, key.length - suffix.length),
  };
}
