/** Transforms over a plain-format SQL dump as it streams to psql. */
import type { TransformCallback } from 'node:stream';
import { COPY_DATA, INIT, MAX_STATEMENT_BYTES, META, SqlLexer, XQS } from './sql-lexer.js';

/** Statements that tie objects to roles: dropped by `--no-owner` restores (like pg_restore --no-owner --no-acl). */
const OWNERSHIP =
  /^(ALTER [A-Z][A-Z ]* .* OWNER TO .*;|SET SESSION AUTHORIZATION .*;|GRANT .*;|REVOKE .*;|ALTER DEFAULT PRIVILEGES .*;)$/;

/** Whether a whole SQL line (without its newline) is an ownership or privilege statement. */
export function isOwnershipStatement(line: string): boolean {
  return /^(ALTER |SET SESSION AUTHORIZATION |GRANT |REVOKE )/.test(line) && OWNERSHIP.test(line);
}

/** pg_dump's own `\restrict KEY` / `\unrestrict KEY` lines (PostgreSQL 17.6, 16.10, 15.14, 14.19, 13.22 and later). */
const RESTRICT_LINE = /^\\(?:un)?restrict [0-9A-Za-z]{1,128}$/;
/** Longest line held back until its end is seen; longer lines stream (psql acts on a line only at its newline). */
const HOLD_LIMIT = 1 << 20;
/** Ownership statements are one short line each; longer lines are never looked at as such. */
const OWNER_LINE_LIMIT = 64 * 1024;
const META_LINE_LIMIT = 256;

/**
 * Lets only SQL reach psql. A streaming lexer that follows psql's own: it finds every backslash psql would read
 * as a meta-command (outside quotes, comments and COPY data) and fails the stream before psql gets that line's
 * newline; drops pg_dump's `\restrict`/`\unrestrict` lines (psql gets its own, with a key the archive cannot
 * know); refuses top-level transaction control and cluster-wide statements, which a one-database pg_dump never
 * writes; refuses text whose meaning depends on settings the archive could change (standard_conforming_strings,
 * a client encoding whose characters hide a backslash). With `noOwner`, drops ownership and privilege lines.
 * Memory is bounded (a line is held up to 1 MiB) and time linear, whatever the line lengths and chunking.
 */
export class SqlGuard extends SqlLexer {
  /** Lines dropped (`\restrict` lines, and ownership lines with `noOwner`). */
  dropped = 0;
  /** Largest number of bytes held back at once (for tests: bounded memory). */
  maxHeld = 0;
  private started = false;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private streaming = false;
  private readonly maxStatement: number;
  constructor(
    private readonly options: { noOwner?: boolean; restrictKey?: string; maxStatementBytes?: number } = {},
  ) {
    super({ highWaterMark: 1 << 20 });
    this.maxStatement = options.maxStatementBytes ?? MAX_STATEMENT_BYTES;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    try {
      if (!this.started) {
        this.started = true;
        if (this.options.restrictKey) this.push(Buffer.from(`\\restrict ${this.options.restrictKey}\n`));
      }
      this.scan(chunk);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (!this.started && this.options.restrictKey) {
        this.push(Buffer.from(`\\restrict ${this.options.restrictKey}\n`));
      }
      if (this.state !== COPY_DATA) {
        // psql sends an unterminated last statement when its input ends: judge it as if a newline followed.
        const partial = this.lineBytes > 0;
        this.scanByte(0x0a);
        if (partial) this.endLine(this.held, true);
        if (this.tokens > 0 && this.wordsOpen) this.closeWords();
      }
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  private scan(chunk: Buffer): void {
    const nulAt = chunk.indexOf(0);
    let lineStart = 0;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === COPY_DATA) {
        // Rows are data: only the end marker, a line `\.` (psql also takes `\.\r`), is looked for.
        const nl = chunk.indexOf(0x0a, i);
        const end = nl === -1 ? n : nl;
        if (nulAt >= i && nulAt < end) this.fail('has a NUL byte');
        if (this.lineBytes < 3)
          this.copyHead += chunk.toString('latin1', i, Math.min(end, i + 3 - this.lineBytes));
        this.lineBytes += end - i;
        if (nl === -1) {
          this.out(chunk.subarray(lineStart, n));
          return;
        }
        const done =
          (this.lineBytes === 2 && this.copyHead === '\\.') ||
          (this.lineBytes === 3 && this.copyHead === '\\.\r');
        this.copyHead = '';
        this.lineBytes = 0;
        this.line++;
        i = nl + 1;
        if (done) {
          this.state = INIT;
          this.out(chunk.subarray(lineStart, i));
          lineStart = i;
        }
        continue;
      }
      const c = chunk[i]!;
      if (this.lineBytes === 0 && this.heldBytes === 0 && !this.streaming) this.startLine(c);
      this.lineBytes++;
      if (++this.statementBytes > this.maxStatement) {
        this.fail(
          `holds a statement of more than ${this.maxStatement / 1048576} MiB, which psql would hold in memory ` +
            'whole (pg_dump writes data as COPY rows)',
        );
      }
      this.scanByte(c);
      i++;
      if (c === 0x0a) {
        const piece = chunk.subarray(lineStart, i);
        this.endLine(this.held.length > 0 ? [...this.held, piece] : [piece], false);
        lineStart = i;
      }
    }
    // The rest of the chunk belongs to an unfinished line: hold it, or stream it when the line is long.
    if (lineStart < n) {
      const rest = chunk.subarray(lineStart, n);
      if (this.state === COPY_DATA || this.streaming) this.out(rest);
      else this.hold(rest);
    }
  }

