/** psql's lexer, followed byte by byte, and the statement rules a restore applies (see SqlGuard in sql.ts). */
import { Transform } from 'node:stream';
import { UnsafeArchiveError } from '../errors.js';

const IDENT = '(?:"(?:[^"]|"")+"|[A-Za-z_\\u0080-\\uffff][A-Za-z0-9_$\\u0080-\\uffff]*)';
/** The only COPY pg_dump writes: `COPY schema.table (col, ...) FROM stdin;`, the statement alone on its line. */
const PG_DUMP_COPY = new RegExp(
  `^COPY ${IDENT}(?:\\.${IDENT})*(?: \\(${IDENT}(?:, ${IDENT})*\\))? +FROM stdin;$`,
);

/** The statements pg_dump writes between its `BEGIN;` and `COMMIT;` lines around large objects. */
const BLOB_LINE =
  /^SELECT pg_catalog\.(?:lo_open\('\d+', 131072\)|lowrite\(0, '\\x[0-9a-f]*'\)|lo_close\(0\));$/;

/** Statement starts that end psql's single transaction or reach beyond the restored database. */
const FORBIDDEN_FIRST = new Set([
  'BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT', 'RELEASE', 'DO', 'LOAD', 'REASSIGN',
]); // prettier-ignore
const CLUSTER_OBJECTS = new Set(['ROLE', 'USER', 'GROUP', 'DATABASE', 'TABLESPACE']);

const CAPTURE_LIMIT = 1 << 20;

/**
 * psql holds a whole statement in memory before it sends it (about three times its size at its peak): a crafted
 * archive with one huge statement could run a worker host out of memory during a restore. pg_dump's statements
 * stay far below this (COPY data and large objects come in rows and short lowrite lines).
 */
export const MAX_STATEMENT_BYTES = 64 * 1024 * 1024;

// Lexer states, after psql's own lexer (src/fe_utils/psqlscan.l). Tokens never span lines there: psql lexes
// one input line at a time.
export const INIT = 0, IDENTIFIER = 1, NUM = 2, NUM_E = 3, NUM_ESIGN = 4, NUM_EXP = 5, DASH = 6, SLASH = 7, COLON = 8,
  DOLLAR = 9, PREFIX = 10, UAMP = 11, LINE_COMMENT = 12, XC = 13, XC_STAR = 14, XC_SLASH = 15, XQ = 16,
  XQ_QUOTE = 17, XE = 18, XE_ESC = 19, XE_QUOTE = 20, XUS = 21, XUS_QUOTE = 22, XB = 23, XD = 24, XD_QUOTE = 25,
  XDOLQ = 26, XDOLQ_TAG = 27, XQS = 28, COPY_DATA = 29, META = 30; // prettier-ignore

const isIdentStart = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c >= 0x80;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isIdentCont = (c: number): boolean => isIdentStart(c) || isDigit(c) || c === 0x24;

/** The lexer's state and statement rules; SqlGuard adds the line holding and the output. */
export abstract class SqlLexer extends Transform {
  protected state = INIT;
  protected line = 1;
  // Pending pieces of the current line (held back until its newline), and whether it already streamed.
  protected lineBytes = 0;
  protected lineKind: 'sql' | 'meta' | 'owner' | 'begin' | 'created' = 'sql';
  // pg_dump's large-object block (BEGIN; lo_open/lowrite/lo_close; COMMIT;): its two lines are dropped, psql's
  // single transaction already holds it.
  protected blobs = false;
  protected deferredBegin = false;
  protected lineStmts = 0;
  protected endedAtSemicolon = false;
  // Token state.
  protected word = '';
  protected rawWord = '';
  protected tag = '';
  protected dolTag = '';
  protected copyHead = '';
  protected prefix = 0;
  protected prev = 0;
  protected bsRun = 0;
  protected bsHigh = false;
  protected xcDepth = 0;
  protected paren = 0;
  // psql's BEGIN ... END heuristic, and the server's BEGIN ATOMIC bodies: they must agree at every semicolon.
  protected psqlIds: string[] = [];
  protected psqlIdCount = 0;
  protected psqlDepth = 0;
  protected atomic = 0;
  protected beginPending = false;
  // The statement being read.
  protected tokens = 0;
  protected words: string[] = [];
  protected wordsOpen = true;
  protected grantSeenOn = false;
  protected lastWasAtomic = false;
  protected bodyEnd = false;
  protected capture: number[] | undefined;
  protected copyNext = false;
  /** Bytes of SQL text since the last statement ended (what psql would be holding). */
  protected statementBytes = 0;

