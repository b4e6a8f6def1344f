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

const IDENT = '("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)';
/** pg_dump's lines for an extension and its schema, which a restore may have created before the stream. */
const EXTENSION_LINE = new RegExp(
  `^(?:CREATE EXTENSION IF NOT EXISTS ${IDENT} WITH SCHEMA ${IDENT};|COMMENT ON EXTENSION ${IDENT} IS .*;)$`,
);
const SCHEMA_LINE = new RegExp(`^CREATE SCHEMA ${IDENT};$`);
const unquote = (id: string): string =>
  id.startsWith('"') ? id.slice(1, -1).replace(/""/g, '"') : id.toLowerCase();

/** Extensions (and schemas made for them) created before the stream, whose lines the stream then skips. */
export interface PreCreatedObjects {
  readonly extensions: ReadonlySet<string>;
  readonly schemas: ReadonlySet<string>;
}

/**
 * Whether a whole SQL line is pg_dump's `CREATE EXTENSION` or `COMMENT ON EXTENSION` of one of `created`'s
 * extensions, or its `CREATE SCHEMA` of one of `created`'s schemas.
 */
export function isPreCreatedLine(line: string, created: PreCreatedObjects): boolean {
  const ext = EXTENSION_LINE.exec(line);
  if (ext) return created.extensions.has(unquote(ext[1] ?? ext[3] ?? ''));
  const schema = SCHEMA_LINE.exec(line);
  return schema !== null && created.schemas.has(unquote(schema[1] ?? ''));
}

/** pg_dump's own `\restrict KEY` / `\unrestrict KEY` lines (PostgreSQL 17.6, 16.10, 15.14, 14.19, 13.22 and later). */
const RESTRICT_LINE = /^\\(?:un)?restrict [0-9A-Za-z]{1,128}$/;
/** Longest line held back until its end is seen; longer lines stream (psql acts on a line only at its newline). */
const HOLD_LIMIT = 1 << 20;
/** Ownership statements are one short line each; longer lines are never looked at as such. */
const OWNER_LINE_LIMIT = 64 * 1024;
const META_LINE_LIMIT = 256;

/**
 * What a SqlGuard in split mode emits instead of bytes, for a restore on several sessions: whole SQL lines (and the
 * pieces of a line longer than 1 MiB), each COPY statement line, its rows cut at row ends, and its end.
 */
export type Piece =
  | {
      readonly kind: 'sql';
      readonly bytes: Buffer;
      /** The archive's line this piece starts on. */
      readonly line: number;
      /** After it, no statement is open: what came since the last boundary can run on its own. */
      readonly boundary: boolean;
      /** Statements that start on this line. */
      readonly statements: number;
    }
  | {
      readonly kind: 'copy';
      /** The line, `COPY table (columns) FROM stdin;` and its newline. */
      readonly bytes: Buffer;
      readonly line: number;
      /** The line holds the COPY statement only and starts after a boundary: it can be sent to any session. */
      readonly alone: boolean;
    }
  | {
      readonly kind: 'rows';
      readonly bytes: Buffer;
      /** It ends at the end of a row. */
      readonly whole: boolean;
    }
  | { readonly kind: 'copyEnd' };

const END_MARKER = '\\.\r';

/**
 * Lets only SQL reach psql. A streaming lexer that follows psql's own: it finds every backslash psql would read
 * as a meta-command (outside quotes, comments and COPY data) and fails the stream before psql gets that line's
 * newline; drops pg_dump's `\restrict`/`\unrestrict` lines (psql gets its own, with a key the archive cannot
 * know); refuses top-level transaction control and cluster-wide statements, which a one-database pg_dump never
 * writes; refuses text whose meaning depends on settings the archive could change (standard_conforming_strings,
 * a client encoding whose characters hide a backslash). With `noOwner`, drops ownership and privilege lines; with
 * `preCreated`, the lines that would create (or comment on) what the restore created before the stream.
 * Memory is bounded (a line is held up to 1 MiB) and time linear, whatever the line lengths and chunking.
 */
