import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { UnsafeArchiveError } from '../../src/errors.js';
import {
  isOwnershipStatement,
  isPreCreatedLine,
  SqlGuard,
  type Piece,
} from '../../src/archive/sql-filter.js';

interface Outcome {
  out?: string;
  error?: string;
  dropped?: number;
}

async function guard(
  parts: Buffer[],
  options: ConstructorParameters<typeof SqlGuard>[0] = {},
): Promise<Outcome> {
  const g = new SqlGuard(options);
  const out: Buffer[] = [];
  try {
    await pipeline(
      Readable.from(parts),
      g,
      new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }),
    );
    return { out: Buffer.concat(out).toString(), dropped: g.dropped };
  } catch (err) {
    expect(err).toBeInstanceOf(UnsafeArchiveError);
    return { error: (err as Error).message };
  }
}

function chunked(text: string, size: number): Buffer[] {
  const buf = Buffer.from(text);
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return parts;
}

/** The outcome for every way of cutting `text` in two, and in 1-, 2- and 3-byte chunks: all must agree. */
async function everySplit(
  text: string,
  options: ConstructorParameters<typeof SqlGuard>[0] = {},
): Promise<Outcome> {
  const whole = await guard([Buffer.from(text)], options);
  const buf = Buffer.from(text);
  for (let k = 0; k <= buf.length; k++) {
    expect(await guard([buf.subarray(0, k), buf.subarray(k)], options), `split at ${k}`).toEqual(whole);
  }
  for (const size of [1, 2, 3]) expect(await guard(chunked(text, size), options)).toEqual(whole);
  return whole;
}

const DUMP = [
  'SET client_encoding = 8;',
  "SET SESSION AUTHORIZATION 'alice';",
  'CREATE TABLE public.t (a text);',
  'ALTER TABLE public.t OWNER TO alice;',
  'ALTER MATERIALIZED VIEW app."long ""quoted"" name that goes past sixty-four characters" OWNER TO "Bob";',
  'ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (a);',
  'COPY public.t (a) FROM stdin;',
  'GRANT ALL ON TABLE public.t TO alice;',
  'ALTER TABLE public.t OWNER TO alice;',
  '\\\\.',
  'x\\\\.',
  '\\! id',
  '\\.',
  'COPY public.empty (a) FROM stdin;',
  '\\.',
  'REVOKE ALL ON SCHEMA public FROM PUBLIC;',
  'ALTER DEFAULT PRIVILEGES FOR ROLE alice GRANT ALL ON TABLES TO bob;',
  "COMMENT ON TABLE public.t IS 'ALTER TABLE x OWNER TO y;';",
  '-- PostgreSQL database dump complete',
  '',
].join('\n');

const EXPECTED = [
  'SET client_encoding = 8;',
  'CREATE TABLE public.t (a text);',
  'ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (a);',
  'COPY public.t (a) FROM stdin;',
  // COPY rows are data, whatever they look like.
  'GRANT ALL ON TABLE public.t TO alice;',
  'ALTER TABLE public.t OWNER TO alice;',
  '\\\\.',
  'x\\\\.',
  '\\! id',
  '\\.',
  'COPY public.empty (a) FROM stdin;',
  '\\.',
  "COMMENT ON TABLE public.t IS 'ALTER TABLE x OWNER TO y;';",
  '-- PostgreSQL database dump complete',
  '',
].join('\n');

