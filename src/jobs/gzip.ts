import { Transform, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

const gzipAsync = promisify(zlib.gzip);

/** Input per gzip member. The deflate window is 32 KiB, so restarting it every MiB costs well under 1%. */
export const BLOCK_SIZE = 1024 * 1024;

/**
 * gzip on several cores: the input is cut into 1 MiB blocks, each compressed by zlib on libuv's thread pool as
 * its own gzip member, and the members are written in order. A file of several members is plain gzip
 * (RFC 1952 §2.2): `gunzip -c`, zcat, Python and Node read it as one stream. With one thread it is exactly a
 * single zlib gzip stream.
 */
export function createGzipStream(level: number, threads: number): Transform {
  if (threads <= 1) return zlib.createGzip({ level, chunkSize: 128 * 1024 });
  return new ParallelGzip(level, threads);
}

class ParallelGzip extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Blocks being compressed, oldest first; their output is pushed in this order. */
  private readonly inflight: Promise<Buffer>[] = [];
  private blocks = 0;

  constructor(
    private readonly level: number,
    private readonly threads: number,
  ) {
    super({ highWaterMark: BLOCK_SIZE, readableHighWaterMark: BLOCK_SIZE });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < BLOCK_SIZE) {
      callback();
      return;
    }
    this.startBlock();
    // Backpressure: accept more input only while fewer than `threads` blocks are in flight.
    if (this.inflight.length < this.threads) {
      callback();
      return;
    }
    this.pushOldest().then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still makes a valid (empty) gzip file: one member.
    if (this.pendingBytes > 0 || this.blocks === 0) this.startBlock();
    const drain = async (): Promise<void> => {
      while (this.inflight.length > 0) await this.pushOldest();
    };
    drain().then(() => callback(), callback);
  }

  private startBlock(): void {
    const block =
      this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.blocks++;
    const job = gzipAsync(block, { level: this.level });
    job.catch(() => undefined); // observed when it is its turn; never unhandled meanwhile
    this.inflight.push(job);
  }

  private async pushOldest(): Promise<void> {
    const next = this.inflight.shift();
    if (next) this.push(await next);
  }
}
