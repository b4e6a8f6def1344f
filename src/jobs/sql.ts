/** Transforms over a plain-format SQL dump as it streams to psql. */
import { Transform, type TransformCallback } from 'node:stream';

/** The marker pg_dump writes at the very end of a plain dump; its absence means the dump was cut short. */
export const DUMP_COMPLETE = '-- PostgreSQL database dump complete';

/** Keeps the last bytes of a stream as text, to look for DUMP_COMPLETE at the end. */
export class Tail {
  private text = '';
  constructor(private readonly size = 512) {}
  push(chunk: Buffer): void {
    this.text = (this.text + chunk.toString('latin1', Math.max(0, chunk.length - this.size))).slice(
      -this.size,
    );
  }
  get complete(): boolean {
    return this.text.includes(DUMP_COMPLETE);
  }
}

/**
 * Holds back the end of the stream until `check()` passes: psql commits its single transaction when its input
 * ends, so every verification of the archive must happen before the end reaches it. A failed check errors the
 * stream instead of ending it.
 */
export class EndGate extends Transform {
  bytes = 0;
  readonly tail = new Tail();
  constructor(
    private readonly check: (gate: EndGate) => Error | undefined,
    private readonly onChunk?: (chunk: Buffer) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.tail.push(chunk);
    this.onChunk?.(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    callback(this.check(this) ?? null);
  }
}

const NL = 0x0a;

/** First words of the statements that may tie objects to roles. */
const MAYBE_OWNERSHIP = /^(ALTER |SET SESSION AUTHORIZATION |GRANT |REVOKE )/;
/** Statements that tie objects to roles: dropped by `--no-owner` restores (like pg_restore --no-owner --no-acl). */
const OWNERSHIP =
  /^(ALTER [A-Z][A-Z ]* .* OWNER TO .*;|SET SESSION AUTHORIZATION .*;|GRANT .*;|REVOKE .*;|ALTER DEFAULT PRIVILEGES .*;)$/;

/** Whether a whole SQL line (without its newline) is an ownership or privilege statement. */
export function isOwnershipStatement(line: string): boolean {
  return MAYBE_OWNERSHIP.test(line) && OWNERSHIP.test(line);
}

/**
 * Drops ownership and privilege statements from a plain dump, so that every object belongs to the user running
 * psql. COPY data passes through untouched: only whole SQL lines outside COPY blocks are looked at (pg_dump
 * writes each of these statements on one line).
 */
export class OwnershipFilter extends Transform {
  dropped = 0;
  private inCopy = false;
  /** In a COPY block and at the start of its first line (an empty table's block is just `\.`). */
  private copyFresh = false;
  private carry: Buffer | undefined;

  constructor() {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    try {
      callback(null, this.withoutOwnership(chunk));
    } catch (err) {
      callback(err as Error);
    }
  }

  private withoutOwnership(chunk: Buffer): Buffer {
    const data = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = undefined;
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < data.length) {
      if (this.inCopy) {
        if (this.copyFresh) {
          if (data.length - pos < 3) {
            this.carry = data.subarray(pos);
            break;
          }
          this.copyFresh = false;
          if (data[pos] === 0x5c && data[pos + 1] === 0x2e && data[pos + 2] === NL) {
            out.push(data.subarray(pos, pos + 3));
            pos += 3;
            this.inCopy = false;
            continue;
          }
        }
        // Skip to the end of the COPY block in one search; rows are never looked at.
        const end = data.indexOf('\n\\.\n', pos);
        if (end === -1) {
          // The last 3 bytes wait for the next chunk: the end marker may straddle the two.
          const keep = Math.max(pos, data.length - 3);
          out.push(data.subarray(pos, keep));
          this.carry = data.subarray(keep);
          break;
        }
        out.push(data.subarray(pos, end + 4));
        pos = end + 4;
        this.inCopy = false;
        continue;
      }
      const nl = data.indexOf(NL, pos);
      if (nl === -1) {
        this.carry = data.subarray(pos);
        break;
      }
      const head = data.toString('utf8', pos, Math.min(nl, pos + 32));
      if (MAYBE_OWNERSHIP.test(head) && isOwnershipStatement(data.toString('utf8', pos, nl))) {
        this.dropped++;
      } else {
        out.push(data.subarray(pos, nl + 1));
        if (
          head.startsWith('COPY ') &&
          data.toString('latin1', Math.max(pos, nl - 12), nl) === ' FROM stdin;'
        ) {
          this.inCopy = true;
          this.copyFresh = true;
        }
      }
      pos = nl + 1;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  override _flush(callback: TransformCallback): void {
    const rest = this.carry;
    this.carry = undefined;
    if (rest && rest.length > 0) {
      if (!this.inCopy && isOwnershipStatement(rest.toString('utf8'))) this.dropped++;
      else this.push(rest);
    }
    callback();
  }
}
