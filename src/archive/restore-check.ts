/** Checks a restore makes on an archive before and while its SQL is sent: nothing unverified is applied. */
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { ChecksumMismatchError, CorruptArchiveError, errorMessage } from '../errors.js';
import type { Manifest } from '../catalog/manifest.js';
import type { Storage } from '../storage/index.js';
import { DUMP_COMPLETE, EndGate } from './gates.js';
import { DigestStream } from './digest.js';

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
 * Reads the whole archive before any SQL is sent: its size and SHA-256 against the manifest (when there is one),
 * that it gunzips to the end, and pg_dump's completion line. Returns the SQL's size.
 */
export async function verifyArchive(
  storage: Storage,
  key: string,
  manifest: Manifest | undefined,
  signal: AbortSignal,
): Promise<number> {
  const where = storage.locate(key);
  const digest = new DigestStream({ highWaterMark: 1 << 20 });
  const sql = new EndGate(() => undefined);
  const stages: (Transform | Writable)[] = [digest];
  if (manifest) stages.unshift(new SizeLimit(manifest.archive.bytes, where));
  try {
    await pipeline(
      await storage.openRead(key, { signal }),
      ...(stages as [Transform]),
      createGunzip({ chunkSize: 128 * 1024 }),
      sql,
      new Writable({ write: (_chunk, _enc, cb) => cb() }),
      { signal },
    );
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('Z_')) {
      throw new CorruptArchiveError(
        `${where} cannot be decompressed (${(err as Error).message}): it is truncated or damaged; use another backup`,
        { cause: err },
      );
    }
    throw err;
  }
  if (manifest && (digest.bytes !== manifest.archive.bytes || digest.sha256 !== manifest.archive.sha256)) {
    throw new ChecksumMismatchError(
      `${where} does not match its manifest: read ${digest.bytes} bytes with SHA-256 ${digest.sha256}, expected ` +
        `${manifest.archive.bytes} bytes with SHA-256 ${manifest.archive.sha256}. Restore another backup`,
    );
  }
  if (!sql.tail.complete) {
    throw new CorruptArchiveError(
      `${where} ends without pg_dump's "${DUMP_COMPLETE}" line: the dump is incomplete; restore another backup`,
    );
  }
  return sql.bytes;
}

/** zlib's errors (Z_DATA_ERROR, Z_BUF_ERROR for a truncated file) mean a damaged archive. */
export function asCorruptArchive(err: unknown): CorruptArchiveError | undefined {
  if (!(err as { code?: string }).code?.startsWith('Z_')) return undefined;
  return new CorruptArchiveError(
    `the archive cannot be decompressed (${errorMessage(err)}): it is truncated or damaged; use another backup`,
    { cause: err },
  );
}