export class SqlGuard extends SqlLexer {
  /** Lines dropped (`\restrict` lines, ownership lines with `noOwner`, pre-created objects' lines). */
  dropped = 0;
  /** Largest number of bytes held back at once (for tests: bounded memory). */
  maxHeld = 0;
  private started = false;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private streaming = false;
  private readonly maxStatement: number;
  private readonly split: boolean;
  // Split mode: the line the held or streamed SQL piece starts on, whether the current line started after a
  // boundary, and the start of a COPY line that may be its end marker.
  private pieceLine = 1;
  private lineFresh = false;
  private copyTail: Buffer | undefined;
  constructor(
    private readonly options: {
      noOwner?: boolean;
      restrictKey?: string;
      maxStatementBytes?: number;
      preCreated?: PreCreatedObjects;
      /** Emit Piece objects instead of bytes (no `\restrict` line: each session gets its own). */
      split?: boolean;
    } = {},
  ) {
    super(
      options.split
        ? { readableObjectMode: true, readableHighWaterMark: 16, writableHighWaterMark: 1 << 20 }
        : { highWaterMark: 1 << 20 },
    );
    this.split = options.split === true;
    this.maxStatement = options.maxStatementBytes ?? MAX_STATEMENT_BYTES;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    try {
      if (!this.started) {
        this.started = true;
        if (this.options.restrictKey && !this.split) {
          this.push(Buffer.from(`\\restrict ${this.options.restrictKey}\n`));
        }
      }
      this.scan(chunk);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (!this.started && this.options.restrictKey && !this.split) {
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
        // Only a line starting with a backslash can be the end marker: no string is made for the others.
        if (this.lineBytes < 3 && (this.lineBytes === 0 ? chunk[i] === 0x5c : this.copyHead !== '')) {
          this.copyHead += chunk.toString('latin1', i, Math.min(end, i + 3 - this.lineBytes));
        }
        this.lineBytes += end - i;
        if (nl === -1) {
          if (this.split) this.splitRows(chunk, lineStart, i, n);
          else this.out(chunk.subarray(lineStart, n));
          return;
        }
        const done =
          (this.lineBytes === 2 && this.copyHead === '\\.') ||
          (this.lineBytes === 3 && this.copyHead === '\\.\r');
        this.copyHead = '';
        this.lineBytes = 0;
        this.line++;
        const lineAt = i;
        i = nl + 1;
        if (done) {
          this.state = INIT;
          if (this.split) this.splitEnd(chunk, lineStart, lineAt);
          else this.out(chunk.subarray(lineStart, i));
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
      if (this.state === COPY_DATA && this.split) this.splitRows(chunk, lineStart, n, n);
      else if (this.state === COPY_DATA) this.out(rest);
      else if (this.streaming) this.sqlOut([rest], false);
      else this.hold(rest);
    }
  }

  private startLine(c: number): void {
    this.lineKind = 'sql';
    this.lineStmts = 0;
    this.endedAtSemicolon = false;
    const fresh = (this.state === INIT || this.state === XQS) && this.tokens === 0 && this.paren === 0;
    this.lineFresh = fresh && this.psqlDepth === 0;
    this.pieceLine = this.line;
    if (fresh && c === 0x5c) this.lineKind = 'meta';
    else if (fresh && this.options.noOwner && (c === 0x41 || c === 0x53 || c === 0x47 || c === 0x52))
      this.lineKind = 'owner';
    else if (fresh && c === 0x43 && this.options.preCreated) this.lineKind = 'created';
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
      this.sqlOut(this.held, false);
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
      this.sqlOut(pieces, true);
    } else if (kind === 'meta') {
      const line = Buffer.concat(pieces)
        .toString('utf8')
        .replace(/\r?\n$/, '');
      if (!RESTRICT_LINE.test(line))
        this.fail(`is a psql meta-command (${JSON.stringify(line.slice(0, 24))})`);
      this.state = INIT;
      this.dropped++;
    } else if (kind === 'owner' && isOwnershipStatement(this.wholeStatement(pieces))) {
      this.dropped++;
    } else if (
      kind === 'created' &&
      this.options.preCreated &&
      isPreCreatedLine(this.wholeStatement(pieces), this.options.preCreated)
    ) {
      this.dropped++;
    } else {
      this.sqlOut(pieces, true);
    }
    if (!atEnd) this.line++;
    if (this.copyNext) {
      this.copyNext = false;
      this.state = COPY_DATA;
    }
  }

  /** The line's text when it holds exactly one whole statement (short, as droppable lines are), else ''. */
  private wholeStatement(pieces: Buffer[]): string {
    if (this.lineStmts !== 1 || !this.endedAtSemicolon || this.tokens !== 0) return '';
    if (pieces.reduce((a, p) => a + p.length, 0) > OWNER_LINE_LIMIT) return '';
    return Buffer.concat(pieces).toString('utf8').replace(/\n$/, '');
  }

  /** SQL text out: bytes, or in split mode one piece (`ends`: the line ends with it). */
  private sqlOut(pieces: Buffer[], ends: boolean): void {
    if (!this.split) {
      for (const p of pieces) this.out(p);
      return;
    }
    const bytes = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
    const line = this.pieceLine;
    if (ends && this.copyNext) {
      this.push({ kind: 'copy', bytes, line, alone: this.lineFresh && this.lineStmts === 1 } satisfies Piece);
      return;
    }
    const boundary =
      ends && this.tokens === 0 && this.paren === 0 && this.state === INIT && this.psqlDepth === 0;
    const statements = ends ? this.lineStmts : 0;
    if (bytes.length > 0) {
      this.push({ kind: 'sql', bytes, line, boundary, statements } satisfies Piece);
    }
  }

  /** Split mode: COPY rows [from, partialAt) end at a row's end; [partialAt, end) is the start of a row. */
  private splitRows(chunk: Buffer, from: number, partialAt: number, end: number): void {
    if (partialAt > from) {
      this.flushTail();
      this.push({ kind: 'rows', bytes: chunk.subarray(from, partialAt), whole: true } satisfies Piece);
    }
    if (partialAt >= end) return;
    const part = chunk.subarray(partialAt, end);
    // A line that may still become the end marker `\.` is held (at most 3 bytes): each session gets its own.
    if (this.copyHead !== '' && this.lineBytes <= 3 && END_MARKER.startsWith(this.copyHead)) {
      this.copyTail = this.copyTail ? Buffer.concat([this.copyTail, part]) : Buffer.from(part);
    } else {
      this.flushTail();
      this.push({ kind: 'rows', bytes: part, whole: false } satisfies Piece);
    }
  }

  /** Split mode: the rows [from, markerAt) and then the end of the COPY block (its marker line is dropped). */
  private splitEnd(chunk: Buffer, from: number, markerAt: number): void {
    if (markerAt > from) {
      this.flushTail();
      this.push({ kind: 'rows', bytes: chunk.subarray(from, markerAt), whole: true } satisfies Piece);
    } else this.copyTail = undefined;
    this.push({ kind: 'copyEnd' } satisfies Piece);
  }

  private flushTail(): void {
    if (!this.copyTail) return;
    this.push({ kind: 'rows', bytes: this.copyTail, whole: false } satisfies Piece);
    this.copyTail = undefined;
  }
}
