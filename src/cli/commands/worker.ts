import type { Command } from 'commander';
import { requireDatabases } from '../../config/index.js';
import { installShutdown } from '../../worker/shutdown.js';
import { startWorker } from '../../worker/index.js';
import type { Runtime } from '../runtime.js';

export function registerWorker(program: Command, runtime: (level?: string) => Runtime): void {
  program
    .command('worker')
    .description('run a worker: take jobs from the queues and run them until SIGTERM')
    .action(async () => {
      const rt = runtime('info');
      requireDatabases(rt.config, 'a worker');
      await rt.storage.open();
      const worker = startWorker({ config: rt.config, storage: rt.storage, logger: rt.logger });
      const shutdown = installShutdown({
        logger: rt.logger,
        stop: async () => {
          await worker.close();
          await rt.close();
        },
        force: () => {
          worker.abortAll('worker was forced to stop');
          // The process exits right after this: temp files must go now, not in the aborts' async clean-up.
          rt.storage.abortWritersNow?.();
        },
        // close() aborts jobs after the grace; past this a job stuck in a call that never returns is left behind.
        deadlineMs: rt.config.shutdownGraceMs + 15_000,
      });
      // Runs until a signal; the shutdown handler exits the process.
      await new Promise<void>(() => {});
      shutdown.dispose();
    });
}
