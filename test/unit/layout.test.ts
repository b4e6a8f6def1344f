import { describe, expect, it } from 'vitest';
import {
  backupKeys,
  compressionOfKey,
  encodeSegment,
  formatTimestamp,
  parseKey,
  parseTimestamp,
} from '../../src/catalog/layout.js';

describe('storage layout', () => {
  const at = new Date('2026-03-09T02:00:07.123Z');

  it('names archives <db>/<YYYY>/<MM>/<db>_<UTC timestamp>_<id>', () => {
    expect(backupKeys('fractal_db', at, '0a1b2c3d')).toEqual({
      base: 'fractal_db/2026/03/fractal_db_20260309T020007Z_0a1b2c3d',
      archive: 'fractal_db/2026/03/fractal_db_20260309T020007Z_0a1b2c3d.sql.gz',
      manifest: 'fractal_db/2026/03/fractal_db_20260309T020007Z_0a1b2c3d.manifest.json',
    });
    expect(backupKeys('db', at, '0a1b2c3d', true).archive).toMatch(/\.sql\.gz\.age$/);
  });

  it('names a zstd archive .sql.zst, .age after it when encrypted, and parses its compression back', () => {
    const zst = backupKeys('db', at, '0a1b2c3d', false, 'zstd').archive;
    expect(zst).toBe('db/2026/03/db_20260309T020007Z_0a1b2c3d.sql.zst');
    expect(backupKeys('db', at, '0a1b2c3d', true, 'zstd').archive).toMatch(/\.sql\.zst\.age$/);
    expect(parseKey(zst)).toMatchObject({ kind: 'archive', compression: 'zstd', encrypted: false });
    expect(parseKey(`${zst}.age`)).toMatchObject({ kind: 'archive', compression: 'zstd', encrypted: true });
    expect(parseKey(backupKeys('db', at, '0a1b2c3d').archive)).toMatchObject({ compression: 'gzip' });
    expect(compressionOfKey('manual/x.sql.zst')).toBe('zstd');
    expect(compressionOfKey('manual/x.sql.gz')).toBe('gzip');
    expect(parseKey('db/2026/03/db_20260309T020007Z_0a1b2c3d.sql.lz4')).toBeUndefined();
  });

  it.each([
    'plain',
    'with space',
    `qu'o"te`,
    'ünïcødé 日本',
    'a/b\\c',
    '100%',
    '..',
    'under_score_1',
    'x\ny',
  ])('round-trips the database name %j through a key', (name) => {
    const keys = backupKeys(name, at, 'deadbeef');
    expect(keys.archive.split('/')).toHaveLength(4);
    expect(parseKey(keys.archive)).toMatchObject({
      database: name,
      id: 'deadbeef',
      kind: 'archive',
      startedAt: new Date('2026-03-09T02:00:07Z'),
    });
    expect(parseKey(keys.manifest)).toMatchObject({ database: name, kind: 'manifest', base: keys.base });
  });

  it('encodes only what a path segment cannot hold', () => {
    expect(encodeSegment('a b')).toBe('a b');
    expect(encodeSegment('a/b')).toBe('a%2Fb');
    expect(encodeSegment('..')).toBe('%2E%2E');
    expect(encodeSegment('50%')).toBe('50%25');
  });

  it('ignores keys it did not write', () => {
    expect(parseKey('notes.txt')).toBeUndefined();
    expect(parseKey('db/2026/03/other_20260309T020007Z_0a1b2c3d.sql.gz')).toBeUndefined();
    expect(parseKey('db/2026/03/db_20260309T020007Z_XYZ.sql.gz')).toBeUndefined();
    expect(parseKey('db/2026/03/db_20260309T020007Z_0a1b2c3d.sql')).toBeUndefined();
  });

  it('formats and parses compact UTC timestamps', () => {
    expect(formatTimestamp(at)).toBe('20260309T020007Z');
    expect(parseTimestamp('20260309T020007Z')?.toISOString()).toBe('2026-03-09T02:00:07.000Z');
    expect(parseTimestamp('2026-03-09')).toBeUndefined();
  });
});
