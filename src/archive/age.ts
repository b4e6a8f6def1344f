/**
 * age encryption of archives (https://age-encryption.org/v1), as stream stages: encrypt after compression when
 * backing up, decrypt before decompression when reading. The file is exactly what `age -r KEY` writes, so
 * `age -d -i key.txt x.sql.gz.age | gunzip | psql` restores it by hand, and what the age tool encrypted restores
 * here. The format's 64 KiB chunks are each authenticated, so memory stays flat whatever the archive's size.
 */
import { stat } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { ageLibrary, readIdentityFile, type AgeSettings } from '../config/index.js';
import { ConfigError, CorruptArchiveError, DecryptionError, PgshelfError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Manifest } from '../catalog/manifest.js';
import { AGE_SUFFIX } from '../catalog/layout.js';
import type { Storage } from '../storage/index.js';
import { WebStage } from './age-stream.js';

/** Every age file starts with this line. */
export const AGE_MAGIC = 'age-encryption.org/v1\n';
/** Largest header read: a few hundred bytes per X25519 recipient, about 1.6 KiB per post-quantum one. */
const HEADER_MAX = 256 * 1024;

/** What a backup's manifest records: the public keys it was encrypted to, never a secret. */
export function encryptionRecord(age: AgeSettings): Manifest['encryption'] {
  return age.recipients.length > 0 ? { format: 'age', recipients: [...age.recipients] } : null;
}

/** The stage that encrypts a compressed archive to `recipients` (nothing to add when there are none). */
export function encryptStages(encryption: Manifest['encryption']): Duplex[] {
  if (!encryption) return [];
  const encrypter = new (ageLibrary().Encrypter)();
  for (const r of encryption.recipients) encrypter.addRecipient(r);
  return [new WebStage((input) => encrypter.encrypt(input))];
}

/** The secret keys read from PGSHELF_AGE_IDENTITY_FILE for one job, and their public keys for messages. */
export interface AgeKeys {
  readonly file: string;
  readonly identities: readonly string[];
  readonly publicKeys: readonly string[];
}

/** Reads the identity file (warning when others can read it). Its keys live as long as the job, no longer. */
export async function loadAgeKeys(file: string, log: Logger): Promise<AgeKeys> {
  const identities = readIdentityFile(file);
  const mode = (await stat(file)).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    log.warn(
      { file, mode: mode.toString(8) },
      `PGSHELF_AGE_IDENTITY_FILE ${file} can be read by other users (mode ${mode.toString(8)}): ` +
        `it decrypts every backup; chmod 600 ${file}`,
    );
  }
  const publicKeys = await Promise.all(identities.map((i) => ageLibrary().identityToRecipient(i)));
  return { file, identities, publicKeys };
}

/** The stage that decrypts an age file with `keys`; `where` names the archive in errors. */
export function decryptStage(keys: AgeKeys, where: string): Duplex {
  const decrypter = new (ageLibrary().Decrypter)();
  for (const identity of keys.identities) decrypter.addIdentity(identity);
  return new WebStage((input) => decrypter.decrypt(input), {
    mapError: (err) => decryptFailure(err, keys, where, undefined),
    // The header is parsed a line at a time: a file that is not age could otherwise be buffered whole.
    maxBeforeReady: {
      bytes: HEADER_MAX + (2 << 20),
      error: () => new CorruptArchiveError(`${where} has no age header end in its first ${HEADER_MAX} bytes`),
    },
  });
}

/** The library's errors as pgshelf's: a key that does not fit, or a damaged file. */
function decryptFailure(err: unknown, keys: AgeKeys, where: string, manifest: Manifest | undefined): Error {
  if (err instanceof PgshelfError) return err;
  const message = errorMessage(err);
  if (/no identity matched/.test(message)) {
    const recipients = manifest?.encryption?.recipients;
    return new DecryptionError(
      `${where} is encrypted with age to ${recipients ? recipients.join(', ') : 'other keys'}, and none of ` +
        `the keys in PGSHELF_AGE_IDENTITY_FILE (${keys.file}: ${keys.publicKeys.join(', ')}) is among them: ` +
        'point PGSHELF_AGE_IDENTITY_FILE at the secret key of one of its recipients',
    );
  }
  return new CorruptArchiveError(
    `${where} cannot be decrypted (age: ${message}): it is truncated or damaged; use another backup`,
    { cause: err },
  );
}