/** What pg_dump 15 writes for awkward objects (trimmed from a real dump of the integration sample). */
const REAL = `--
-- PostgreSQL database dump
--

\\restrict 8aoSO0Zl2hlYt4EqCQgsQfNsj85jIGeRIkCmuHdLZL0014nLgvKQvOnNGbM90Cm

SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE FUNCTION app.f() RETURNS text
    LANGUAGE sql
    AS $$ SELECT 'COMMIT; \\! id' $$;
CREATE FUNCTION app.g() RETURNS integer
    LANGUAGE sql
    BEGIN ATOMIC
 SELECT 1;
 SELECT CASE WHEN true THEN 2 ELSE 3 END;
END;
CREATE PROCEDURE app.p()
    LANGUAGE plpgsql
    AS $_$ BEGIN INSERT INTO app.t VALUES (3,'x$$'); COMMIT; ROLLBACK; END $_$;
CREATE OR REPLACE PROCEDURE app.q()
    LANGUAGE sql
    BEGIN ATOMIC
 INSERT INTO app.t (id, v)
   VALUES (4, 'y'::text);
END;
COMMENT ON TABLE app.t IS 'comment with \\ backslash and ''quote''';
/* a /* nested */ comment with \\ and ' */
CREATE VIEW app.v AS
 SELECT 'x\\y'::text AS a, (ARRAY[1,2])[1:2] AS b, 1.5e+3 AS c, $1 AS d, E'it\\'s' AS e, U&'d\\0061t' AS f;
CREATE TABLE app."we""ird;\\" (x integer);
CREATE USER MAPPING FOR postgres SERVER s OPTIONS (password 'x');
COPY app.t (id, v) FROM stdin;
1\ta\\\\b\\nc
2\tit's $$ -- /* 
\\.
COPY app."we""ird;\\" (x) FROM stdin;
\\.
CREATE RULE r AS
    ON INSERT TO app."we""ird;\\" DO
 NOTIFY foo;
GRANT ALL ON TABLE app.t TO PUBLIC;

--
-- PostgreSQL database dump complete
--

\\unrestrict 8aoSO0Zl2hlYt4EqCQgsQfNsj85jIGeRIkCmuHdLZL0014nLgvKQvOnNGbM90Cm

`;

