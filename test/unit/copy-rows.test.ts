import { describe, expect, it } from 'vitest';
import { CopyRowCounter, parseCopyTarget } from '../../src/archive/copy-rows.js';

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
