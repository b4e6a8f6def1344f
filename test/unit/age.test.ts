import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { generateHybridIdentity, generateIdentity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { parseIdentityFile, parseRecipientList, parseRecipientsFile } from '../../src/config/age.js';
import { AGE_MAGIC, decryptStage, encryptStages, loadAgeKeys, type AgeKeys } from '../../src/archive/age.js';
import { backupKeys, parseKey } from '../../src/catalog/layout.js';
import { parseManifest } from '../../src/catalog/manifest.js';
import { ConfigError, CorruptArchiveError, DecryptionError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { fakeManifest } from '../helpers/manifests.js';

let dir: string;
let secret: string;
let recipient: string;
let identityFile: string;
let keys: AgeKeys;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgshelf-age-'));
  secret = await generateIdentity();
  recipient = await identityToRecipient(secret);
  identityFile = path.join(dir, 'key.txt');
  await writeFile(identityFile, `# created: 2026-11-26\n# public key: ${recipient}\n${secret}\n`, {
    mode: 0o600,
  });
  keys = await loadAgeKeys(identityFile, silentLogger());
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Runs `input` through the given stages and returns what came out. */
async function run(input: Buffer, ...stages: NodeJS.ReadWriteStream[]): Promise<Buffer> {
  const out: Buffer[] = [];
  const sink = new Writable({
    write: (chunk: Buffer, _e, cb) => {
      out.push(chunk);
      cb();
    },
  });
  // Uneven chunks, so the age chunk boundaries (64 KiB) fall inside them.
  const chunks = function* () {
    for (let i = 0; i < input.length; i += 50_000) yield input.subarray(i, i + 50_000);
  };
  await pipeline(Readable.from(chunks()), ...(stages as [NodeJS.ReadWriteStream]), sink);
  return Buffer.concat(out);
}

const encrypt = (input: Buffer, to = [recipient]) =>
  run(input, ...encryptStages({ format: 'age', recipients: to }));

describe('age settings', () => {
  it('reads public keys from the variable (commas or blanks) and the file (comments), without duplicates', async () => {
    const other = await identityToRecipient(await generateIdentity());
    const file = path.join(dir, 'recipients.txt');
    await writeFile(file, `# escrow key, kept in the safe\n\n${other}\r\n  ${recipient}  \n`);
    const config = loadConfig({
      PGSHELF_AGE_RECIPIENTS: ` ${recipient},${other} `,
      PGSHELF_AGE_RECIPIENTS_FILE: file,
      PGSHELF_AGE_IDENTITY_FILE: identityFile,
    });
    expect(config.age).toEqual({ recipients: [recipient, other], identityFile });
    expect(loadConfig({}).age).toEqual({ recipients: [], identityFile: undefined });
    // The Config never holds a secret key.
    expect(JSON.stringify(config)).not.toContain('AGE-SECRET-KEY');
  });

  it.each([
    ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB', /SSH keys are not supported/],
    ['age1notakey', /not a valid age public key/],
    ['npub1xyz', /starts with age1/],
  ])('refuses %s as a recipient, saying why and giving an example', (key, why) => {
    expect(() => parseRecipientList(key)).toThrow(ConfigError);
    expect(() => parseRecipientList(key)).toThrow(why);
    expect(() => parseRecipientList(key)).toThrow(
      /PGSHELF_AGE_RECIPIENTS: key .* e\.g\. PGSHELF_AGE_RECIPIENTS=age1/,
    );
  });

  it('refuses a secret key given as a recipient without printing it', () => {
    const err = (() => {
      try {
        parseRecipientList(`${recipient},${secret}`);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err?.message).toMatch(/secret key \(identity\), not a public key/);
    expect(err?.message).not.toContain(secret);
  });

  it('names the line of a bad recipients file', () => {
    expect(() => parseRecipientsFile(`# ok\n${recipient}\nage1broken\n`, '/etc/r.txt')).toThrow(
      /PGSHELF_AGE_RECIPIENTS_FILE \(\/etc\/r\.txt\) line 3: key "age1broken" is invalid/,
    );
  });

  it('reads identity files as age-keygen writes them, and names a bad line by number only', () => {
    expect(parseIdentityFile(`# created: x\n# public key: ${recipient}\n${secret}\n`, 'k')).toEqual([secret]);
    const broken = secret.slice(0, -1) + (secret.endsWith('Q') ? 'P' : 'Q');
    for (const [text, why] of [
      [`# c\n${broken}\n`, /line 2 is not a valid age secret key/],
      [`${recipient}\n`, /line 1 holds a public key \(age1\.\.\.\).*go in PGSHELF_AGE_RECIPIENTS/],
      ['-----BEGIN OPENSSH PRIVATE KEY-----\n', /line 1 is not an age secret key/],
      ['# only comments\n', /holds no key/],
    ] as const) {
      expect(() => parseIdentityFile(text, 'k')).toThrow(ConfigError);
      expect(() => parseIdentityFile(text, 'k')).toThrow(why);
      try {
        parseIdentityFile(text, 'k');
      } catch (e) {
        expect((e as Error).message).not.toContain(broken);
      }
    }
  });

  it('fails at start-up on a missing identity file, naming the setting', () => {
    expect(() => loadConfig({ PGSHELF_AGE_IDENTITY_FILE: path.join(dir, 'nope.txt') })).toThrow(
      /PGSHELF_AGE_IDENTITY_FILE=.*nope\.txt: cannot read it \(ENOENT\)/,
    );
    expect(() => loadConfig({ PGSHELF_AGE_RECIPIENTS: ',' })).toThrow(/holds no key/);
  });

  it('warns when others can read the identity file', async () => {
    const file = path.join(dir, 'open.txt');
    await writeFile(file, `${secret}\n`);
    await chmod(file, 0o644);
    const warnings: string[] = [];
    const log = { ...silentLogger(), warn: (_o: unknown, m: string) => warnings.push(m) };
    const loaded = await loadAgeKeys(file, log as never);
    expect(loaded.publicKeys).toEqual([recipient]);
    expect(warnings).toEqual([expect.stringMatching(/can be read by other users \(mode 644\).*chmod 600/)]);
    expect(warnings.join()).not.toContain(secret);
  });
});

describe('age stream stages', () => {
  it.each([0, 1, 65_536, 65_537, 3 * 65_536, 3_000_001])(
    'encrypts %i bytes into an age file that decrypts to the same bytes',
    async (size) => {
      const input = randomBytes(size);
      const encrypted = await encrypt(input);
      expect(encrypted.subarray(0, AGE_MAGIC.length).toString()).toBe(AGE_MAGIC);
      // 16 bytes of tag per 64 KiB chunk, plus the header and nonce.
      expect(encrypted.length).toBeGreaterThan(size + 16 * Math.max(1, Math.ceil(size / 65_536)));
      const decrypted = await run(encrypted, decryptStage(keys, 'x.sql.gz.age'));
      expect(createHash('sha256').update(decrypted).digest('hex')).toBe(
        createHash('sha256').update(input).digest('hex'),
      );
    },
  );

  it('refuses a changed byte or a cut file as damaged, and another key as not among the recipients', async () => {
    const encrypted = await encrypt(randomBytes(200_000));
    const changed = Buffer.from(encrypted);
    changed[changed.length - 70_000]! ^= 1;
    await expect(run(changed, decryptStage(keys, 'x.age'))).rejects.toThrow(CorruptArchiveError);
    await expect(run(changed, decryptStage(keys, 'x.age'))).rejects.toThrow(/x\.age cannot be decrypted/);
    const cut = encrypted.subarray(0, encrypted.length - 1000);
    await expect(run(cut, decryptStage(keys, 'x.age'))).rejects.toThrow(CorruptArchiveError);
    const other = await identityToRecipient(await generateIdentity());
    const notOurs = await encrypt(randomBytes(1000), [other]);
    const err = run(notOurs, decryptStage(keys, 'x.age'));
    await expect(err).rejects.toThrow(DecryptionError);
    await expect(err).rejects.toThrow(
      new RegExp(`none of the keys in PGSHELF_AGE_IDENTITY_FILE .*${recipient}`),
    );
  });

  it('encrypts to every recipient: either key decrypts', async () => {
    const secret2 = await generateIdentity();
    const file2 = path.join(dir, 'key2.txt');
    await writeFile(file2, `${secret2}\n`, { mode: 0o600 });
    const keys2 = await loadAgeKeys(file2, silentLogger());
    const input = randomBytes(100_000);
    const encrypted = await encrypt(input, [recipient, keys2.publicKeys[0]!]);
    expect(await run(encrypted, decryptStage(keys, 'x'))).toEqual(input);
    expect(await run(encrypted, decryptStage(keys2, 'x'))).toEqual(input);
  });

  it('takes post-quantum keys too (age1pq1..., AGE-SECRET-KEY-PQ-1...)', async () => {
    const pqSecret = await generateHybridIdentity();
    const pq = await identityToRecipient(pqSecret);
    expect(parseRecipientList(`${recipient},${pq}`)).toEqual([recipient, pq]);
    const file = path.join(dir, 'pq.txt');
    await writeFile(file, `# post-quantum\n${pqSecret}\n`, { mode: 0o600 });
    const pqKeys = await loadAgeKeys(file, silentLogger());
    expect(pqKeys.publicKeys).toEqual([pq]);
    const input = randomBytes(70_000);
    expect(await run(await encrypt(input, [pq]), decryptStage(pqKeys, 'x'))).toEqual(input);
  });

  it('refuses a file that is not age without reading it whole', async () => {
    const notAge = Buffer.alloc(8 << 20, 'a'); // no newline: the header parser would buffer it all
    await expect(run(notAge, decryptStage(keys, 'x'))).rejects.toThrow(/x has no age header end/);
  });
});

describe('encrypted archives in the layout and the manifest', () => {
  it('names them .sql.gz.age and parses them back as encrypted', () => {
    const keys = backupKeys('app', new Date('2026-11-25T02:00:00Z'), '1a2b3c4d', true);
    expect(keys.archive).toBe('app/2026/11/app_20261125T020000Z_1a2b3c4d.sql.gz.age');
    expect(parseKey(keys.archive)).toMatchObject({ kind: 'archive', encrypted: true, base: keys.base });
    expect(parseKey(keys.archive.slice(0, -4))).toMatchObject({ kind: 'archive', encrypted: false });
  });

  it('refuses a manifest whose encryption and archive name disagree', () => {
    const plain = fakeManifest('app', new Date('2026-11-25T02:00:00Z'), '1a2b3c4d');
    const key = plain.archive.key.replace(/\.sql\.gz$/, '.manifest.json');
    const lying = { ...plain, encryption: { format: 'age', recipients: [recipient] } };
    expect(() => parseManifest(JSON.stringify(lying), key)).toThrow(/says its archive is encrypted/);
    const encrypted = { ...lying, archive: { ...plain.archive, key: `${plain.archive.key}.age` } };
    expect(parseManifest(JSON.stringify(encrypted), key).encryption?.recipients).toEqual([recipient]);
  });
});
