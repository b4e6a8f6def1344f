/**
 * age keys in the settings: the public keys backups are encrypted to (PGSHELF_AGE_RECIPIENTS, _RECIPIENTS_FILE)
 * and the identity file that decrypts them (PGSHELF_AGE_IDENTITY_FILE). Parsed with age-encryption itself, so
 * what passes here is what it can use. A secret key's text never appears in a message: only its line number.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ageLibrary } from './age-lib.js';
import { ConfigError } from '../errors.js';
import type { AgeSettings, Env } from './types.js';
import { raw, TABLE } from './settings.js';

/** Why a public key is refused, in words an operator can act on. */
function recipientProblem(key: string): string | undefined {
  if (/^(ssh-(ed25519|rsa)|ecdsa-sha2-)/.test(key)) {
    return 'SSH keys are not supported (the age-encryption library reads age keys only): make a key with age-keygen';
  }
  if (key.startsWith('AGE-SECRET-KEY-')) {
    return 'this is a secret key (identity), not a public key: give its public key (`age-keygen -y key.txt`)';
  }
  if (!key.startsWith('age1')) return 'an age public key starts with age1 (`age-keygen` prints it)';
  try {
    new (ageLibrary().Encrypter)().addRecipient(key);
  } catch {
    return 'not a valid age public key (a typo or a cut line?); `age-keygen -y key.txt` prints it';
  }
  return undefined;
}

function checkRecipient(key: string, where: string, example: string): string {
  const problem = recipientProblem(key);
  if (problem) {
    const shown = key.startsWith('AGE-SECRET-KEY-') ? '(a secret key, not shown)' : JSON.stringify(key);
    throw new ConfigError(`${where} ${shown} is invalid: ${problem}, e.g. ${example}`);
  }
  return key;
}

/** `age1..., age1...` (commas or blanks between). */
export function parseRecipientList(text: string, name = 'PGSHELF_AGE_RECIPIENTS'): string[] {
  const example = `${name}=${TABLE.PGSHELF_AGE_RECIPIENTS.example}`;
  return text
    .split(/[\s,]+/)
    .filter((k) => k !== '')
    .map((k) => checkRecipient(k, `${name}: key`, example));
}

/** A recipients file as `age -R` reads it: one public key a line, `#` comments and blank lines allowed. */
export function parseRecipientsFile(text: string, file: string): string[] {
  const out: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const key = line.trim();
    if (key === '' || key.startsWith('#')) return;
    const example = `PGSHELF_AGE_RECIPIENTS_FILE=${TABLE.PGSHELF_AGE_RECIPIENTS_FILE.example}`;
    out.push(checkRecipient(key, `PGSHELF_AGE_RECIPIENTS_FILE (${file}) line ${i + 1}: key`, example));
  });
  return out;
}

/**
 * An identity file as `age -i` reads it (what age-keygen writes): `AGE-SECRET-KEY-1...` lines, `#` comments and
 * blank lines. Returns the secret keys; a bad line is named by its number only.
 */
export function parseIdentityFile(text: string, file: string): string[] {
  const keys: string[] = [];
  const where = (i: number) => `PGSHELF_AGE_IDENTITY_FILE (${file}) line ${i + 1}`;
  text.split(/\r?\n/).forEach((line, i) => {
    const key = line.trim();
    if (key === '' || key.startsWith('#')) return;
    if (key.startsWith('age1')) {
      throw new ConfigError(
        `${where(i)} holds a public key (age1...): PGSHELF_AGE_IDENTITY_FILE is the secret key file ` +
          'age-keygen wrote (AGE-SECRET-KEY-1...); public keys go in PGSHELF_AGE_RECIPIENTS',
      );
    }
    if (!key.startsWith('AGE-SECRET-KEY-')) {
      throw new ConfigError(
        `${where(i)} is not an age secret key: the file must hold AGE-SECRET-KEY-1... lines as age-keygen ` +
          'writes them (SSH keys, passphrases and plugin identities are not supported)',
      );
    }
    try {
      new (ageLibrary().Decrypter)().addIdentity(key);
    } catch {
      throw new ConfigError(`${where(i)} is not a valid age secret key (a typo or a cut line?)`);
    }
    keys.push(key);
  });
  if (keys.length === 0) {
    throw new ConfigError(
      `PGSHELF_AGE_IDENTITY_FILE (${file}) holds no key: it must hold an AGE-SECRET-KEY-1... line, e.g. ` +
        `the output of \`age-keygen -o ${TABLE.PGSHELF_AGE_IDENTITY_FILE.example}\``,
    );
  }
  return keys;
}

function readSettingFile(name: 'PGSHELF_AGE_RECIPIENTS_FILE' | 'PGSHELF_AGE_IDENTITY_FILE', file: string) {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `${name}=${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)}); point it at ` +
        `a readable file, e.g. ${name}=${TABLE[name].example}`,
    );
  }
}

/** Reads and checks the identity file (the job reads it again when it needs the keys: they are not kept). */
export function readIdentityFile(file: string): string[] {
  return parseIdentityFile(readSettingFile('PGSHELF_AGE_IDENTITY_FILE', file), file);
}

/** The age settings: recipients from both variables (duplicates dropped), the identity file checked. */
export function parseAge(env: Env, cwd: string): AgeSettings {
  const listed = raw(env, 'PGSHELF_AGE_RECIPIENTS');
  const fileSetting = raw(env, 'PGSHELF_AGE_RECIPIENTS_FILE');
  const recipients = listed === undefined ? [] : parseRecipientList(listed);
  if (listed !== undefined && recipients.length === 0) {
    throw new ConfigError(
      `PGSHELF_AGE_RECIPIENTS is set but holds no key: give age public keys, e.g. ` +
        `PGSHELF_AGE_RECIPIENTS=${TABLE.PGSHELF_AGE_RECIPIENTS.example}, or unset it`,
    );
  }
  if (fileSetting !== undefined) {
    const file = path.resolve(cwd, fileSetting);
    const fromFile = parseRecipientsFile(readSettingFile('PGSHELF_AGE_RECIPIENTS_FILE', file), file);
    if (fromFile.length === 0) {
      throw new ConfigError(
        `PGSHELF_AGE_RECIPIENTS_FILE (${file}) holds no key: put one age public key (age1...) a line`,
      );
    }
    recipients.push(...fromFile);
  }
  const identitySetting = raw(env, 'PGSHELF_AGE_IDENTITY_FILE');
  const identityFile = identitySetting === undefined ? undefined : path.resolve(cwd, identitySetting);
  if (identityFile !== undefined) readIdentityFile(identityFile);
  return Object.freeze({ recipients: Object.freeze([...new Set(recipients)]), identityFile });
}