describe('SqlGuard', () => {
  it('passes what pg_dump writes unchanged, except its \\restrict lines, however it is cut', async () => {
    const result = await everySplit(REAL);
    expect(result.error).toBeUndefined();
    expect(result.out).toBe(REAL.replace(/^\\(un)?restrict .*\n/gm, ''));
    expect(result.dropped).toBe(2);
  });

  it("drops pg_dump's BEGIN; and COMMIT; around large objects, and checks what is between", async () => {
    const blobs = [
      "SELECT pg_catalog.lo_create('370033');",
      'BEGIN;',
      '',
      "SELECT pg_catalog.lo_open('370033', 131072);",
      "SELECT pg_catalog.lowrite(0, '\\x68656c6c6f');",
      'SELECT pg_catalog.lo_close(0);',
      '',
      'COMMIT;',
      'SELECT 1;',
      '',
    ].join('\n');
    const result = await everySplit(blobs);
    expect(result.out).toBe(blobs.replace('BEGIN;\n', '').replace('COMMIT;\n', ''));
    expect(result.dropped).toBe(2);
    for (const [text, line] of [
      ['BEGIN;\nCOMMIT;\nCOMMIT;\n', 3],
      ['BEGIN;\nSELECT 1;\nCOMMIT;\n', 2],
      ['BEGIN; SELECT 1;\n', 1],
      ['BEGIN;\nSELECT pg_catalog.lo_close(0); COMMIT; CREATE ROLE x;\n', 2],
      ['SELECT 1;\n  BEGIN;\n', 2],
    ] as const) {
      expect((await everySplit(text)).error, text).toMatch(new RegExp(`^line ${line} of the archive `));
    }
  });

  it("gives psql its own \\restrict line before any of the archive's bytes", async () => {
    const result = await guard([Buffer.from('SELECT 1;\n')], { restrictKey: 'abc123' });
    expect(result.out).toBe('\\restrict abc123\nSELECT 1;\n');
    expect((await guard([], { restrictKey: 'k' })).out).toBe('\\restrict k\n');
  });

  it.each([1, 2, 3, 5, 17, 64, 100_000])(
    'with noOwner, drops ownership and privilege lines outside COPY data (%i-byte chunks)',
    async (n) => {
      const { out, dropped } = await guard(chunked(DUMP, n), { noOwner: true });
      expect(out).toBe(EXPECTED);
      expect(dropped).toBe(5);
    },
  );

  it.each([
    ['\\! touch /tmp/x\nSELECT 1;\n', 1, /line 1 .*psql meta-command/],
    ['SELECT 1;\nselect 1; \\! id\n', 2, /line 2 .*backslash outside quotes/],
    ["SELECT 'a' \\gexec\n", 1, /backslash/],
    ['SELECT 1 \\;COMMIT;\n', 1, /backslash/],
    ['SELECT $$ x $$ \\! id\n', 1, /backslash/],
    ['SELECT 1; /* \\! */ -- \\!\n/* /* */ \\! */ \\! id\n', 2, /backslash/],
    ['\\restrict abc\n\\unrestrict abc x\n', 2, /meta-command/],
    ['COPY t (a) FROM stdin;\n1\n\\.\n\\! id\n', 4, /meta-command/],
    ['COPY t (a) FROM stdin;\n1\n\\.\r\n\\! id\n', 4, /meta-command/],
    ['SELECT 1;\nCOMMIT;\nCREATE ROLE x;\n', 2, /COMMIT statement/],
    ['SELECT 1; commit; CREATE ROLE x;\n', 1, /COMMIT statement/],
    ['/* c */ END;\n', 1, /END statement/],
    ['SELECT 1;\n  -- x\n  begin\n;\n', 3, /BEGIN statement/],
    ['start transaction;\n', 1, /START/],
    ["ROLLBACK PREPARED 'x';\n", 1, /ROLLBACK/],
    ["PREPARE TRANSACTION 'x';\n", 1, /PREPARE TRANSACTION/],
    ['SAVEPOINT a;\n', 1, /SAVEPOINT/],
    ['create role x;\n', 1, /CREATE ROLE, which changes the whole cluster/],
    ['ALTER\nROLE x SUPERUSER;\n', 2, /ALTER ROLE/],
    ['ALTER USER x SUPERUSER;\n', 1, /ALTER USER X/],
    ['CREATE USER MAPPING x;\n', 1, /CREATE USER MAPPING X/],
    ['DROP DATABASE x;\n', 1, /DROP DATABASE/],
    ["CREATE TABLESPACE x LOCATION '/tmp';\n", 1, /CREATE TABLESPACE/],
    ['ALTER SYSTEM SET x = 1;\n', 1, /ALTER SYSTEM/],
    ['DO $$ BEGIN END $$;\n', 1, /DO statement/],
    ['GRANT pg_execute_server_program TO me;\n', 1, /role membership/],
    ["COMMENT ON DATABASE x IS 'y';\n", 1, /COMMENT ON DATABASE/],
    ["COPY t TO '/tmp/x';\n", 1, /COPY statement other than/],
    ["COPY t (a) FROM PROGRAM 'id';\n", 1, /COPY statement other than/],
    ["COPY t (a) FROM '/etc/passwd';\n", 1, /COPY statement other than/],
    ['COPY t (a) FROM stdin; SELECT 1;\n', 1, /text after a COPY/],
    ["SELECT 'a\\'; \\! id --';\n", 1, /meaning depends on settings/],
    ["SELECT E'a'\n'\\' , ' ; COMMIT; SELECT ';\n", 2, /meaning depends on settings/],
    ["SELECT E'\xff\\'';\n", 1, /meaning depends on settings/],
    ['SELECT 1abc;\n', 1, /number run into a word/],
    ['SELECT 1 AS caf\xe9; COPY t (a) FROM stdin;\n\\! id\n', 1, /meaning depends on settings/],
    ['SELECT 0x1F;\n', 1, /number run into a word/],
    ['SELECT :USER;\n', 1, /psql variable/],
    ['SELECT 1;\r\\! id\n', 1, /carriage return/],
    ['SELECT 1;\0\n', 1, /NUL/],
    [
      'CREATE FUNCTION f() RETURNS begin AS $$ $$; END; CREATE ROLE x;\n',
      1,
      /split into statements differently/,
    ],
    ['CREATE PROCEDURE p() BEGIN ATOMIC SELECT 1; END; COMMIT;\n', 1, /COMMIT statement/],
    ['SELECT 1; COMMIT', 1, /COMMIT statement/],
  ])('refuses %j, naming line %i, however it is cut', async (text, line, message) => {
    const result = await everySplit(text);
    expect(result.out).toBeUndefined();
    expect(result.error).toMatch(new RegExp(`^line ${line} of the archive `));
    expect(result.error).toMatch(message);
  });

  it('never passes on a byte of the line that fails', async () => {
    const g = new SqlGuard();
    const out: Buffer[] = [];
    g.on('data', (c: Buffer) => out.push(c));
    g.on('error', () => undefined);
    g.write(Buffer.from('SELECT 1;\nSELECT 2; '));
    g.write(Buffer.from('\\! id\n'));
    await new Promise((r) => setImmediate(r));
    expect(Buffer.concat(out).toString()).toBe('SELECT 1;\n');
  });

  it('holds a bounded amount of a 64 MiB line, in any chunking', async () => {
    const body = Buffer.alloc(64 << 20, 'a'.charCodeAt(0));
    const line = Buffer.concat([Buffer.from("SELECT '"), body, Buffer.from("';\nSELECT 1;\n")]);
    for (const size of [64 * 1024, 1000]) {
      // Above the statement cap, which the next test covers: this one is about what the filter holds.
      const g = new SqlGuard({ noOwner: true, maxStatementBytes: 1 << 30 });
      let bytes = 0;
      await pipeline(
        Readable.from(chunked2(line, size)),
        g,
        new Writable({ write: (c: Buffer, _e, cb) => ((bytes += c.length), cb()) }),
      );
      expect(bytes).toBe(line.length);
      expect(g.maxHeld).toBeLessThanOrEqual((1 << 20) + size);
    }
  });

  it('refuses a statement longer than psql should hold, counted across lines and from the last semicolon', async () => {
    const run = async (text: string): Promise<string | undefined> => {
      const g = new SqlGuard({ maxStatementBytes: 1000 });
      try {
        await pipeline(Readable.from([Buffer.from(text)]), g, new Writable({ write: (_c, _e, cb) => cb() }));
        return undefined;
      } catch (err) {
        return (err as Error).message;
      }
    };
    const fill = (n: number): string => `SELECT '${'x'.repeat(n)}';\n`;
    expect(await run(fill(900) + fill(900) + fill(900))).toBeUndefined(); // many statements: each is small
    expect(await run(`SELECT '${'y\n'.repeat(600)}';\n`)).toMatch(
      /^line \d+ of the archive holds a statement of more than .* MiB/,
    );
    expect(await run(`-- ${'z'.repeat(2000)}\nSELECT 1;\n`)).toMatch(/holds a statement of more than/);
    const copy = `COPY public.t (a) FROM stdin;\n${'row\n'.repeat(1000)}\\.\n`;
    expect(await run(copy)).toBeUndefined(); // COPY rows are data, not statement text
  });

  it('recognises whole ownership statements only', () => {
    expect(isOwnershipStatement('ALTER FUNCTION app.f(integer) OWNER TO alice;')).toBe(true);
    expect(isOwnershipStatement('ALTER TABLE public.t ADD COLUMN owner text;')).toBe(false);
    expect(isOwnershipStatement('GRANTED')).toBe(false);
  });
});

