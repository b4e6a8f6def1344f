import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { isOwnershipStatement, OwnershipFilter } from '../../src/jobs/sql.js';

async function filter(text: string, chunk: number): Promise<{ out: string; dropped: number }> {
  const buf = Buffer.from(text);
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) parts.push(buf.subarray(i, i + chunk));
  const f = new OwnershipFilter();
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(parts),
    f,
    new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }),
  );
  return { out: Buffer.concat(out).toString(), dropped: f.dropped };
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
  '\\.',
  'COPY public.empty (a) FROM stdin;',
  '\\.',
  "COMMENT ON TABLE public.t IS 'ALTER TABLE x OWNER TO y;';",
  '-- PostgreSQL database dump complete',
  '',
].join('\n');

describe('OwnershipFilter', () => {
  it.each([1, 2, 3, 5, 17, 64, 100_000])(
    'drops ownership and privilege lines outside COPY data (%i-byte chunks)',
    async (n) => {
      const { out, dropped } = await filter(DUMP, n);
      expect(out).toBe(EXPECTED);
      expect(dropped).toBe(5);
    },
  );

  it('recognises whole statements only', () => {
    expect(isOwnershipStatement('ALTER FUNCTION app.f(integer) OWNER TO alice;')).toBe(true);
    expect(isOwnershipStatement('ALTER TABLE public.t ADD COLUMN owner text;')).toBe(false);
    expect(isOwnershipStatement('GRANTED')).toBe(false);
  });
});
