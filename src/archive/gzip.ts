import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

/** Input per gzip member. The deflate window is 32 KiB, so restarting it every MiB costs well under 1%. */
export const BLOCK_SIZE = 1024 * 1024;

/** Compresses one block, on libuv's thread pool, into a self-contained frame (gzip member, zstd frame). */
export type BlockCodec = (block: Buffer) => Promise<Buffer>;

/**
 * One gzip member per block. zlib's output chunk stays at its default (16 KiB): measured side by side on 2 cores
 * (a 445 MB dump, three rounds), one 256 KiB chunk per block, a tenth of the callbacks, made backups 1.14x slower
 * and 64 KiB 1.16x; the callbacks cost less than the larger buffers do.
 */
export function gzipBlock(level: number): BlockCodec {
  const options = { level };
  return (block) =>
    new Promise((resolve, reject) =>
      zlib.gzip(block, options, (err, out) => (err ? reject(err) : resolve(out))),
    );
}

/**
 * gzip on several cores: the input is cut into 1 MiB blocks, each compressed by zlib on libuv's thread pool as
 * its own gzip member, and the members are written in order. A file of several members is plain gzip
 * (RFC 1952 §2.2): `gunzip -c`, zcat, Python and Node read it as one stream. With one thread it is exactly a
 * single zlib gzip stream.
 */
export function createGzipStream(level: number, threads: number): Transform {
  if (threads <= 1) return zlib.createGzip({ level, chunkSize: 128 * 1024 });
  return new BlockCompressor(gzipBlock(level), threads);
}

/**
 * Cuts its input into blocks, compresses up to `threads` of them at once with `codec`, and pushes the outputs in
 * input order. Up to `threads` more blocks are read ahead while those compress, so pg_dump (and the server
 * behind it) keep producing instead of waiting for a compressor to finish: on a machine with few cores the
 * dump's producer and the compressors then share the cores instead of taking turns. Measured side by side on
 * 2 cores (445 MB dump, three rounds): 0.82x the wall time of compressing with no block read ahead; six blocks
 * ahead instead of two, or three compressing, gained nothing beyond the noise.
 */
export class BlockCompressor extends Transform {
  /**
   * Block buffers are reused: allocating a fresh MiB per block leaves hundreds of MiB of dead buffers for the
   * garbage collector, which V8 lets pile up (tens of MiB of RSS) before it collects them.
   */
  private readonly free: Buffer[] = [];
  private block: Buffer;
  private filled = 0;
  /** Blocks in input order: compressing (`output` set) or read ahead, waiting for a free thread. */
  private readonly queue: { buffer: Buffer; length: number; output?: Promise<Buffer> }[] = [];
  private compressing = 0;
  private blocks = 0;

  constructor(
    private readonly codec: BlockCodec,
    private readonly threads: number,
  ) {
    // The blocks read ahead are the buffer; a compressed block waits in the queue, not on the readable side.
    super({ highWaterMark: 64 * 1024 });
    this.block = Buffer.allocUnsafe(BLOCK_SIZE);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    let offset = 0;
    while (offset < chunk.length) {
      const n = chunk.copy(this.block, this.filled, offset);
      this.filled += n;
      offset += n;
      if (this.filled === BLOCK_SIZE) {
        this.enqueue();
        if (this.queue.length >= 2 * this.threads) {
          // Backpressure: take more input once the oldest block is out.
          const rest = chunk.subarray(offset);
          this.pushOldest().then(() => this._transform(rest, _enc, callback), callback);
          return;
        }
      }
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still makes a valid (empty) archive: one member.
    if (this.filled > 0 || this.blocks === 0) this.enqueue();
    const drain = async (): Promise<void> => {
      while (this.queue.length > 0) await this.pushOldest();
    };
    drain().then(() => callback(), callback);
  }

  private enqueue(): void {
    this.queue.push({ buffer: this.block, length: this.filled });
    this.block = this.free.pop() ?? Buffer.allocUnsafe(BLOCK_SIZE);
    this.filled = 0;
    this.blocks++;
    this.startWaiting();
  }

  /** Starts the oldest blocks that wait, while fewer than `threads` compress. */
  private startWaiting(): void {
    for (const entry of this.queue) {
      if (this.compressing >= this.threads) return;
      if (entry.output) continue;
      this.compressing++;
      entry.output = this.codec(entry.buffer.subarray(0, entry.length)).finally(() => {
        this.compressing--;
        this.startWaiting();
      });
      entry.output.catch(() => undefined); // observed when it is its turn; never unhandled meanwhile
    }
  }

  private async pushOldest(): Promise<void> {
    const next = this.queue[0];
    if (!next) return;
    if (!next.output) this.startWaiting();
    const out = await next.output;
    this.queue.shift();
    this.free.push(next.buffer); // the codec is done reading it
    if (out) this.push(out);
  }
}
