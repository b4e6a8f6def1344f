import type { Command } from 'commander';
import { alertsFlushMs, startAlerts } from '../../alerts/index.js';
import { requireDatabases } from '../../config/index.js';
import { ConfigError } from '../../errors.js';
import { JOB_KINDS, type JobKind } from '../../queues.js';
import { installShutdown } from '../../worker/shutdown.js';
import { startWorker } from '../../worker/index.js';
import type { Runtime } from '../runtime.js';

export function registerWorker(program: Command, runtime: (level?: string) => Runtime): void {
  program
    .command('worker')
    .description('run a worker: take jobs from the queues and run them until SIGTERM')
    .option(
      '--only <kinds>',
      `take only these kinds of jobs, comma-separated (${JOB_KINDS.join(', ')}), e.g. --only backup,prune ` +
        'on hosts that hold only the age public key',
    )
    .action(async (opts: { only?: string }) => {
      const kinds = opts.only === undefined ? undefined : parseKinds(opts.only);
      const rt = runtime('info');
      requireDatabases(rt.config, 'a worker');
      await rt.storage.open();
      const worker = startWorker({
        config: rt.config,
        storage: rt.storage,
        logger: rt.logger,
        ...(kinds ? { kinds } : {}),
      });
      // Webhooks and pings from the job events; a delivery never fails or delays a job.
      const alerts = startAlerts({ config: rt.config, logger: rt.logger });
      alerts.watch(worker.events);
      const flushMs = alertsFlushMs(rt.config);
      const shutdown = installShutdown({
        logger: rt.logger,
        stop: async () => {
          await worker.close();
          await alerts.close(flushMs);
          await rt.close();
        },
        force: () => {
          worker.abortAll('worker was forced to stop');
          // The process exits right after this: temp files must go now, not in the aborts' async clean-up.
          rt.storage.abortWritersNow?.();
        },
        // close() aborts jobs after the grace; past this a job stuck in a call that never returns is left behind.
        deadlineMs: rt.config.shutdownGraceMs + flushMs + 15_000,
      });
      // Runs until a signal; the shutdown handler exits the process.
      await new Promise<void>(() => {});
      shutdown.dispose();
    });
}

/** `backup,prune` -> the job kinds, each checked. */
function parseKinds(text: string): JobKind[] {
  const kinds = text.split(',').map((k) => k.trim());
  const unknown = kinds.filter((k) => !(JOB_KINDS as readonly string[]).includes(k));
  if (unknown.length > 0 || kinds.length === 0) {
    throw new ConfigError(
      `--only ${JSON.stringify(text)}: ${unknown.map((k) => JSON.stringify(k)).join(', ')} is not a kind of ` +
        `job; use some of ${JOB_KINDS.join(', ')}, e.g. --only backup,prune`,
    );
  }
  return [...new Set(kinds)] as JobKind[];
}