function* chunked2(buf: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

describe('extensions created before the stream', () => {
  const created = { extensions: new Set(['dblink', 'Odd"Ext']), schemas: new Set(['fdw']) };

  it("recognises pg_dump's lines for them, and only theirs", () => {
    expect(isPreCreatedLine('CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA public;', created)).toBe(true);
    expect(isPreCreatedLine('CREATE EXTENSION IF NOT EXISTS "Odd""Ext" WITH SCHEMA "X";', created)).toBe(
      true,
    );
    expect(isPreCreatedLine("COMMENT ON EXTENSION dblink IS 'connect to other databases';", created)).toBe(
      true,
    );
    expect(isPreCreatedLine('CREATE SCHEMA fdw;', created)).toBe(true);
    expect(isPreCreatedLine('CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;', created)).toBe(
      false,
    );
    expect(isPreCreatedLine("COMMENT ON EXTENSION citext IS 'x';", created)).toBe(false);
    expect(isPreCreatedLine('CREATE SCHEMA app;', created)).toBe(false);
    expect(isPreCreatedLine('CREATE TABLE dblink (a int);', created)).toBe(false);
    expect(isPreCreatedLine('', created)).toBe(false);
  });

  it('drops them from the stream at any chunking; a second statement on the line keeps the line', async () => {
    const dump = [
      'CREATE SCHEMA fdw;',
      'CREATE SCHEMA app;',
      'CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA public;',
      "COMMENT ON EXTENSION dblink IS 'it''s dblink; really';",
      'CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;',
      "COMMENT ON EXTENSION dblink IS 'x'; CREATE TABLE t (a int);",
      'CREATE TABLE u (a int);',
      '',
    ].join('\n');
    const { out, dropped } = await everySplit(dump, { preCreated: created });
    expect(dropped).toBe(3);
    expect(out).toBe(
      [
        'CREATE SCHEMA app;',
        'CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;',
        "COMMENT ON EXTENSION dblink IS 'x'; CREATE TABLE t (a int);",
        'CREATE TABLE u (a int);',
        '',
      ].join('\n'),
    );
    expect((await guard([Buffer.from(dump)])).out).toBe(dump);
  });
});

/** Split mode's pieces, with runs of rows joined (where rows are cut depends on the chunking). */
async function splitPieces(parts: Buffer[]): Promise<{ kind: string; text: string; extra?: unknown }[]> {
  const pieces: Piece[] = [];
  await pipeline(
    Readable.from(parts),
    new SqlGuard({ split: true }),
    new Writable({ objectMode: true, write: (p: Piece, _e, cb) => (pieces.push(p), cb()) }),
  );
  const out: { kind: string; text: string; extra?: unknown }[] = [];
  for (const p of pieces) {
    if (p.kind === 'rows') {
      // A piece that ends a row ends with a newline; the end marker is never among the rows.
      if (p.whole) expect(p.bytes.at(-1)).toBe(0x0a);
      const last = out.at(-1);
      if (last?.kind === 'rows') last.text += p.bytes.toString();
      else out.push({ kind: 'rows', text: p.bytes.toString() });
    } else if (p.kind === 'copyEnd') out.push({ kind: 'copyEnd', text: '' });
    else if (p.kind === 'copy')
      out.push({ kind: 'copy', text: p.bytes.toString(), extra: [p.line, p.alone] });
    else out.push({ kind: 'sql', text: p.bytes.toString(), extra: [p.line, p.boundary, p.statements] });
  }
  return out;
}

describe('SqlGuard split mode (restores on several sessions)', () => {
  it('cuts the SQL into lines, COPY lines, rows and COPY ends the same way however it is chunked', async () => {
    const text = `${REAL.replace(/^\\(un)?restrict .*\n/gm, '')}COPY public.x (a) FROM stdin;\n\\\n\\\\.\n\\.\r\nSELECT 1;\n`;
    const whole = await splitPieces([Buffer.from(text)]);
    const buf = Buffer.from(text);
    for (let k = 0; k <= buf.length; k++) {
      expect(await splitPieces([buf.subarray(0, k), buf.subarray(k)]), `split at ${k}`).toEqual(whole);
    }
    for (const size of [1, 2, 3]) expect(await splitPieces(chunked(text, size))).toEqual(whole);
    // Put back together (each COPY end as `\.`), the pieces are what the byte mode passes on.
    const normal = (await guard([Buffer.from(text)])).out!;
    const joined = whole.map((p) => (p.kind === 'copyEnd' ? '\\.\n' : p.text)).join('');
    expect(joined).toBe(normal.replace('\\.\r\n', '\\.\n'));
    expect(whole.filter((p) => p.kind === 'copy').map((p) => p.extra)).toEqual([
      [expect.any(Number), true],
      [expect.any(Number), true],
      [expect.any(Number), true],
    ]);
    expect(whole.find((p) => p.kind === 'rows')?.text).toBe("1\ta\\\\b\\nc\n2\tit's $$ -- /* \n");
    expect(whole.filter((p) => p.kind === 'rows').at(-1)?.text).toBe('\\\n\\\\.\n');
    // A statement over several lines is one stretch: only its last line ends at a boundary.
    const view = whole.findIndex((p) => p.text.startsWith('CREATE VIEW app.v'));
    expect(whole[view]!.extra).toEqual([expect.any(Number), false, 1]);
    expect(whole[view + 1]!.extra).toEqual([expect.any(Number), true, 0]);
  });

  it('marks a COPY that shares its line with another statement as not alone', async () => {
    const pieces = await splitPieces([Buffer.from('SELECT 1; COPY public.t (a) FROM stdin;\n1\n\\.\n')]);
    expect(pieces.map((p) => [p.kind, p.extra])).toEqual([
      ['copy', [1, false]],
      ['rows', undefined],
      ['copyEnd', undefined],
    ]);
  });
});
