/** Transforms over a plain-format SQL dump as it streams to psql. */
import { Transform, type TransformCallback } from 'node:stream';
import { UnsafeArchiveError } from '../errors.js';

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

/** Statements that tie objects to roles: dropped by `--no-owner` restores (like pg_restore --no-owner --no-acl). */
const OWNERSHIP =
  /^(ALTER [A-Z][A-Z ]* .* OWNER TO .*;|SET SESSION AUTHORIZATION .*;|GRANT .*;|REVOKE .*;|ALTER DEFAULT PRIVILEGES .*;)$/;

/** Whether a whole SQL line (without its newline) is an ownership or privilege statement. */
export function isOwnershipStatement(line: string): boolean {
  return /^(ALTER |SET SESSION AUTHORIZATION |GRANT |REVOKE )/.test(line) && OWNERSHIP.test(line);
}

/** pg_dump's own `\restrict KEY` / `\unrestrict KEY` lines (PostgreSQL 17.6, 16.10, 15.14, 14.19, 13.22 and later). */
const RESTRICT_LINE = /^\\(?:un)?restrict [0-9A-Za-z]{1,128}$/;
const IDENT = '(?:"(?:[^"]|"")+"|[A-Za-z_\\u0080-\\uffff][A-Za-z0-9_$\\u0080-\\uffff]*)';
/** The only COPY pg_dump writes: `COPY schema.table (col, ...) FROM stdin;`, the statement alone on its line. */
const PG_DUMP_COPY = new RegExp(
  `^COPY ${IDENT}(?:\\.${IDENT})*(?: \\(${IDENT}(?:, ${IDENT})*\\))? +FROM stdin;$`,
);

/** Statement starts that end psql's single transaction or reach beyond the restored database. */
const FORBIDDEN_FIRST = new Set([
  'BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT', 'RELEASE', 'DO', 'LOAD', 'REASSIGN',
]); // prettier-ignore
const CLUSTER_OBJECTS = new Set(['ROLE', 'USER', 'GROUP', 'DATABASE', 'TABLESPACE']);

/** Longest line held back until its end is seen; longer lines stream (psql acts on a line only at its newline). */
const HOLD_LIMIT = 1 << 20;
/** Ownership statements are one short line each; longer lines are never looked at as such. */
const OWNER_LINE_LIMIT = 64 * 1024;
const META_LINE_LIMIT = 256;
const CAPTURE_LIMIT = 1 << 20;

// Lexer states, after psql's own lexer (src/fe_utils/psqlscan.l). Tokens never span lines there: psql lexes
// one input line at a time.
const INIT = 0, IDENTIFIER = 1, NUM = 2, NUM_E = 3, NUM_ESIGN = 4, NUM_EXP = 5, DASH = 6, SLASH = 7, COLON = 8,
  DOLLAR = 9, PREFIX = 10, UAMP = 11, LINE_COMMENT = 12, XC = 13, XC_STAR = 14, XC_SLASH = 15, XQ = 16,
  XQ_QUOTE = 17, XE = 18, XE_ESC = 19, XE_QUOTE = 20, XUS = 21, XUS_QUOTE = 22, XB = 23, XD = 24, XD_QUOTE = 25,
  XDOLQ = 26, XDOLQ_TAG = 27, XQS = 28, COPY_DATA = 29, META = 30; // prettier-ignore

const isIdentStart = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c >= 0x80;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isIdentCont = (c: number): boolean => isIdentStart(c) || isDigit(c) || c === 0x24;

/**
 * Lets only SQL reach psql. A streaming lexer that follows psql's own: it finds every backslash psql would read
 * as a meta-command (outside quotes, comments and COPY data) and fails the stream before psql gets that line's
 * newline; drops pg_dump's `\restrict`/`\unrestrict` lines (psql gets its own, with a key the archive cannot
 * know); refuses top-level transaction control and cluster-wide statements, which a one-database pg_dump never
 * writes; refuses text whose meaning depends on settings the archive could change (standard_conforming_strings,
 * a client encoding whose characters hide a backslash). With `noOwner`, drops ownership and privilege lines.
 * Memory is bounded (a line is held up to 1 MiB) and time linear, whatever the line lengths and chunking.
 */
