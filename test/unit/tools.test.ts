import { describe, expect, it } from 'vitest';
import { parseToolVersion, restrictSince, supportsRestrict } from '../../src/postgres/tools.js';

describe('\\restrict support by client version', () => {
  it.each([
    ['13.21', false],
    ['13.22', true],
    ['14.18', false],
    ['14.19', true],
    ['15.13', false],
    ['15.14', true],
    ['15.20', true],
    ['16.9', false],
    ['16.10', true],
    ['17.5', false],
    ['17.6', true],
    ['18', true],
    ['18.0', true],
    ['19devel', true],
    ['12.22', false],
    ['9.6.24', false],
    ['15', false],
    ['', false],
  ])('%s -> %s', (version, expected) => {
    expect(supportsRestrict(version)).toBe(expected);
  });

  it('names the first fixed version of each major', () => {
    expect([12, 13, 14, 15, 16, 17, 18].map(restrictSince)).toEqual([
      undefined,
      '13.22',
      '14.19',
      '15.14',
      '16.10',
      '17.6',
      '18.0',
    ]);
  });

  it('reads versions as the tools print them', () => {
    expect(parseToolVersion('psql (PostgreSQL) 15.13')).toEqual({ version: '15.13', major: 15 });
    expect(
      supportsRestrict(parseToolVersion('psql (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)')!.version),
    ).toBe(true);
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
});
