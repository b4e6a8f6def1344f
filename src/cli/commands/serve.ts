import type { Command } from 'commander';
import { createMonitor } from '../../monitor/index.js';
import { installShutdown } from '../../worker/shutdown.js';
import type { Runtime } from '../runtime.js';

export function registerServe(program: Command, runtime: (level?: string) => Runtime): void {
  program
    .command('serve')
    .description(
      'serve /healthz, /readyz, /metrics (Prometheus) and the dashboard on PGSHELF_HTTP_HOST:PGSHELF_HTTP_PORT ' +
        'until SIGTERM; off loopback, PGSHELF_HTTP_TOKEN is required',
    )
    .addHelpText(
      'after',
      '\nEvery route but /healthz asks for PGSHELF_HTTP_TOKEN when it is set (Authorization: Bearer <token>, ' +
        'or basic auth with the token as password).\nState comes from the storage and Redis only, so one serve ' +
        'shows every worker. See "Monitoring" in the README for the metrics and alert rules.',
    )
    .action(async () => {
      // Loaded here, not at the top: express, bull-board and prom-client cost every other command (a worker
      // above all) some 10 MB of memory that only `serve` uses.
      const [{ requiredToken }, { startServer }] = await Promise.all([
        import('../../http/auth.js'),
        import('../../http/server.js'),
      ]);
      const rt = runtime('info');
      const { host, port } = rt.config.http;
      // Off loopback without a token: refuse before opening anything.
      const token = requiredToken(host, rt.config.http.token);
      await rt.storage.open();
      const monitor = createMonitor({ config: rt.config, storage: rt.storage, logger: rt.logger });
      const http = await startServer({ monitor, host, port, token }).catch(async (err: unknown) => {
        await monitor.close();
        throw err;
      });
      // Read the storage once now, so the first scrape and /readyz do not wait for it.
      void monitor.status();
      const shutdown = installShutdown({
        logger: rt.logger,
        stop: async () => {
          await http.close(5000);
          await monitor.close();
          await rt.close();
        },
        force: () => http.destroy(),
        deadlineMs: 15_000,
      });
      // Logged once the handler is in: a supervisor that signals on reading this line gets a clean stop.
      rt.logger.info(
        { url: http.url, auth: token === undefined ? 'none (loopback)' : 'token', storage: rt.storage.url },
        `serving on ${http.url}`,
      );
      // Runs until a signal; the shutdown handler exits the process.
      await new Promise<void>(() => {});
      shutdown.dispose();
    });
}
