/**
 * An archive against its manifest: the stored size, then the bytes as they are read (size, SHA-256), then the SQL
 * inside (its size, pg_dump's completion line). Restore and verify make these checks with the same messages.
 */
import { Transform, Writable, type Duplex, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ChecksumMismatchError, CorruptArchiveError, errorMessage } from '../errors.js';
import type { Manifest } from '../catalog/manifest.js';
import type { Storage } from '../storage/index.js';
import { isGlobalsName } from '../catalog/layout.js';
import { CLUSTER_DUMP_COMPLETE, DUMP_COMPLETE, EndGate } from './gates.js';
import { DigestStream } from './digest.js';
import { archiveCompression, createDecompressor } from './compression.js';
import { decryptStage, type AgeKeys } from './age.js';

/** What was read of an archive so far: the stored bytes, and the SQL they gunzip to. */
export interface ArchiveRead {
  readonly archive?: { readonly bytes: number; readonly sha256: string };
  readonly sql?: { readonly bytes: number; readonly complete: boolean };
}

/** The line a complete dump ends with: pg_dump's, or pg_dumpall's for a server's globals. */
export function completionLine(manifest: Pick<Manifest, 'database'> | undefined): string {
  return manifest && isGlobalsName(manifest.database) ? CLUSTER_DUMP_COMPLETE : DUMP_COMPLETE;
}

/** "backup ID of "DB": " for an archive with a manifest, else "": says which backup a message is about. */
function label(manifest: Manifest | undefined): string {
  return manifest ? `backup ${manifest.id} of "${manifest.database}": ` : '';
}

/**
 * The first thing wrong with what was read (`where` names the archive), or undefined. Without a manifest only the
 * completion line can be checked.
 */
export function checkAgainstManifest(
  manifest: Manifest | undefined,
  where: string,
  read: ArchiveRead,
): ChecksumMismatchError | CorruptArchiveError | undefined {
  const name = `${label(manifest)}${where}`;
  const { archive, sql } = read;
  if (manifest && archive) {
    const expected = manifest.archive;
    if (archive.bytes < expected.bytes) {
      return new CorruptArchiveError(
        `${name} is truncated: read ${archive.bytes} of ${expected.bytes} bytes. Restore another backup (\`pgshelf list\`)`,
      );
    }
    if (archive.bytes > expected.bytes) {
      return new ChecksumMismatchError(
        `${name} is too long: read ${archive.bytes} bytes, the manifest says ${expected.bytes}. ` +
          'Restore another backup (`pgshelf list`)',
      );
    }
    if (archive.sha256 !== expected.sha256) {
      return new ChecksumMismatchError(
        `${name} does not match its manifest: SHA-256 ${archive.sha256}, expected ${expected.sha256} ` +
          `(${expected.bytes} bytes). The archive is damaged; restore another backup (\`pgshelf list\`)`,
      );
    }
  }
  if (manifest && sql && sql.bytes !== manifest.uncompressedBytes) {
    return new CorruptArchiveError(
      `${name} gunzips to ${sql.bytes} bytes of SQL, but the manifest recorded ${manifest.uncompressedBytes}`,
    );
  }
  if (sql && !sql.complete) {
    return new CorruptArchiveError(
      `${name} ends without ${completionLine(manifest) === DUMP_COMPLETE ? 'pg_dump' : 'pg_dumpall'}'s "${completionLine(manifest)}" line: the dump is incomplete; restore another backup`,
    );
  }
  return undefined;
}

/**
 * zlib's errors (Z_DATA_ERROR, Z_BUF_ERROR for a truncated file) and zstd's (ZSTD_error_corruption_detected, ...)
 * mean a damaged archive. (Node's zstd decoder ends a truncated frame quietly: the SQL checks catch that.)
 */
export function asCorruptArchive(
  err: unknown,
  manifest: Manifest | undefined,
  where: string,
): CorruptArchiveError | undefined {
  const code = (err as { code?: string }).code;
  if (!code?.startsWith('Z_') && !code?.startsWith('ZSTD_')) return undefined;
  return new CorruptArchiveError(
    `${label(manifest)}${where} cannot be decompressed (${errorMessage(err)}): it is truncated or damaged; ` +
      'use another backup',
    { cause: err },
  );
}