export class SqlGuard extends Transform {
  /** Lines dropped (`\restrict` lines, and ownership lines with `noOwner`). */
  dropped = 0;
  /** Largest number of bytes held back at once (for tests: bounded memory). */
  maxHeld = 0;
  private state = INIT;
  private line = 1;
  private started = false;
  // Pending pieces of the current line (held back until its newline), and whether it already streamed.
  private held: Buffer[] = [];
  private heldBytes = 0;
  private lineBytes = 0;
  private streaming = false;
  private lineKind: 'sql' | 'meta' | 'owner' = 'sql';
  private lineStmts = 0;
  private endedAtSemicolon = false;
  // Token state.
  private word = '';
  private rawWord = '';
  private tag = '';
  private dolTag = '';
  private copyHead = '';
  private prefix = 0;
  private prev = 0;
  private bsRun = 0;
  private bsHigh = false;
  private xcDepth = 0;
  private paren = 0;
  // psql's BEGIN ... END heuristic, and the server's BEGIN ATOMIC bodies: they must agree at every semicolon.
  private psqlIds: string[] = [];
  private psqlIdCount = 0;
  private psqlDepth = 0;
  private atomic = 0;
  private beginPending = false;
  // The statement being read.
  private tokens = 0;
  private words: string[] = [];
  private wordsOpen = true;
  private grantSeenOn = false;
  private lastWasAtomic = false;
  private bodyEnd = false;
  private capture: number[] | undefined;
  private copyNext = false;

