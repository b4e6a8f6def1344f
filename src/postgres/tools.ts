import { execFile } from 'node:child_process';
import { access, constants, readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ToolNotFoundError, VersionMismatchError } from '../errors.js';

const execFileAsync = promisify(execFile);

export type ToolName = 'pg_dump' | 'pg_dumpall' | 'psql' | 'createdb' | 'dropdb';

export interface Tool {
  readonly name: ToolName;
  readonly path: string;
  /** e.g. "15.19" */
  readonly version: string;
  readonly major: number;
  /** Whether this version knows `\restrict` (the CVE-2025-8714 fix): psql refuses meta-commands after it. */
  readonly restrict: boolean;
}

/** The first minor of each major with `\restrict` (CVE-2025-8714, August 2025); 18 had it from the start. */
const RESTRICT_SINCE: Readonly<Record<number, number>> = { 13: 22, 14: 19, 15: 14, 16: 10, 17: 6 };

/** The first version of `major` with `\restrict`, e.g. "15.14"; undefined when no release of it has one. */
export function restrictSince(major: number): string | undefined {
  if (major >= 18) return `${major}.0`;
  const minor = RESTRICT_SINCE[major];
  return minor === undefined ? undefined : `${major}.${minor}`;
}

/** Whether a client of this version ("15.13", "18", "19devel") understands `\restrict`. */
export function supportsRestrict(version: string): boolean {
  const m = /^(\d+)(?:\.(\d+))?/.exec(version);
  if (!m) return false;
  const major = Number(m[1]);
  if (major >= 18) return true;
  const since = RESTRICT_SINCE[major];
  return since !== undefined && m[2] !== undefined && Number(m[2]) >= since;
}

const DEBIAN_ROOT = '/usr/lib/postgresql';

/** Parses `pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)` into "15.19" and 15. */
export function parseToolVersion(output: string): { version: string; major: number } | undefined {
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(output);
  if (!m?.[1]) return undefined;
  const major = Number(m[1]);
  const version = [m[1], m[2], m[3]].filter((p) => p !== undefined).join('.');
  return { version, major };
}

/** Major version from `server_version_num` (150019 -> 15; 90624, i.e. 9.6, -> 9). */
export function serverMajor(versionNum: number): number {
  return Math.floor(versionNum / 10_000);
}

async function executable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function versionOf(
  file: string,
  env: NodeJS.ProcessEnv,
): Promise<{ version: string; major: number } | undefined> {
  try {
    const { stdout } = await execFileAsync(file, ['--version'], { env, timeout: 10_000 });
    return parseToolVersion(stdout);
  } catch {
    return undefined;
  }
}

/** Directories on PATH, in order. */
function pathDirs(env: NodeJS.ProcessEnv): string[] {
  return (env.PATH ?? '').split(path.delimiter).filter((d) => d !== '');
}

const cache = new Map<string, Promise<Tool>>();

/**
 * Finds a client program able to work with a server of major version `major`: PGSHELF_PG_BIN when set, else the
 * version-matched Debian/Ubuntu directory, else the newest /usr/lib/postgresql/N/bin with N >= major, else PATH.
 * pg_dump older than the server refuses to run (and would be unsafe), so that is an error naming both versions.
 */
export function findTool(
  name: ToolName,
  major: number,
  options: { binDir?: string | undefined; env: NodeJS.ProcessEnv },
): Promise<Tool> {
  const key = `${name}|${major}|${options.binDir ?? ''}|${options.env.PATH ?? ''}`;
  let found = cache.get(key);
  if (!found) {
    found = locate(name, major, options);
    cache.set(key, found);
    found.catch(() => cache.delete(key));
  }
  return found;
}

async function locate(
  name: ToolName,
  major: number,
  options: { binDir?: string | undefined; env: NodeJS.ProcessEnv },
): Promise<Tool> {
  const candidates: string[] = [];
  if (options.binDir) {
    candidates.push(path.join(options.binDir, name));
  } else {
    candidates.push(path.join(DEBIAN_ROOT, String(major), 'bin', name));
    const installed = await readdir(DEBIAN_ROOT).catch(() => [] as string[]);
    const newer = installed
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > major)
      .sort((a, b) => a - b);
    for (const n of newer) candidates.push(path.join(DEBIAN_ROOT, String(n), 'bin', name));
    for (const dir of pathDirs(options.env)) candidates.push(path.join(dir, name));
  }
  let tooOld: Tool | undefined;
  let unfixed: Tool | undefined;
  for (const file of candidates) {
    if (!(await executable(file))) continue;
    const v = await versionOf(file, options.env);
    if (!v) continue;
    const tool: Tool = { ...v, name, path: file, restrict: supportsRestrict(v.version) };
    if (v.major < major) tooOld ??= tool;
    else if (tool.restrict || (name !== 'psql' && name !== 'pg_dump' && name !== 'pg_dumpall')) return tool;
    else unfixed ??= tool;
  }
  // A pg_dump from before the fix still writes a plain dump pgshelf restores safely (the caller warns); a psql
  // from before it cannot take the \restrict line every restore starts with.
  if (unfixed && (name === 'pg_dump' || name === 'pg_dumpall')) return unfixed;
  if (unfixed) {
    const need = restrictSince(unfixed.major);
    throw new VersionMismatchError(
      `${unfixed.path} is psql ${unfixed.version}, which cannot take the \\restrict line pgshelf sends first so ` +
        `that psql runs nothing but SQL; that needs psql ${need ?? '18'} or newer (the CVE-2025-8714 fix). ` +
        `Install it (e.g. apt-get install postgresql-client-${need ? unfixed.major : 18}) or point PGSHELF_PG_BIN at ` +
        `its bin directory, e.g. PGSHELF_PG_BIN=/usr/lib/postgresql/${need ? unfixed.major : 18}/bin`,
    );
  }
  if (tooOld) {
    throw new VersionMismatchError(
      `${tooOld.path} is version ${tooOld.version} but the server is PostgreSQL ${major}: ${name} must be at least ` +
        `the server's major version. Install postgresql-client-${major} or point PGSHELF_PG_BIN at its bin ` +
        `directory, e.g. PGSHELF_PG_BIN=/usr/lib/postgresql/${major}/bin`,
    );
  }
  throw new ToolNotFoundError(
    `${name} was not found${options.binDir ? ` in PGSHELF_PG_BIN=${options.binDir}` : ' on PATH'}: install the ` +
      `PostgreSQL ${major} client tools (e.g. apt-get install postgresql-client-${major}) or set ` +
      `PGSHELF_PG_BIN=/usr/lib/postgresql/${major}/bin`,
  );
}
