import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { conninfoDbname } from '../../src/postgres/psql.js';
import { CopyRowCounter, parseCopyTarget } from '../../src/archive/copy-rows.js';
import { DigestStream } from '../../src/archive/digest.js';
import { parseToolVersion } from '../../src/postgres/tools.js';
import { MIN_PART_SIZE, partSizeFor, queueSizeFor } from '../../src/storage/s3.js';

const DUMP = [
  'SET client_encoding = 8;',
  'COPY public.users (id, name) FROM stdin;',
  '1\tann',
  '2\tbob with \\n escaped newline',
  '3\t\\N',
  '\\.',
  '',
  'COPY public."we ird ""t"" (x)" (a) FROM stdin;',
  '\\.',
  'COPY app.big (v) FROM stdin;',
  ...Array.from({ length: 1000 }, (_, i) => `${i}\t${'x'.repeat(i % 97)}`),
  '\\.',
  "COMMENT ON TABLE x IS 'COPY fake (a) FROM stdin;';",
  '-- PostgreSQL database dump complete',
  '',
].join('\n');

describe('CopyRowCounter', () => {
  const expected = { 'app.big': 1000, 'public."we ird ""t"" (x)"': 0, 'public.users': 3 };

  it('counts the rows of each COPY block', () => {
    const c = new CopyRowCounter();
    c.push(Buffer.from(DUMP));
    expect(c.toJSON()).toEqual(expected);
  });

  it.each([1, 2, 3, 7, 64, 4096])('gives the same counts when the dump arrives in %i-byte chunks', (size) => {
    const c = new CopyRowCounter();
    const buf = Buffer.from(DUMP);
    for (let i = 0; i < buf.length; i += size) c.push(buf.subarray(i, i + size));
    expect(c.toJSON()).toEqual(expected);
  });

  it('does not take a row that starts with \\. plus more for the end marker', () => {
    const c = new CopyRowCounter();
    c.push(Buffer.from('COPY t (a) FROM stdin;\n\\.x\n\\.\n'));
    expect(c.toJSON()).toEqual({ t: 1 });
  });
});

describe('parseCopyTarget', () => {
  it.each([
    ['COPY public.t (a, b) FROM stdin;', 'public.t'],
    ['COPY public."Mixed Case ""Q"" table" ("weird col", n) FROM stdin;', 'public."Mixed Case ""Q"" table"'],
    ['COPY "s.c"."t.x" (a) FROM stdin;', '"s.c"."t.x"'],
    ['COPY app.t FROM stdin;', 'app.t'],
    ['COPY public.t (a) TO stdout;', undefined],
    ['SELECT 1;', undefined],
  ])('%s -> %s', (line, name) => {
    expect(parseCopyTarget(line)).toBe(name);
  });
});

describe('DigestStream', () => {
  it('passes bytes through and reports their SHA-256 and count', async () => {
    const data = Buffer.from('some archive bytes'.repeat(1000));
    const digest = new DigestStream();
    const out: Buffer[] = [];
    await pipeline(
      Readable.from([data.subarray(0, 100), data.subarray(100)]),
      digest,
      new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }),
    );
    expect(Buffer.concat(out).equals(data)).toBe(true);
    expect(digest.bytes).toBe(data.length);
    expect(digest.sha256).toBe(createHash('sha256').update(data).digest('hex'));
  });
});

describe('multipart part sizing', () => {
  const GiB = 1024 ** 3;
  it.each([
    [0, 10_000],
    [1 * GiB, 10_000],
    [100 * GiB, 10_000],
    [2048 * GiB, 10_000],
    [10 * GiB, 1_000],
    [500 * GiB, 1_000],
  ])('a %d-byte database with at most %d parts fits twice its size', (size, maxParts) => {
    const part = partSizeFor(size, maxParts);
    expect(part).toBeGreaterThanOrEqual(MIN_PART_SIZE);
    expect(part % (1024 * 1024)).toBe(0);
    expect(part * maxParts).toBeGreaterThanOrEqual(2 * size);
  });
  it('keeps buffered parts within a fixed budget as parts grow', () => {
    expect(queueSizeFor(5 * 1024 * 1024)).toBe(2);
    expect(queueSizeFor(64 * 1024 * 1024)).toBe(1);
    expect(queueSizeFor(512 * 1024 * 1024)).toBe(1);
  });
});

describe('client tools', () => {
  it('parses --version output', () => {
    expect(parseToolVersion('pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)\n')).toEqual({
      version: '15.19',
      major: 15,
    });
    expect(parseToolVersion('psql (PostgreSQL) 9.6.24')).toEqual({ version: '9.6.24', major: 9 });
    expect(parseToolVersion('psql (PostgreSQL) 17devel')).toEqual({ version: '17', major: 17 });
    expect(parseToolVersion('nonsense')).toBeUndefined();
  });
  it('quotes database names for a libpq connection string', () => {
    expect(conninfoDbname("it's a\\b")).toBe("dbname='it\\'s a\\\\b'");
  });
});