  private startLine(c: number): void {
    this.lineKind = 'sql';
    this.lineStmts = 0;
    this.endedAtSemicolon = false;
    const fresh = (this.state === INIT || this.state === XQS) && this.tokens === 0 && this.paren === 0;
    if (fresh && c === 0x5c) this.lineKind = 'meta';
    else if (fresh && this.options.noOwner && (c === 0x41 || c === 0x53 || c === 0x47 || c === 0x52))
      this.lineKind = 'owner';
    else if (fresh && c === 0x42 && !this.blobs && this.atomic === 0) this.lineKind = 'begin';
    if (this.lineKind === 'meta') this.state = META;
  }

  private hold(piece: Buffer): void {
    this.held.push(piece.length < 4096 ? Buffer.from(piece) : piece);
    this.heldBytes += piece.length;
    this.maxHeld = Math.max(this.maxHeld, this.heldBytes);
    if (this.lineKind === 'meta' && this.heldBytes > META_LINE_LIMIT) this.fail('is a psql meta-command');
    if (this.heldBytes > HOLD_LIMIT && (this.blobs || this.deferredBegin)) {
      this.fail("has a line longer than 1 MiB inside pg_dump's large-object block");
    }
    if (this.heldBytes > HOLD_LIMIT) {
      // Too long to be a line pgshelf drops; psql does nothing with it before its newline arrives.
      for (const b of this.held) this.push(b);
      this.held = [];
      this.heldBytes = 0;
      this.streaming = true;
    }
  }

  private out(piece: Buffer): void {
    if (piece.length > 0) this.push(piece);
  }

  private endLine(pieces: Buffer[], atEnd: boolean): void {
    const streamed = this.streaming;
    const kind = this.lineKind;
    this.held = [];
    this.heldBytes = 0;
    this.streaming = false;
    this.lineKind = 'sql';
    this.lineBytes = 0;
    const blobLine = !streamed && (this.deferredBegin || this.blobs) ? this.blobLine(pieces) : 'keep';
    if (blobLine === 'drop') {
      this.dropped++;
    } else if (streamed) {
      for (const p of pieces) this.out(p);
    } else if (kind === 'meta') {
      const line = Buffer.concat(pieces)
        .toString('utf8')
        .replace(/\r?\n$/, '');
      if (!RESTRICT_LINE.test(line))
        this.fail(`is a psql meta-command (${JSON.stringify(line.slice(0, 24))})`);
      this.state = INIT;
      this.dropped++;
    } else if (
      kind === 'owner' &&
      this.lineStmts === 1 &&
      this.endedAtSemicolon &&
      this.tokens === 0 &&
      pieces.reduce((a, p) => a + p.length, 0) <= OWNER_LINE_LIMIT &&
      isOwnershipStatement(Buffer.concat(pieces).toString('utf8').replace(/\n$/, ''))
    ) {
      this.dropped++;
    } else {
      for (const p of pieces) this.out(p);
    }
    if (!atEnd) this.line++;
    if (this.copyNext) {
      this.copyNext = false;
      this.state = COPY_DATA;
    }
  }

  /** A line in or around pg_dump's large-object block: its BEGIN and COMMIT are dropped, the rest checked. */
}
