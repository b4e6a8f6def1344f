/**
 * Storage keys:
 *   <database>/<YYYY>/<MM>/<database>_<YYYYMMDDTHHMMSSZ>_<id>.sql.gz        (.sql.gz.age when encrypted)
 *   <database>/<YYYY>/<MM>/<database>_<YYYYMMDDTHHMMSSZ>_<id>.manifest.json
 * relative to the storage prefix. Database names may hold any character PostgreSQL allows; the few that cannot
 * stand in a path segment are percent-encoded.
 */
import { randomBytes } from 'node:crypto';

export const ARCHIVE_SUFFIX = '.sql.gz';
export const ENCRYPTED_SUFFIX = '.sql.gz.age';
export const MANIFEST_SUFFIX = '.manifest.json';

/** Percent-encodes what a file name or key segment cannot hold: '/', '\', '%', control characters, '.' and '..'. */
export function encodeSegment(name: string): string {
  // eslint-disable-next-line no-control-regex
  const encoded = name.replace(/[%/\\\u0000-\u001f\u007f]/g, (c) =>
    Array.from(Buffer.from(c, 'utf8'), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
  if (encoded === '.' || encoded === '..') return encoded.replace(/\./g, '%2E');
  return encoded;
}

export function decodeSegment(segment: string): string {
  return decodeURIComponent(segment);
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

export function backupKeys(database: string, startedAt: Date, id: string, encrypted = false): BackupKeys {
  const db = encodeSegment(database);
  const iso = startedAt.toISOString();
  const base = `${db}/${iso.slice(0, 4)}/${iso.slice(5, 7)}/${db}_${formatTimestamp(startedAt)}_${id}`;
  return {
    base,
    archive: base + (encrypted ? ENCRYPTED_SUFFIX : ARCHIVE_SUFFIX),
    manifest: base + MANIFEST_SUFFIX,
  };
}

/** Folder (key prefix, with trailing slash) that holds all of one database's backups. */
export function databasePrefix(database: string): string {
  return `${encodeSegment(database)}/`;
}

export interface ParsedKey {
  readonly database: string;
  readonly startedAt: Date;
  readonly id: string;
  readonly kind: 'archive' | 'manifest';
  readonly encrypted: boolean;
  readonly base: string;
}

const KEY_RE =
  /^(.+)\/(\d{4})\/(\d{2})\/(.+)_(\d{8}T\d{6}Z)_([0-9a-f]{8})(\.sql\.gz\.age|\.sql\.gz|\.manifest\.json)$/;

/** Parses a key written by backupKeys; undefined for anything else (foreign files are left alone). */
export function parseKey(key: string): ParsedKey | undefined {
  const m = KEY_RE.exec(key);
  if (!m) return undefined;
  const [, dbDir, , , dbFile, ts, id, suffix] = m;
  if (!dbDir || !dbFile || !ts || !id || !suffix || dbDir !== dbFile || dbDir.includes('/')) return undefined;
  const startedAt = parseTimestamp(ts);
  if (!startedAt) return undefined;
  let database: string;
  try {
    database = decodeSegment(dbDir);
  } catch {
    return undefined;
  }
  return {
    database,
    startedAt,
    id,
    kind: suffix === MANIFEST_SUFFIX ? 'manifest' : 'archive',
    encrypted: suffix === ENCRYPTED_SUFFIX,
    base: key.slice(0, key.length - suffix.length),
  };
}
