/**
 * PostgreSQL settings shared by the environment and the YAML file: the TLS mode and root certificate, and the
 * environment child processes (pg_dump, psql, createdb) may see.
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { SSL_MODES, type Env, type SslMode, type SslSettings } from './types.js';
import { ConfigError } from '../errors.js';

/**
 * Checks an sslmode and root certificate, from POSTGRES_SSLMODE/POSTGRES_SSLROOTCERT or a YAML entry. `where`
 * names the settings in messages (`POSTGRES_SSLMODE=` or `databases[0].sslmode: `).
 */
export function checkSsl(
  mode: string | undefined,
  rootCert: string | undefined,
  cwd: string,
  names: { readonly mode: string; readonly rootCert: string; readonly sep: string },
): SslSettings {
  if (mode !== undefined && !(SSL_MODES as readonly string[]).includes(mode)) {
    throw new ConfigError(
      `${names.mode}${names.sep}${JSON.stringify(mode)} is invalid: expected one of ${SSL_MODES.join(', ')}, ` +
        `e.g. ${names.mode}${names.sep}verify-full`,
    );
  }
  let file: string | undefined;
  if (rootCert !== undefined) {
    file = path.resolve(cwd, rootCert);
    try {
      accessSync(file, constants.R_OK);
      if (!statSync(file).isFile()) throw Object.assign(new Error(), { code: 'not a file' });
    } catch (err) {
      throw new ConfigError(
        `${names.rootCert}${names.sep}${rootCert}: cannot read ${file} ` +
          `(${(err as NodeJS.ErrnoException).code ?? String(err)}); point it at the PEM file of the CA that ` +
          `signed the server's certificate, e.g. ${names.rootCert}${names.sep}/etc/pgshelf/root.crt`,
      );
    }
  }
  if ((mode === 'verify-ca' || mode === 'verify-full') && file === undefined) {
    throw new ConfigError(
      `${names.mode}${names.sep}${mode} needs ${names.rootCert}, the CA certificate that signed the server's ` +
        `certificate, e.g. ${names.rootCert}${names.sep}/etc/pgshelf/root.crt`,
    );
  }
  return Object.freeze({ sslMode: mode as SslMode | undefined, sslRootCert: file });
}

/** POSTGRES_SSLMODE and POSTGRES_SSLROOTCERT; libpq's own PGSSLMODE/PGSSLROOTCERT are read when those are unset. */
export function parseSsl(env: Env, cwd: string): SslSettings {
  const get = (name: string): string | undefined => (env[name] === '' ? undefined : env[name]);
  // Messages name the variable the value came from, and pgshelf's own when neither is set.
  const pick = (own: string, libpq: string): string =>
    get(own) === undefined && get(libpq) !== undefined ? libpq : own;
  const modeName = pick('POSTGRES_SSLMODE', 'PGSSLMODE');
  const certName = pick('POSTGRES_SSLROOTCERT', 'PGSSLROOTCERT');
  return checkSsl(get(modeName), get(certName), cwd, { mode: modeName, rootCert: certName, sep: '=' });
}

/** Inherited variables a PostgreSQL tool may need: finding programs, locale and time zone, temp files. */
const CHILD_ENV_NAMES = new Set([
  'PATH',
  'HOME',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
  'PGPASSFILE',
  'PGCONNECT_TIMEOUT',
]);

/**
 * The part of pgshelf's environment that child processes inherit. An allowlist: AWS keys, other databases'
 * passwords, REDIS_URL and PGSHELF_* stay in this process. libpq variables that would point a tool somewhere
 * the Node connections do not go (PGHOST, PGSERVICE, PGOPTIONS, ...) are left out too; pgshelf sets what it needs.
 */
export function childBaseEnv(env: Env): Env {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    if (CHILD_ENV_NAMES.has(name) || name.startsWith('LC_')) out[name] = value;
  }
  return Object.freeze(out);
}