/** Errors the moment more bytes pass than the manifest says the archive has, instead of at the end. */
export class SizeLimit extends Transform {
  private bytes = 0;
  constructor(
    private readonly limit: number,
    private readonly where: string,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      callback(
        new ChecksumMismatchError(
          `${this.where} is longer than its manifest says (${this.limit} bytes): it was changed after the ` +
            'backup; restore another backup (`pgshelf list`)',
        ),
      );
    } else callback(null, chunk);
  }
}

/** The stored object's size against the manifest's, before a byte is read. */
export async function checkStoredSize(storage: Storage, key: string, manifest: Manifest): Promise<void> {
  const info = await storage.stat(key);
  const where = storage.locate(key);
  if (!info) {
    throw new CorruptArchiveError(`${where} is missing: its manifest is there but the archive is not`);
  }
  if (info.size !== manifest.archive.bytes) {
    throw new ChecksumMismatchError(
      `${where} is ${info.size < manifest.archive.bytes ? 'truncated' : 'too long'}: ${info.size} bytes in ` +
        `storage, the manifest says ${manifest.archive.bytes}. Restore another backup (\`pgshelf list\`)`,
    );
  }
}

/**
 * The stored bytes' checks, made when they end and before gunzip sees the end: a short file is "truncated", not a
 * gzip error, and psql never reads the end of an archive that fails them.
 */
export function archiveGate(manifest: Manifest | undefined, where: string, digest: DigestStream): EndGate {
  return new EndGate(() => checkAgainstManifest(manifest, where, { archive: digest }));
}

/** The SQL's checks, made before its end reaches psql (which then commits). */
export function sqlGate(manifest: Manifest | undefined, where: string): EndGate {
  return new EndGate(
    (g) => checkAgainstManifest(manifest, where, { sql: { bytes: g.bytes, complete: g.tail.complete } }),
    completionLine(manifest),
  );
}

/**
 * The one read path of stored archives, from the stored bytes to the SQL: [size limit] -> SHA-256 -> the stored
 * bytes' checks -> [age decryption] -> gunzip (or zstd). Restore and verify both read through it.
 */
export function archiveReadStages(
  manifest: Manifest | undefined,
  where: string,
  digest: DigestStream,
  age: AgeKeys | undefined,
): Duplex[] {
  const stages: Duplex[] = [];
  if (manifest) stages.push(new SizeLimit(manifest.archive.bytes, where));
  stages.push(digest, archiveGate(manifest, where, digest));
  if (age) stages.push(decryptStage(age, where));
  // `where` ends with the key, so an archive without a manifest is known by its suffix (.zst, .zst.age).
  stages.push(createDecompressor(archiveCompression(manifest, where), where));
  return stages;
}

/**
 * Reads a whole archive and checks it, sending nothing anywhere: restore's --verify-first and the verify job.
 * `digest` and `sql` count the bytes as they pass (for progress reports).
 */
export class ArchiveCheck {
  readonly where: string;
  readonly digest = new DigestStream({ highWaterMark: 1 << 20 });
  readonly sql: EndGate;

  constructor(
    private readonly storage: Storage,
    private readonly key: string,
    private readonly manifest: Manifest | undefined,
    /** The keys of an age-encrypted archive (decryptionFor), else undefined. */
    private readonly age: AgeKeys | undefined,
  ) {
    this.where = storage.locate(key);
    this.sql = sqlGate(manifest, this.where);
  }

  /** Resolves with what was read when every check passed; rejects with the first that failed. */
  async run(signal: AbortSignal): Promise<{ bytes: number; sha256: string; uncompressedBytes: number }> {
    const { manifest, where } = this;
    const stages = archiveReadStages(manifest, where, this.digest, this.age);
    try {
      await pipeline(
        await this.storage.openRead(this.key, { signal }),
        ...(stages as [Duplex]),
        this.sql,
        new Writable({ write: (_chunk, _enc, cb) => cb() }),
        { signal },
      );
    } catch (err) {
      throw asCorruptArchive(err, manifest, where) ?? err;
    }
    return { bytes: this.digest.bytes, sha256: this.digest.sha256, uncompressedBytes: this.sql.bytes };
  }
}
