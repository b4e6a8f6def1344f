/** Starts the app on host:port, and stops it: in-flight requests finish, idle connections close. */
import type { Server } from 'node:http';
import { once } from 'node:events';
import { ConfigError } from '../errors.js';
import type { Monitor } from '../monitor/index.js';
import { createApp } from './app.js';
import { requiredToken } from './auth.js';

export interface HttpServer {
  readonly server: Server;
  /** http://host:port/ with the port actually bound (for port 0). */
  readonly url: string;
  readonly port: number;
  /** Stops accepting, lets requests in flight finish (at most `graceMs`), then closes every connection. */
  close(graceMs?: number): Promise<void>;
  /** Drops every connection now. */
  destroy(): void;
}

export async function startServer(options: {
  readonly monitor: Monitor;
  readonly host: string;
  readonly port: number;
  readonly token: string | undefined;
}): Promise<HttpServer> {
  const { monitor, host, port } = options;
  // Refuses before binding anything: off loopback a token is required.
  const token = requiredToken(host, options.token);
  const { app } = createApp({ monitor, token });
  const server = app.listen(port, host);
  try {
    await once(server, 'listening');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? `port ${port} is in use: stop what listens there or set PGSHELF_HTTP_PORT`
        : code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND'
          ? `${host} is not an address of this host: set PGSHELF_HTTP_HOST`
          : String(err);
    throw new ConfigError(`cannot listen on ${host}:${port}: ${why}`);
  }
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  const shown = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    server,
    url: `http://${shown}:${bound}/`,
    port: bound,
    close: (graceMs = 10_000) =>
      (closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      })),
    destroy: () => server.closeAllConnections(),
  };
}
