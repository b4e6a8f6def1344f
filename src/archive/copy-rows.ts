/** Row counts of a plain-format dump, read from its COPY blocks as it streams by. */
const NL = 0x0a;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const MAX_HEADER_LINE = 1 << 20;

/**
 * Counts the rows of each `COPY <table> (...) FROM stdin;` block of a plain-format dump as it streams by: in COPY
 * text format every row is exactly one line (newlines inside values are escaped) and `\.` ends the block. The
 * counts come from the dump itself, so they match its snapshot exactly and cost the database nothing.
 * Memory is bounded: at most one header line is held, never a row.
 */
export class CopyRowCounter {
  readonly tables = new Map<string, number>();
  private inCopy = false;
  private table = '';
  private rows = 0;
  /** Partial line carried between chunks while outside a COPY block (headers are short). */
  private carry: Buffer[] = [];
  private carryLength = 0;
  /** In a COPY block: the current line's first and last bytes (to recognise `\.`) and its length so far. */
  private lineFirst = 0;
  private lineLast = 0;
  private lineLength = 0;

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(NL, pos);
      const end = nl === -1 ? chunk.length : nl;
      if (this.inCopy) {
        // Bytes, not strings: a dump's rows pass through here one by one, and a string per row shows in profiles.
        if (end > pos) {
          if (this.lineLength === 0) this.lineFirst = chunk[pos]!;
          this.lineLast = chunk[end - 1]!;
          this.lineLength += end - pos;
        }
        if (nl === -1) return;
        if (this.lineLength === 2 && this.lineFirst === BACKSLASH && this.lineLast === DOT) {
          this.tables.set(this.table, (this.tables.get(this.table) ?? 0) + this.rows);
          this.inCopy = false;
        } else {
          this.rows++;
        }
        this.lineLength = 0;
      } else {
        if (nl === -1) {
          if (this.carryLength < MAX_HEADER_LINE) {
            this.carry.push(chunk.subarray(pos));
            this.carryLength += chunk.length - pos;
          }
          return;
        }
        let line: Buffer = chunk.subarray(pos, end);
        if (this.carry.length > 0) {
          line = Buffer.concat([...this.carry, line]);
          this.carry = [];
          this.carryLength = 0;
        }
        if (
          line.length > 5 &&
          line[0] === 0x43 /* C */ &&
          line.subarray(0, 5).toString('latin1') === 'COPY '
        ) {
          const name = parseCopyTarget(line.toString('utf8'));
          if (name !== undefined) {
            this.inCopy = true;
            this.table = name;
            this.rows = 0;
          }
        }
      }
      pos = end + 1;
    }
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.tables.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
}

/**
 * The table of a `COPY schema.table (cols) FROM stdin;` line, as pg_dump printed it (quoted where needed), so
 * it can be used verbatim in SQL. Undefined for anything else.
 */
export function parseCopyTarget(line: string): string | undefined {
  if (!line.startsWith('COPY ') || !line.endsWith(' FROM stdin;')) return undefined;
  let i = 5;
  const start = i;
  // A qualified name: identifiers separated by '.', each plain or "quoted" (with "" for a quote).
  for (;;) {
    if (line[i] === '"') {
      i++;
      while (i < line.length) {
        if (line[i] === '"') {
          if (line[i + 1] === '"') i += 2;
          else break;
        } else i++;
      }
      if (line[i] !== '"') return undefined;
      i++;
    } else {
      const m = /^[^\s."(]+/.exec(line.slice(i));
      if (!m) return undefined;
      i += m[0].length;
    }
    if (line[i] === '.') {
      i++;
      continue;
    }
    break;
  }
  return line.slice(start, i);
}
