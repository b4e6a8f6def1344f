import { execFileSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError, ManifestInvalidError, ManifestSignatureError } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import {
  MANIFEST_MAX_BYTES,
  canonicalJson,
  parseManifest,
  signManifest,
  type Manifest,
} from '../../src/catalog/manifest.js';
import { backupKeys } from '../../src/catalog/layout.js';
import { fakeManifest } from '../helpers/manifests.js';

const KEY = 'k'.repeat(16) + '0123456789abcdef';
const at = new Date('2026-11-25T02:00:00Z');
const keys = backupKeys('shop', at, 'abcd1234');
const good = fakeManifest('shop', at, 'abcd1234');
const text = (m: object): string => JSON.stringify(m, null, 2);
const signed = (m: Manifest): Manifest => ({ ...m, signature: signManifest(m, KEY) });

describe('parseManifest', () => {
  it('returns the typed manifest, with defaults for fields older manifests lack', () => {
    const { drill: _d, drills: _ds, tables: _t, ...old } = good;
    const m = parseManifest(text(old), keys.manifest);
    expect(m.drills).toEqual([]);
    expect(m.drill).toBeNull();
    expect(m.tables).toEqual({});
    expect(m.archive.key).toBe(keys.archive);
  });

  it('names the object and the bad field: a non-list drills, a negative size', () => {
    expect(() => parseManifest(text({ ...good, drills: 'yes' }), keys.manifest)).toThrow(
      ManifestInvalidError,
    );
    expect(() => parseManifest(text({ ...good, drills: 'yes' }), keys.manifest)).toThrow(
      new RegExp(`manifest ${keys.manifest} is invalid: drills: .*expected array`),
    );
    expect(() =>
      parseManifest(text({ ...good, archive: { ...good.archive, bytes: -1 } }), keys.manifest),
    ).toThrow(/archive\.bytes: /);
    expect(() => parseManifest('[1]', keys.manifest)).toThrow(/not a pgshelf manifest/);
    expect(() => parseManifest('{', keys.manifest)).toThrow(/is not valid JSON/);
  });

  it('refuses a manifest over the size cap before parsing it', () => {
    const big = text({ ...good, padding: 'x'.repeat(MANIFEST_MAX_BYTES) });
    expect(() => parseManifest(big, keys.manifest)).toThrow(
      new RegExp(`larger than ${MANIFEST_MAX_BYTES} bytes`),
    );
  });

  it("refuses an archive that is not the manifest's own sibling, and a manifest of another backup", () => {
    const other = backupKeys('billing', at, 'abcd1234').archive;
    expect(() =>
      parseManifest(text({ ...good, archive: { ...good.archive, key: other } }), keys.manifest),
    ).toThrow(
      /names the archive "billing\/2026\/11\/billing_20261125T020000Z_abcd1234.sql.gz", which is not its own/,
    );
    const elsewhere = backupKeys('shop', at, 'ffff0000').manifest;
    expect(() => parseManifest(text(good), elsewhere)).toThrow(ManifestInvalidError);
  });
});

describe('manifest signatures', () => {
  it('accepts a signed manifest and refuses an unsigned one when the key is set', () => {
    expect(parseManifest(text(signed(good)), keys.manifest, { signingKey: KEY }).id).toBe('abcd1234');
    expect(() => parseManifest(text(good), keys.manifest, { signingKey: KEY })).toThrow(
      ManifestSignatureError,
    );
    expect(() => parseManifest(text(good), keys.manifest, { signingKey: KEY })).toThrow(
      /is not signed\. PGSHELF_MANIFEST_KEY is set/,
    );
  });

  it('refuses a tampered sha256, a tampered archive.key and another key', () => {
    const s = signed(good);
    const sha = { ...s, archive: { ...s.archive, sha256: 'f'.repeat(64) } };
    expect(() => parseManifest(text(sha), keys.manifest, { signingKey: KEY })).toThrow(/does not match/);
    const moved = { ...s, archive: { ...s.archive, key: keys.archive + '.age' } };
    expect(() => parseManifest(text(moved), keys.manifest, { signingKey: KEY })).toThrow(
      ManifestSignatureError,
    );
    expect(() => parseManifest(text(s), keys.manifest, { signingKey: KEY.replace('k', 'K') })).toThrow(
      ManifestSignatureError,
    );
  });

  it('signs the sorted-keys JSON that jq -cS prints, so anyone can check it by hand', () => {
    const s = signed({ ...good, tables: { 'public."Ünïcode"': 3, 'app.a': 1 } });
    expect(canonicalJson({ b: [1, { d: 1, c: 'é' }], a: null })).toBe('{"a":null,"b":[1,{"c":"é","d":1}]}');
    const jq = execFileSync('jq', ['-cSj', 'del(.signature)'], { input: text(s) }).toString();
    const mac = execFileSync('openssl', ['dgst', '-sha256', '-hmac', KEY, '-r'], { input: jq })
      .toString()
      .split(' ')[0];
    expect(s.signature).toBe(`hmac-sha256:${mac}`);
  });
});

describe('settings', () => {
  it('refuses a short PGSHELF_MANIFEST_KEY without printing it, with an example', () => {
    const env = { POSTGRES_DB: 'shop', PGSHELF_MANIFEST_KEY: 'secret-but-short' };
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(/at least 32 .*PGSHELF_MANIFEST_KEY=\$\(openssl rand -hex 32\)/);
    expect(() => loadConfig(env)).not.toThrow(/secret-but-short/);
    expect(loadConfig({ POSTGRES_DB: 'shop', PGSHELF_MANIFEST_KEY: KEY }).manifestKey).toBe(KEY);
  });

  it('refuses PGSHELF_ORPHAN_GRACE=0: a running backup could lose its upload', () => {
    expect(() => loadConfig({ POSTGRES_DB: 'shop', PGSHELF_ORPHAN_GRACE: '0' })).toThrow(
      /PGSHELF_ORPHAN_GRACE="0" is invalid: .*at least 1 hour.*PGSHELF_ORPHAN_GRACE=24/,
    );
    expect(loadConfig({ POSTGRES_DB: 'shop', PGSHELF_ORPHAN_GRACE: '1' }).orphanGraceMs).toBe(3_600_000);
  });

  it('never logs the key', () => {
    let out = '';
    const sink = new Writable({ write: (c: Buffer, _e, cb) => ((out += c.toString()), cb()) });
    const config = loadConfig({ POSTGRES_DB: 'shop', PGSHELF_MANIFEST_KEY: KEY });
    createLogger('info', sink).info({ config, env: { PGSHELF_MANIFEST_KEY: KEY } }, 'settings');
    expect(out).toContain('settings');
    expect(out).not.toContain(KEY);
  });
});
