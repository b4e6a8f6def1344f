/**
 * Names shared by the storage layout, the settings and the jobs: path segments for database names, and the
 * name a server's globals go by (`_servers/<host>-<port>/globals`, see catalog/layout.ts).
 */

/** Percent-encodes what a file name or key segment cannot hold: '/', '\', '%', control characters, '.' and '..'. */
export function encodeSegment(name: string): string {
  // eslint-disable-next-line no-control-regex
  const encoded = name.replace(/[%/\\\u0000-\u001f\u007f]/g, (c) =>
    Array.from(Buffer.from(c, 'utf8'), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
  if (encoded === '.' || encoded === '..') return encoded.replace(/\./g, '%2E');
  return encoded;
}

export function decodeSegment(segment: string): string {
  return decodeURIComponent(segment);
}

/** The folder of every server's globals, beside the databases' folders. */
export const SERVERS_DIR = '_servers';
const GLOBALS_RE = /^_servers\/([^/]+)-(\d{1,5})\/globals$/;

/** The name a server's globals go by in storage, jobs and retention: `_servers/<host>-<port>/globals`. */
export function globalsName(host: string, port: number): string {
  return `${SERVERS_DIR}/${encodeSegment(host)}-${port}/globals`;
}

/** The server of a globals name (see globalsName), or undefined for a database name. */
export function parseGlobalsName(name: string): { host: string; port: number } | undefined {
  const m = GLOBALS_RE.exec(name);
  if (!m) return undefined;
  try {
    return { host: decodeSegment(m[1]!), port: Number(m[2]) };
  } catch {
    return undefined;
  }
}

export const isGlobalsName = (name: string): boolean => parseGlobalsName(name) !== undefined;

/** A shell-style glob (`*` any run of characters, `?` one character; nothing else is special) as a RegExp. */
export function globRegExp(glob: string): RegExp {
  const body = Array.from(glob, (c) =>
    c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'),
  ).join('');
  return new RegExp(`^${body}$`, 's');
}

/** Whether discovery takes `name`: one of `include` matches it and none of `exclude` does. */
export function matchesGlobs(name: string, include: readonly string[], exclude: readonly string[]): boolean {
  return include.some((g) => globRegExp(g).test(name)) && !exclude.some((g) => globRegExp(g).test(name));
}
