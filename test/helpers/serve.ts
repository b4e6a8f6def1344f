/** `pgshelf serve` as a child process on a free port, for tests that talk to it over real HTTP. */
import type { Env } from '../../src/config/index.js';
import { waitFor, type RunningCli } from './cli.js';
import { daemon, type useCleanup } from './lifecycle.js';
import { freePort } from './ports.js';

export interface Served {
  readonly cli: RunningCli;
  /** http://127.0.0.1:<port>/ */
  readonly url: string;
  readonly port: number;
}

/** Starts `pgshelf serve` with `env` (PGSHELF_HTTP_PORT is chosen here) and waits until it listens. */
export async function startServe(env: Env, defer: ReturnType<typeof useCleanup>): Promise<Served> {
  const port = await freePort();
  const cli = daemon('serve', { PGSHELF_LOG_LEVEL: 'info', ...env, PGSHELF_HTTP_PORT: String(port) }, defer);
  await waitFor(`pgshelf serve on port ${port}`, () => {
    if (cli.child.exitCode !== null) throw new Error(`pgshelf serve exited: ${cli.stderr()}`);
    return cli.stderr().includes('serving on');
  });
  return { cli, url: `http://127.0.0.1:${port}/`, port };
}

/** GET `path` of a served instance: status, headers and the body parsed as JSON when it is JSON. */
export async function get(
  served: { readonly url: string },
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: unknown; text: string }> {
  const res = await fetch(new URL(path, served.url), { headers });
  const text = await res.text();
  const json = (res.headers.get('content-type') ?? '').includes('application/json');
  return {
    status: res.status,
    headers: res.headers,
    body: json ? (JSON.parse(text) as unknown) : undefined,
    text,
  };
}
