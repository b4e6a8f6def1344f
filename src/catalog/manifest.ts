import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { BackupNotFoundError, ManifestInvalidError, ManifestSignatureError } from '../errors.js';
import type { Storage } from '../storage/index.js';
import {
  AGE_SUFFIX,
  ARCHIVE_SUFFIXES,
  MANIFEST_SUFFIX,
  compressionOfKey,
  parseKey,
  type Compression,
} from './layout.js';

export const MANIFEST_FORMAT = 'pgshelf-backup';
export const MANIFEST_VERSION = 1;
/** Largest manifest read or written: bounds memory against a planted object (~80,000 tables fit). */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;
export const SIGNATURE_PREFIX = 'hmac-sha256:';

const count = z.number().int().nonnegative();
const timestamp = z.iso.datetime({ offset: true });

const DrillSchema = z.looseObject({
  verified: z.boolean(),
  at: timestamp,
  restoreMs: z.number().nonnegative(),
  scratchDatabase: z.string(),
  detail: z.string().optional(),
});

const ManifestSchema = z.looseObject({
  format: z.literal(MANIFEST_FORMAT),
  formatVersion: z.number().int().positive(),
  id: z.string().regex(/^[0-9a-f]{8}$/),
  database: z.string().min(1),
  host: z.string(),
  port: z.number().int().min(0).max(65535),
  serverVersion: z.string(),
  serverVersionNum: count,
  pgDumpVersion: z.string(),
  pgDumpPath: z.string(),
  dumpOptions: z.looseObject({
    noOwner: z.boolean(),
    noPrivileges: z.boolean(),
    globalsOnly: z.boolean().optional(),
    noRolePasswords: z.boolean().optional(),
  }),
  compression: z.discriminatedUnion('format', [
    z.looseObject({
      format: z.literal('gzip'),
      level: z.number().int().min(1).max(9),
      threads: z.number().int().positive().optional(),
    }),
    z.looseObject({ format: z.literal('zstd'), level: z.number().int().min(1).max(22) }),
  ]),
  encryption: z.looseObject({ format: z.literal('age'), recipients: z.array(z.string()) }).nullable(),
  archive: z.looseObject({
    key: z.string().min(1),
    bytes: count,
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  uncompressedBytes: count,
  databaseSize: count,
  slot: z.string().max(64).optional(),
  databaseOwner: z.string().optional(),
  startedAt: timestamp,
  finishedAt: timestamp,
  durationMs: z.number().nonnegative(),
  tables: z.record(z.string(), count).default({}),
  extensions: z.array(z.looseObject({ name: z.string().min(1), schema: z.string().min(1) })).optional(),
  drill: DrillSchema.nullable().default(null),
  drills: z.array(DrillSchema).default([]),
  signature: z.string().optional(),
});

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
  readonly dumpOptions: {
    readonly noOwner: boolean;
    readonly noPrivileges: boolean;
    /** A server's globals: pg_dumpall --globals-only (with --no-role-passwords when that is true). */
    readonly globalsOnly?: boolean;
    readonly noRolePasswords?: boolean;
  };
  readonly compression: { readonly format: Compression; readonly level: number; readonly threads?: number };
  readonly encryption: null | { readonly format: 'age'; readonly recipients: readonly string[] };
  readonly archive: { readonly key: string; readonly bytes: number; readonly sha256: string };
  readonly uncompressedBytes: number;
  readonly databaseSize: number;
  /** The database's owner on the source server (restore-server creates the database with this owner). */
  readonly databaseOwner?: string;
  /** The scheduler's slot (local time, e.g. 2026-11-25T02:00:00) the backup was made for; absent when by hand. */
  readonly slot?: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  /** Rows per table as counted in the dump, keyed by the table name as pg_dump printed it. */
  readonly tables: Readonly<Record<string, number>>;
  /**
   * The database's extensions when it was dumped (absent in manifests of pgshelf before 2026-11-26): a restore
   * creates the untrusted ones as POSTGRES_ADMIN_USER before the archive streams.
   */
  readonly extensions?: readonly { readonly name: string; readonly schema: string }[];
  /** The latest restore drill of this backup, or null. */
  readonly drill: DrillRecord | null;
  /** Every drill, oldest first. */
  readonly drills: readonly DrillRecord[];
  /** `hmac-sha256:<hex>` over canonicalJson(the manifest without this field), when PGSHELF_MANIFEST_KEY is set. */
  readonly signature?: string;
}

/** What reading and writing manifests needs to know: the HMAC key (PGSHELF_MANIFEST_KEY), if any. */
export interface ManifestTrust {
  readonly signingKey?: string | undefined;
}

export const manifestTrust = (config: { readonly manifestKey: string | undefined }): ManifestTrust => ({
  signingKey: config.manifestKey,
});

/** JSON with object keys sorted at every level and no blanks: the bytes a signature covers. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function signManifest(manifest: object, signingKey: string): string {
  const { signature: _drop, ...rest } = manifest as { signature?: unknown };
  const mac = createHmac('sha256', signingKey).update(canonicalJson(rest), 'utf8').digest('hex');
  return SIGNATURE_PREFIX + mac;
}

function checkSignature(raw: Record<string, unknown>, key: string, signingKey: string): void {
  const fix =
    'PGSHELF_MANIFEST_KEY is set, so only manifests signed with it are trusted: if this backup was made ' +
    'before the key was set (or with another key), check it by hand and run this one command without the key, ' +
    'or with the key it was signed with';
  const signature = raw.signature;
  if (signature === undefined) throw new ManifestSignatureError(`manifest ${key} is not signed. ${fix}`);
  const expected = Buffer.from(signManifest(raw, signingKey));
  const given = Buffer.from(typeof signature === 'string' ? signature : '');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new ManifestSignatureError(
      `manifest ${key} has a signature that does not match its content: it was changed after it was written, ` +
        `or signed with another key. ${fix}`,
    );
  }
}

/** The first few schema problems, each naming its field: `drills: expected array, received string`. */
function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`)
    .join('; ');
}

/** The archive a manifest may name: its own sibling, same base name, archive suffix. */
export function siblingArchives(manifestKey: string): string[] {
  const base = manifestKey.endsWith(MANIFEST_SUFFIX)
    ? manifestKey.slice(0, -MANIFEST_SUFFIX.length)
    : manifestKey;
  return ARCHIVE_SUFFIXES.map((suffix) => base + suffix);
}

/**
 * Parses and checks a manifest read from `key`: size, JSON, format and version, signature (when a key is set),
 * schema, and that it describes the backup its own name says (id, database, sibling archive).
 */
export function parseManifest(
  body: string | Buffer,
  key: string,
  trust: ManifestTrust = {},
  where: string = key,
): Manifest {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  if (size > MANIFEST_MAX_BYTES) {
    throw new ManifestInvalidError(
      `manifest ${where} is larger than ${MANIFEST_MAX_BYTES} bytes: not a manifest pgshelf wrote; remove it`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (err) {
    throw new ManifestInvalidError(`manifest ${where} is not valid JSON: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ManifestInvalidError(`${where} is not a pgshelf manifest (not a JSON object)`);
  }
  const o = raw as Record<string, unknown>;
  if (o.format !== MANIFEST_FORMAT) {
    throw new ManifestInvalidError(`${where} is not a pgshelf manifest (format ${JSON.stringify(o.format)})`);
  }
  if (typeof o.formatVersion === 'number' && o.formatVersion > MANIFEST_VERSION) {
    throw new ManifestInvalidError(
      `manifest ${where} has format version ${o.formatVersion}, newer than this pgshelf understands ` +
        `(${MANIFEST_VERSION}): upgrade pgshelf`,
    );
  }
  if (trust.signingKey !== undefined) checkSignature(o, where, trust.signingKey);
  const result = ManifestSchema.safeParse(raw);
  if (!result.success) {
    throw new ManifestInvalidError(`manifest ${where} is invalid: ${describeIssues(result.error)}`);
  }
  const manifest: Manifest = result.data;
  // A manifest speaks only for the archive next to it: never another database's or another backup's.
  const siblings = siblingArchives(key);
  if (!siblings.includes(manifest.archive.key)) {
    throw new ManifestInvalidError(
      `manifest ${where} names the archive ${JSON.stringify(manifest.archive.key)}, which is not its own ` +
        `(${siblings[0]}): refused, nothing was read`,
    );
  }
  if (compressionOfKey(manifest.archive.key) !== manifest.compression.format) {
    throw new ManifestInvalidError(
      `manifest ${where} says the archive is ${manifest.compression.format}-compressed, but its name ` +
        `${JSON.stringify(manifest.archive.key)} says otherwise: refused, nothing was read`,
    );
  }
  // The name says whether the archive is encrypted; so does the manifest, and they must agree.
  if (manifest.archive.key.endsWith(AGE_SUFFIX) !== (manifest.encryption !== null)) {
    throw new ManifestInvalidError(
      `manifest ${where} says its archive is ${manifest.encryption ? '' : 'not '}encrypted, but the archive's ` +
        `name ${JSON.stringify(manifest.archive.key)} says otherwise: refused`,
    );
  }
  const parsed = parseKey(key);
  if (parsed && (parsed.id !== manifest.id || parsed.database !== manifest.database)) {
    throw new ManifestInvalidError(
      `manifest ${where} describes backup ${manifest.id} of "${manifest.database}", not the backup its name ` +
        `says (${parsed.id} of "${parsed.database}"): refused`,
    );
  }
  return manifest;
}

export async function readManifest(
  storage: Storage,
  key: string,
  trust: ManifestTrust = {},
): Promise<Manifest> {
  const body = await storage.getObject(key, { maxBytes: MANIFEST_MAX_BYTES });
  if (!body) throw new BackupNotFoundError(`manifest ${storage.locate(key)} does not exist`);
  return parseManifest(body, key, trust, storage.locate(key));
}

/** Writes a manifest, signed when a key is set (a signature already present is replaced). */
export async function writeManifest(
  storage: Storage,
  key: string,
  manifest: Manifest,
  trust: ManifestTrust = {},
): Promise<void> {
  const { signature: _old, ...unsigned } = manifest;
  const body = trust.signingKey
    ? { ...unsigned, signature: signManifest(unsigned, trust.signingKey) }
    : unsigned;
  const text = JSON.stringify(body, null, 2) + '\n';
  if (Buffer.byteLength(text) > MANIFEST_MAX_BYTES) {
    throw new ManifestInvalidError(
      `the manifest ${storage.locate(key)} would be ${Buffer.byteLength(text)} bytes, more than the ` +
        `${MANIFEST_MAX_BYTES} pgshelf reads back`,
    );
  }
  await storage.putObject(key, text, 'application/json');
}
