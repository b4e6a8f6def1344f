import { execFile } from 'node:child_process';
import { access, constants, readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ToolNotFoundError, VersionMismatchError } from '../errors.js';

const execFileAsync = promisify(execFile);

export type ToolName = 'pg_dump' | 'psql' | 'createdb' | 'dropdb';

export interface Tool {
  readonly name: ToolName;
  readonly path: string;
  /** e.g. "15.19" */
  readonly version: string;
  readonly major: number;
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
  for (const file of candidates) {
    if (!(await executable(file))) continue;
    const v = await versionOf(file, options.env);
    if (!v) continue;
    const tool: Tool = { name, path: file, version: v.version, major: v.major };
    if (v.major >= major) return tool;
    tooOld ??= tool;
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
