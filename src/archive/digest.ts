import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** Passes bytes through unchanged while counting them and hashing them with SHA-256. */
export class DigestStream extends Transform {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');
  private hex: string | undefined;

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    callback(null, chunk);
  }

  /** The hex digest; valid once the stream has ended. */
  get sha256(): string {
    this.hex ??= this.hash.digest('hex');
    return this.hex;
  }
}
