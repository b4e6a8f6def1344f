/**
 * The archive's compression: gzip (default; parallel members, see gzip.ts) or zstd (Node 22.15 and later). The
 * backup writes with createCompressor(); restore and verify read with createDecompressor() of the format the
 * manifest names (or, for a bare `--key`, its file name's suffix).
 */
import type { Transform } from 'node:stream';
import zlib from 'node:zlib';
import { ConfigError } from '../errors.js';
import { compressionOfKey, type Compression } from '../catalog/layout.js';
import { createGzipStream } from './gzip.js';

export type { Compression } from '../catalog/layout.js';

/** zstd's level when PGSHELF_COMPRESSION=zstd: the zstd command's own default. */
export const ZSTD_LEVEL = 3;

/** The zstd half of node:zlib (Node 22.15 / 23.8 and later), typed here because @types/node 20 lacks it. */
interface ZstdZlib {
  createZstdCompress(options: { params: Record<number, number> }): Transform;
  createZstdDecompress(options?: { chunkSize?: number }): Transform;
  constants: Record<string, number>;
}

function zstd(): ZstdZlib | undefined {
  const z = zlib as unknown as Partial<ZstdZlib>;
  return typeof z.createZstdCompress === 'function' ? (z as ZstdZlib) : undefined;
}

/** Whether this Node's zlib has zstd (22.15 / 23.8 and later). */
export const zstdAvailable = (): boolean => zstd() !== undefined;

/** Refuses zstd on a Node without it, naming the version needed; `what` says what asked, `or` the way out. */
export function requireZstd(what: string, or: string): ZstdZlib {
  const z = zstd();
  if (!z) {
    throw new ConfigError(
      `${what} needs zstd, which Node's zlib has from Node 22.15 (or 23.8) on; this is Node ${process.version}. ` +
        `Upgrade Node, or ${or}`,
    );
  }
  return z;
}

/**
 * The backup's compressor. zstd is one zstd stream compressed on one thread of libuv's pool: at level 3 it costs
 * about 60% of deflate's CPU, so on a 2-core machine pg_dump and the server, not zstd, set the pace. (Node's zstd
 * decoder stops at the end of the first frame, so parallel frames are not an option.)
 */
export function createCompressor(format: Compression, level: number, threads: number): Transform {
  if (format === 'gzip') return createGzipStream(level, threads);
  const z = requireZstd('PGSHELF_COMPRESSION=zstd', 'use PGSHELF_COMPRESSION=gzip (the default)');
  return z.createZstdCompress({
    params: { [z.constants.ZSTD_c_compressionLevel!]: level, [z.constants.ZSTD_c_checksumFlag!]: 1 },
  });
}

/** The decompressor for an archive of `format`. */
export function createDecompressor(format: Compression, where: string): Transform {
  if (format === 'gzip') return zlib.createGunzip({ chunkSize: 128 * 1024 });
  return requireZstd(
    `${where} is zstd-compressed: reading it`,
    `restore it by hand: zstd -dc ${where} | psql -X -v ON_ERROR_STOP=1 -d NEW_DB`,
  ).createZstdDecompress({ chunkSize: 128 * 1024 });
}

/** An archive's format: the manifest's word, else the key's suffix (`.zst` is zstd; anything else gzip). */
export function archiveCompression(
  manifest: { compression: { format: Compression } } | undefined,
  key: string,
) {
  return manifest?.compression.format ?? compressionOfKey(key);
}
