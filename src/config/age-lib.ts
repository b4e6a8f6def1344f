/**
 * age-encryption, loaded the first time a key is checked or used: its cryptography (@noble, post-quantum keys
 * included) is ~3 MB of a process's memory, which a worker without PGSHELF_AGE_* settings never needs. Loaded
 * synchronously (Node's require of an ES module, Node 20.19 and later, which age-encryption asks for anyway),
 * so the settings are still checked where they are read.
 */
import { createRequire } from 'node:module';

type AgeLibrary = typeof import('age-encryption');
let library: AgeLibrary | undefined;

export function ageLibrary(): AgeLibrary {
  library ??= createRequire(import.meta.url)('age-encryption') as AgeLibrary;
  return library;
}
