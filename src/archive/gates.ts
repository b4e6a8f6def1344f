/** Gates over a plain-format SQL dump: nothing reaches psql's end of input until the archive checks pass. */
import { Transform, type TransformCallback } from 'node:stream';

/** The marker pg_dump writes at the very end of a plain dump; its absence means the dump was cut short. */
export const DUMP_COMPLETE = '-- PostgreSQL database dump complete';
/** pg_dumpall's own (a server's globals, `pg_dumpall --globals-only`). */
export const CLUSTER_DUMP_COMPLETE = '-- PostgreSQL database cluster dump complete';

/** Keeps the last bytes of a stream as text, to look for the completion line (DUMP_COMPLETE) at the end. */
export class Tail {
  private text = '';
  constructor(
    private readonly marker = DUMP_COMPLETE,
    private readonly size = 512,
  ) {}
  push(chunk: Buffer): void {
    this.text = (this.text + chunk.toString('latin1', Math.max(0, chunk.length - this.size))).slice(
      -this.size,
    );
  }
  get complete(): boolean {
    return this.text.includes(this.marker);
  }
}

/**
 * Holds back the end of the stream until `check()` passes: psql commits its single transaction when its input
 * ends, so every verification of the archive must happen before the end reaches it. A failed check errors the
 * stream instead of ending it.
 */
export class EndGate extends Transform {
  bytes = 0;
  readonly tail: Tail;
  constructor(
    private readonly check: (gate: EndGate) => Error | undefined,
    marker = DUMP_COMPLETE,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.tail = new Tail(marker);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.tail.push(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    callback(this.check(this) ?? null);
  }
}