function missingIdentity(where: string, manifest: Manifest | undefined, age: AgeSettings): ConfigError {
  const to = manifest?.encryption ? ` to ${manifest.encryption.recipients.join(', ')}` : '';
  const backupOnly =
    age.recipients.length > 0 ? ' (this host holds public keys only: PGSHELF_AGE_RECIPIENTS)' : '';
  return new ConfigError(
    `${where} is encrypted with age${to}, and PGSHELF_AGE_IDENTITY_FILE is not set${backupOnly}: set it to the ` +
      'secret key file of one of its recipients (what age-keygen wrote), e.g. ' +
      'PGSHELF_AGE_IDENTITY_FILE=/etc/pgshelf/age-identity.txt. Nothing was created',
  );
}

/** The first `max` bytes of a stored object (fewer when it is shorter); the rest is never downloaded. */
async function readHead(storage: Storage, key: string, max: number, signal?: AbortSignal): Promise<Buffer> {
  const controller = new AbortController();
  const abort = () => controller.abort(signal?.reason);
  signal?.addEventListener('abort', abort, { once: true });
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    const body = await storage.openRead(key, { signal: controller.signal });
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        chunks.push(chunk);
        length += chunk.length;
        if (length >= max) break;
      }
    } finally {
      body.destroy();
    }
  } finally {
    signal?.removeEventListener('abort', abort);
  }
  return Buffer.concat(chunks, length).subarray(0, max);
}

/** The header of an age file (through the MAC line), or undefined when `head` holds no complete one. */
function headerOf(head: Buffer): Buffer | undefined {
  const mac = head.indexOf('\n--- ');
  if (mac < 0) return undefined;
  const end = head.indexOf('\n', mac + 1);
  return end < 0 ? undefined : head.subarray(0, end + 1);
}

/**
 * Whether an archive must be decrypted, and with what. Encrypted: the manifest says so; without one (a `--key`
 * restore), the name ends in `.age` or the file starts with age's header. For an encrypted archive this fails
 * before anything else happens: without PGSHELF_AGE_IDENTITY_FILE (ConfigError naming it), or when none of its
 * keys opens the archive's header (DecryptionError naming the keys on both sides).
 */
export async function decryptionFor(
  age: AgeSettings,
  storage: Storage,
  archive: { readonly key: string; readonly manifest: Manifest | undefined },
  log: Logger,
  signal?: AbortSignal,
): Promise<AgeKeys | undefined> {
  const { key, manifest } = archive;
  const where = storage.locate(key);
  let head: Buffer | undefined;
  let encrypted = manifest ? manifest.encryption !== null : key.endsWith(AGE_SUFFIX);
  if (!manifest && !encrypted) {
    head = await readHead(storage, key, HEADER_MAX, signal);
    encrypted = head.subarray(0, AGE_MAGIC.length).toString('latin1') === AGE_MAGIC;
  }
  if (!encrypted) return undefined;
  if (age.identityFile === undefined) throw missingIdentity(where, manifest, age);
  const keys = await loadAgeKeys(age.identityFile, log);
  head ??= await readHead(storage, key, HEADER_MAX, signal);
  const header = headerOf(head);
  if (!head.subarray(0, AGE_MAGIC.length).equals(Buffer.from(AGE_MAGIC)) || !header) {
    throw new CorruptArchiveError(
      `${where} should be encrypted with age but does not start with a complete age header ` +
        `("${AGE_MAGIC.trim()}" ... "---"): it is damaged or not an age file; use another backup`,
    );
  }
  const decrypter = new (ageLibrary().Decrypter)();
  for (const identity of keys.identities) decrypter.addIdentity(identity);
  try {
    await decrypter.decryptHeader(header);
  } catch (err) {
    throw decryptFailure(err, keys, where, manifest);
  }
  log.info({ key, identities: keys.publicKeys }, 'the archive is encrypted with age; its header opens');
  return keys;
}
