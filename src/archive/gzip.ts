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
  /**
   * Block buffers are reused: allocating a fresh MiB per block leaves hundreds of MiB of dead buffers for the
   * garbage collector, which V8 lets pile up (tens of MiB of RSS) before it collects them.
   */
  private readonly free: Buffer[] = [];
  private block: Buffer;
  private filled = 0;
  /** Blocks being compressed, oldest first; their output is pushed in this order. */
  private readonly inflight: { buffer: Buffer; output: Promise<Buffer> }[] = [];
  private blocks = 0;

  constructor(
    private readonly level: number,
    private readonly threads: number,
  ) {
    super({ highWaterMark: BLOCK_SIZE, readableHighWaterMark: BLOCK_SIZE });
    this.block = Buffer.allocUnsafe(BLOCK_SIZE);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.fill(chunk).then(() => callback(), callback);
  }

  private async fill(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const n = chunk.copy(this.block, this.filled, offset);
      this.filled += n;
      offset += n;
      if (this.filled === BLOCK_SIZE) {
        this.startBlock();
        // Backpressure: take more input only while fewer than `threads` blocks are in flight.
        while (this.inflight.length >= this.threads) await this.pushOldest();
        this.block = this.free.pop() ?? Buffer.allocUnsafe(BLOCK_SIZE);
      }
    }
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still makes a valid (empty) gzip file: one member.
    if (this.filled > 0 || this.blocks === 0) this.startBlock();
    const drain = async (): Promise<void> => {
      while (this.inflight.length > 0) await this.pushOldest();
    };
    drain().then(() => callback(), callback);
  }

  private startBlock(): void {
    const buffer = this.block;
    const output = gzipAsync(buffer.subarray(0, this.filled), { level: this.level });
    output.catch(() => undefined); // observed when it is its turn; never unhandled meanwhile
    this.inflight.push({ buffer, output });
    this.filled = 0;
    this.blocks++;
  }

  private async pushOldest(): Promise<void> {
    const next = this.inflight.shift();
    if (!next) return;
    const out = await next.output;
    this.free.push(next.buffer); // zlib is done reading it
    this.push(out);
  }
}