  protected fail(what: string): never {
    throw new UnsafeArchiveError(
      `line ${this.line} of the archive ${what}. pg_dump never writes this; the archive was altered or does not ` +
        'come from pg_dump. Nothing from that line on was run; the restore was rolled back. Restore another ' +
        'backup, or check the file by hand',
    );
  }

  protected blobLine(pieces: Buffer[]): 'drop' | 'keep' {
    const text = Buffer.concat(pieces).toString('utf8').replace(/\n$/, '');
    if (this.deferredBegin) {
      this.deferredBegin = false;
      if (text !== 'BEGIN;') this.fail("starts a BEGIN statement, which would end psql's single transaction");
      this.blobs = true;
      return 'drop';
    }
    if (text === 'COMMIT;') {
      this.blobs = false;
      return 'drop';
    }
    if (text !== '' && !BLOB_LINE.test(text)) {
      this.fail(
        "has a statement inside pg_dump's large-object block other than lo_open, lowrite and lo_close",
      );
    }
    return 'keep';
  }

  /** One byte of SQL text (outside COPY data), through psql's lexer states. */
  protected scanByte(c: number): void {
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

  protected after(c: number): void {
    this.prev = c;
    if (this.capture) {
      this.capture.push(c);
      if (this.capture.length > CAPTURE_LIMIT) this.fail('has a COPY statement longer than 1 MiB');
    }
  }

  protected ambiguous(): never {
    this.fail(
      'has text whose meaning depends on settings the archive can change (a backslash before a quote in a ' +
        'plain string, or a backslash, ; or : right after a byte that some client encodings join with it)',
    );
  }

  protected junk(): never {
    this.fail('has a number run into a word (such as 1abc or 0x1F), which psql versions split differently');
  }

  protected open(state: number): void {
    this.token();
    this.state = state;
    this.bsRun = 0;
  }

  protected startWord(c: number): void {
    this.state = IDENTIFIER;
    this.word = String.fromCharCode(c >= 0x61 && c <= 0x7a ? c - 32 : c);
    this.rawWord = String.fromCharCode(c);
  }

  /** A token other than a word: it ends the statement's leading words. */
  protected token(): void {
    this.significant();
    this.beginPending = false;
    this.lastWasAtomic = false;
    if (this.wordsOpen) this.closeWords();
  }

  protected significant(): void {
    if (this.tokens === 0) this.lineStmts++;
    this.tokens++;
    this.endedAtSemicolon = false;
  }

  protected finishWord(): void {
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

  protected isCreateRoutine(): boolean {
    const [a, b, c, d] = this.words;
    const routine = (x: string | undefined): boolean => x === 'FUNCTION' || x === 'PROCEDURE';
    return a === 'CREATE' && (routine(b) || (b === 'OR' && c === 'REPLACE' && routine(d)));
  }

  /** Refuses statements that end psql's single transaction or act on the whole cluster, at their first words. */
  protected checkWords(): void {
    const [a = '', b, c, d] = this.words;
    const what = (): string => this.words.join(' ');
    const cad = a === 'CREATE' || a === 'ALTER' || a === 'DROP';
    if (this.words.length === 1 && a === 'BEGIN' && this.lineKind === 'begin') {
      this.deferredBegin = true; // judged with its whole line: pg_dump's `BEGIN;` before large objects
    } else if (this.words.length === 1 && a === 'COMMIT' && this.blobs) {
      // judged with its whole line: the `COMMIT;` that ends pg_dump's large-object block
    } else if (this.words.length === 1 && FORBIDDEN_FIRST.has(a)) {
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
  protected closeWords(): void {
    this.wordsOpen = false;
    const [a, b] = this.words;
    if ((a === 'CREATE' || a === 'ALTER' || a === 'DROP') && b === 'USER' && this.words.length < 4) {
      this.fail(`has ${this.words.join(' ')}, which changes the whole cluster`);
    }
  }

  protected semicolon(): void {
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
    this.statementBytes = 0;
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