  constructor(private readonly options: { noOwner?: boolean; restrictKey?: string } = {}) {
    super({ highWaterMark: 1 << 20 });
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

  private fail(what: string): never {
    throw new UnsafeArchiveError(
      `line ${this.line} of the archive ${what}. pg_dump never writes this; the archive was altered or does not ` +
        'come from pg_dump. Nothing from that line on was run; the restore was rolled back. Restore another ' +
        'backup, or check the file by hand',
    );
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
    if (this.lineKind === 'meta') this.state = META;
  }

  private hold(piece: Buffer): void {
    this.held.push(piece.length < 4096 ? Buffer.from(piece) : piece);
    this.heldBytes += piece.length;
    this.maxHeld = Math.max(this.maxHeld, this.heldBytes);
    if (this.lineKind === 'meta' && this.heldBytes > META_LINE_LIMIT) this.fail('is a psql meta-command');
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
    if (streamed) {
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

  /** One byte of SQL text (outside COPY data), through psql's lexer states. */
  private scanByte(c: number): void {
    if (c === 0) this.fail('has a NUL byte');
    if (this.copyNext && c !== 0x0a) this.fail('has text after a COPY statement on its line');
    for (;;) {
      switch (this.state) {
        case META:
          return this.after(c);
        case INIT:
          if (c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0c) return this.after(c);
          if (c === 0x0d) this.fail('has a carriage return outside quotes');
          // In client encodings such as JOHAB a high byte and the next one form one character to psql (and the
          // server): a `;` or `:` there would end or continue a statement only in pgshelf's reading.
          if ((c === 0x3b || c === 0x3a) && this.prev >= 0x80) this.ambiguous();
          if (c === 0x2d) this.state = DASH;
          else if (c === 0x2f) this.state = SLASH;
          else if (c === 0x3a) this.state = COLON;
          else if (c === 0x24) {
            this.state = DOLLAR;
            this.tag = '';
          } else if (c === 0x5c)
            this.fail('has a backslash outside quotes and comments: a psql meta-command');
          else if (c === 0x3b) this.semicolon();
          else if (c === 0x27) this.open(XQ);
          else if (c === 0x22) this.open(XD);
          else if (isDigit(c)) this.open(NUM);
          else if (isIdentStart(c)) {
            if ('bBxXeEnNuU'.includes(String.fromCharCode(c))) {
              this.state = PREFIX;
              this.prefix = c;
            } else this.startWord(c);
          } else {
            this.token();
            if (c === 0x28) this.paren++;
            else if (c === 0x29 && this.paren > 0) this.paren--;
          }
          return this.after(c);
        case IDENTIFIER:
          if (isIdentCont(c)) {
            if (this.word.length < 32) {
              this.word += String.fromCharCode(c >= 0x61 && c <= 0x7a ? c - 32 : c);
              this.rawWord += String.fromCharCode(c);
            }
            return this.after(c);
          }
          this.state = INIT;
          this.finishWord();
          continue;
        case PREFIX: {
          const p = this.prefix | 0x20;
          if (c === 0x27 && p !== 0x75) this.open(p === 0x65 ? XE : p === 0x6e ? XQ : XB);
          else if (c === 0x26 && p === 0x75) this.state = UAMP;
          else {
            this.startWord(this.prefix);
            continue;
          }
          return this.after(c);
        }
        case UAMP:
          if (c === 0x27) this.open(XUS);
          else if (c === 0x22) this.open(XD);
          else {
            this.token();
            this.state = INIT;
            continue;
          }
          return this.after(c);
        case NUM:
        case NUM_EXP:
          if (isDigit(c) || (c === 0x2e && this.state === NUM)) return this.after(c);
          if ((c | 0x20) === 0x65 && this.state === NUM) {
            this.state = NUM_E;
            return this.after(c);
          }
          if (isIdentStart(c)) this.junk();
          this.state = INIT;
          continue;
        case NUM_E:
        case NUM_ESIGN:
          if (isDigit(c)) this.state = NUM_EXP;
          else if ((c === 0x2b || c === 0x2d) && this.state === NUM_E) this.state = NUM_ESIGN;
          else this.junk();
          return this.after(c);
        case DASH:
          if (c === 0x2d) {
            this.state = LINE_COMMENT;
            return this.after(c);
          }
          this.token();
          this.state = INIT;
          continue;
        case SLASH:
          if (c === 0x2a) {
            this.state = XC;
            this.xcDepth = 0;
            return this.after(c);
          }
          this.token();
          this.state = INIT;
          continue;
        case COLON:
          if (c >= 0x41 && c <= 0x5a) this.fail('refers to a psql variable (:NAME)');
          this.token();
          this.state = INIT;
          if (c === 0x3a || c === 0x3d) return this.after(c);
          continue;
        case DOLLAR:
          if (c === 0x24) {
            this.dolTag = this.tag;
            this.open(XDOLQ);
            return this.after(c);
          }
          if (this.tag === '' && isDigit(c)) {
            this.open(NUM);
            return this.after(c);
          }
          if (isIdentStart(c) || (this.tag !== '' && isDigit(c))) {
            this.tag += String.fromCharCode(c);
            if (this.tag.length > 64) this.fail('has a dollar-quote tag longer than 64 bytes');
            return this.after(c);
          }
          // A lone `$`, then the would-be tag as a word (psql's dolqfailed).
          this.token();
          this.state = INIT;
          if (this.tag !== '') {
            const tag = this.tag;
            this.startWord(tag.charCodeAt(0));
            for (let k = 1; k < tag.length; k++) {
              const t = tag.charCodeAt(k);
              this.word += String.fromCharCode(t >= 0x61 && t <= 0x7a ? t - 32 : t);
              this.rawWord += tag[k];
            }
          }
          continue;
        case LINE_COMMENT:
          if (c === 0x0a) this.state = INIT;
          else if (c === 0x0d) this.fail('has a carriage return outside quotes');
          return this.after(c);
        case XC:
          if (c === 0x2a) this.state = XC_STAR;
          else if (c === 0x2f) this.state = XC_SLASH;
          return this.after(c);
        case XC_STAR:
          if (c === 0x2f) {
            if (this.xcDepth === 0) this.state = INIT;
            else {
              this.xcDepth--;
              this.state = XC;
            }
          } else if (c !== 0x2a) this.state = c === 0x2f ? XC_SLASH : XC;
          return this.after(c);
        case XC_SLASH:
          if (c === 0x2a) {
            this.xcDepth++;
            this.state = XC;
          } else if (c !== 0x2f) this.state = XC;
          return this.after(c);
        case XQ:
          // Plain strings: with standard_conforming_strings off psql reads backslashes as escapes. The archive
          // can turn it off, so a quote that a backslash could escape is refused rather than guessed at.
          if (c === 0x27) {
            if (this.bsRun > 0 && (this.bsRun % 2 === 1 || this.bsHigh)) this.ambiguous();
            this.state = XQ_QUOTE;
          } else if (c === 0x5c) {
            if (this.bsRun === 0) this.bsHigh = this.prev >= 0x80;
            this.bsRun++;
          } else this.bsRun = 0;
          return this.after(c);
        case XQ_QUOTE:
        case XE_QUOTE:
        case XUS_QUOTE:
          if (c === 0x27) {
            this.state = this.state === XQ_QUOTE ? XQ : this.state === XE_QUOTE ? XE : XUS;
            this.bsRun = 0;
            return this.after(c);
          }
          this.state = XQS;
          continue;
        case XE:
          if (c === 0x5c) {
            // In client encodings such as SJIS a high byte and a backslash form one character to psql.
            if (this.prev >= 0x80) this.ambiguous();
            this.state = XE_ESC;
          } else if (c === 0x27) this.state = XE_QUOTE;
          return this.after(c);
        case XE_ESC:
          this.state = XE;
          return this.after(c);
        case XUS:
          if (c === 0x27) this.state = XUS_QUOTE;
          return this.after(c);
        case XB:
          if (c === 0x27) this.state = XQS;
          return this.after(c);
        case XD:
          if (c === 0x22) this.state = XD_QUOTE;
          return this.after(c);
        case XD_QUOTE:
          if (c === 0x22) {
            this.state = XD;
            return this.after(c);
          }
          this.state = INIT;
          continue;
        case XDOLQ:
          if (c === 0x24) {
            this.state = XDOLQ_TAG;
            this.tag = '';
          }
          return this.after(c);
        case XDOLQ_TAG:
          if (c === 0x24) {
            if (this.tag === this.dolTag) this.state = INIT;
            else this.tag = '';
          } else if (
            (isIdentStart(c) || (this.tag !== '' && isDigit(c))) &&
            this.tag.length < this.dolTag.length
          ) {
            this.tag += String.fromCharCode(c);
          } else this.state = XDOLQ;
          return this.after(c);
        case XQS:
          // After a closing quote psql looks for a continuation, which it can only find within one line.
          if (c === 0x0a) return this.after(c);
          this.state = INIT;
          continue;
        default:
          return this.after(c);
      }
    }
  }

  private after(c: number): void {
    this.prev = c;
    if (this.capture) {
      this.capture.push(c);
      if (this.capture.length > CAPTURE_LIMIT) this.fail('has a COPY statement longer than 1 MiB');
    }
  }

  private ambiguous(): never {
    this.fail(
      'has text whose meaning depends on settings the archive can change (a backslash before a quote in a ' +
        'plain string, or a backslash, ; or : right after a byte that some client encodings join with it)',
    );
  }

  private junk(): never {
    this.fail('has a number run into a word (such as 1abc or 0x1F), which psql versions split differently');
  }

  private open(state: number): void {
    this.token();
    this.state = state;
    this.bsRun = 0;
  }

  private startWord(c: number): void {
    this.state = IDENTIFIER;
    this.word = String.fromCharCode(c >= 0x61 && c <= 0x7a ? c - 32 : c);
    this.rawWord = String.fromCharCode(c);
  }

  /** A token other than a word: it ends the statement's leading words. */
  private token(): void {
    this.significant();
    this.beginPending = false;
    this.lastWasAtomic = false;
    if (this.wordsOpen) this.closeWords();
  }

  private significant(): void {
    if (this.tokens === 0) this.lineStmts++;
    this.tokens++;
    this.endedAtSemicolon = false;
  }

  private finishWord(): void {
    const w = this.word;
    const first = this.tokens === 0;
    this.significant();
    // psql's heuristic (psqlscan.l): in CREATE [OR REPLACE] FUNCTION|PROCEDURE, semicolons between BEGIN and
    // its END do not end the statement.
    if (this.psqlIdCount === 0) this.psqlIds = [];
    if (['CREATE', 'FUNCTION', 'PROCEDURE', 'OR', 'REPLACE'].includes(w) && this.psqlIdCount < 4) {
      this.psqlIds[this.psqlIdCount] = w[0]!;
    }
    this.psqlIdCount++;
    const ids = this.psqlIds;
    if (
      ids[0] === 'C' &&
      (ids[1] === 'F' ||
        ids[1] === 'P' ||
        (ids[1] === 'O' && ids[2] === 'R' && (ids[3] === 'F' || ids[3] === 'P'))) &&
      this.paren === 0
    ) {
      if (w === 'BEGIN') this.psqlDepth++;
      else if (w === 'CASE' && this.psqlDepth >= 1) this.psqlDepth++;
      else if (w === 'END' && this.psqlDepth > 0) this.psqlDepth--;
    }
    // The server's own: a SQL-standard body, BEGIN ATOMIC ... END, whose END starts a "statement" of its own.
    if (this.atomic > 0 && w === 'END' && this.paren === 0 && (first || this.lastWasAtomic)) {
      this.atomic = 0;
      this.bodyEnd = true;
    }
    this.lastWasAtomic = this.beginPending && w === 'ATOMIC';
    if (this.lastWasAtomic) this.atomic = 1;
    this.beginPending = w === 'BEGIN' && this.paren === 0 && this.isCreateRoutine();
    if (this.wordsOpen && this.words.length < 4) {
      this.words.push(w);
      if (this.words.length === 1 && w === 'COPY') {
        if (this.atomic > 0) this.fail('has a COPY statement inside a function body');
        this.capture = [...Buffer.from(this.rawWord, 'latin1')];
      }
      if (!this.bodyEnd) this.checkWords();
    }
    const [head] = this.words;
    if ((head === 'GRANT' || head === 'REVOKE') && this.paren === 0 && this.words.length > 0) {
      if (w === 'ON') this.grantSeenOn = true;
      else if (
        ((head === 'GRANT' && w === 'TO') || (head === 'REVOKE' && w === 'FROM')) &&
        !this.grantSeenOn
      ) {
        this.fail(`has a ${head} of role membership, which reaches beyond the restored database`);
      }
    }
  }

  private isCreateRoutine(): boolean {
    const [a, b, c, d] = this.words;
    const routine = (x: string | undefined): boolean => x === 'FUNCTION' || x === 'PROCEDURE';
    return a === 'CREATE' && (routine(b) || (b === 'OR' && c === 'REPLACE' && routine(d)));
  }

  /** Refuses statements that end psql's single transaction or act on the whole cluster, at their first words. */
  private checkWords(): void {
    const [a = '', b, c, d] = this.words;
    const what = (): string => this.words.join(' ');
    const cad = a === 'CREATE' || a === 'ALTER' || a === 'DROP';
    if (this.words.length === 1 && FORBIDDEN_FIRST.has(a)) {
      this.fail(`starts a ${a} statement, which would end psql's single transaction or run code outside it`);
    }
    if (this.words.length === 2) {
      if (a === 'PREPARE' && b === 'TRANSACTION') this.fail('has PREPARE TRANSACTION');
      if (
        (cad && b !== undefined && b !== 'USER' && CLUSTER_OBJECTS.has(b)) ||
        (a === 'ALTER' && b === 'SYSTEM')
      ) {
        this.fail(`has ${what()}, which changes the whole cluster, not the restored database`);
      }
      if (a === 'DROP' && b === 'OWNED') this.fail('has DROP OWNED');
    }
    if (this.words.length === 3) {
      if (cad && b === 'USER' && c !== 'MAPPING') this.fail(`has ${what()}, which changes the whole cluster`);
      if (a === 'COMMENT' && b === 'ON' && c !== undefined && CLUSTER_OBJECTS.has(c)) {
        this.fail(`has ${what()}, which changes the whole cluster`);
      }
    }
    if (this.words.length === 4 && cad && b === 'USER' && d !== 'FOR' && d !== 'IF') {
      this.fail(`has ${what()}, which changes the whole cluster`);
    }
  }

  /** The statement's leading words are complete: a `CREATE USER` that never became `CREATE USER MAPPING FOR`. */
  private closeWords(): void {
    this.wordsOpen = false;
    const [a, b] = this.words;
    if ((a === 'CREATE' || a === 'ALTER' || a === 'DROP') && b === 'USER' && this.words.length < 4) {
      this.fail(`has ${this.words.join(' ')}, which changes the whole cluster`);
    }
  }

  private semicolon(): void {
    if (this.paren > 0) {
      this.token();
      return;
    }
    if (this.wordsOpen && this.tokens > 0) this.closeWords();
    if (this.atomic !== this.psqlDepth) {
      this.fail('has BEGIN ... END that psql and the server would split into statements differently');
    }
    if (this.capture) {
      const text = Buffer.from([...this.capture, 0x3b]).toString('utf8');
      this.capture = undefined;
      if (!PG_DUMP_COPY.test(text)) {
        this.fail(`has a COPY statement other than pg_dump's "COPY table (columns) FROM stdin;"`);
      }
      this.copyNext = true;
    }
    if (this.psqlDepth === 0) this.psqlIdCount = 0;
    this.tokens = 0;
    this.words = [];
    this.wordsOpen = true;
    this.grantSeenOn = false;
    this.beginPending = false;
    this.lastWasAtomic = false;
    this.bodyEnd = false;
    this.endedAtSemicolon = true;
  }
}
