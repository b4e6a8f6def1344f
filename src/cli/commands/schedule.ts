import type { Command } from 'commander';
import { alertsFlushMs, startAlerts } from '../../alerts/index.js';
import { requireDatabases } from '../../config/index.js';
import type { PruneResult } from '../../jobs/prune.js';
import { startScheduler } from '../../scheduler/index.js';
import { nextSlot } from '../../scheduler/slots.js';
import { startWatchdog } from '../../scheduler/watchdog.js';
import { installShutdown } from '../../worker/shutdown.js';
import { table } from '../format.js';
import { printJson, type Runtime } from '../runtime.js';

export function registerPrune(program: Command, runtime: () => Runtime): void {
  program
    .command('prune')
    .description('apply the retention policy: delete backups no rule keeps, orphans and incomplete uploads')
    .option('--db <name>', 'database whose backups to prune (default: POSTGRES_DB)')
    .option('--dry-run', 'decide and report, delete nothing')
    .option('--in-process', 'run the job in this process instead of on a worker (no Redis needed)')
    .option('--no-wait', 'enqueue the job, print its id and return')
    .option('--json', 'print one JSON document on stdout')
    .action(
      async (opts: { db?: string; dryRun?: boolean; inProcess?: boolean; wait: boolean; json?: boolean }) => {
        const rt = runtime();
        if (!opts.dryRun) rt.announceStorage();
        // A dry run changes nothing, so it runs here; a real prune goes to a worker unless --in-process.
        const { jobId, result } = await rt.submit<PruneResult>(
          'prune',
          { database: opts.db, dryRun: opts.dryRun === true },
          { inProcess: opts.inProcess || opts.dryRun, wait: opts.wait, json: opts.json },
        );
        if (!result) {
          if (opts.json) printJson({ jobId, queued: true });
          else process.stdout.write(`queued prune job ${jobId}\n`);
          return;
        }
        if (opts.json) {
          if (opts.dryRun) {
            printJson({
              keep: result.keep,
              delete: result.delete,
              reasons: result.reasons,
              ignored: result.ignored,
              blocked: result.blocked,
            });
          } else printJson({ jobId, ...result });
          return;
        }
        const verb = opts.dryRun ? 'would delete' : 'deleted';
        const rows = [['ID', 'DECISION', 'WHY']];
        for (const id of [...result.keep, ...result.delete]) {
          rows.push([id, result.keep.includes(id) ? 'keep' : verb, (result.reasons[id] ?? []).join('; ')]);
        }
        // Results from a worker of an older version may lack `ignored`.
        const ignored = result.ignored ?? [];
        process.stdout.write(
          (result.blocked ? `nothing deleted: ${result.blocked}\n` : '') +
            table(rows) +
            ignored.map((i) => `\nignored ${i.key}: ${i.reason}`).join('') +
            `\n${result.keep.length} kept, ${result.delete.length} ${verb}` +
            (ignored.length ? `, ${ignored.length} ignored` : '') +
            (result.incompleteUploads.length
              ? `, ${result.incompleteUploads.length} incomplete uploads ${opts.dryRun ? 'to abort' : 'aborted'}`
              : '') +
            '\n',
        );
      },
    );
}

export function registerScheduler(program: Command, runtime: (level?: string) => Runtime): void {
  program
    .command('scheduler')
    .description(
      'enqueue backups (and drills) for every database at each slot of its schedule, until SIGTERM',
    )
    .action(async () => {
      const rt = runtime('info');
      requireDatabases(rt.config, 'the scheduler');
      const flushMs = alertsFlushMs(rt.config);
      // Installed before startScheduler, which may log "scheduler started" at once (no catch-up slot to
      // enqueue): a SIGTERM sent on that line must find the handler. The handler runs from the event loop, so
      // after the synchronous lines below have made scheduler, alerts and watchdog.
      installShutdown({
        logger: rt.logger,
        stop: async () => {
          await Promise.all([scheduler.stop(), watchdog.stop()]);
          await alerts.close(flushMs);
          await rt.close();
        },
        force: () => undefined,
        // stop() drops Redis connections after the grace; this is the backstop should even that block.
        deadlineMs: rt.config.shutdownGraceMs + flushMs + 5_000,
      });
      const scheduler = startScheduler({ config: rt.config, logger: rt.logger });
      // The watchdog raises backup.overdue from here, so it fires when no worker runs at all.
      const alerts = startAlerts({ config: rt.config, logger: rt.logger });
      const watchdog = startWatchdog({ config: rt.config, storage: rt.storage, logger: rt.logger, alerts });
      await scheduler.ready;
      for (const d of rt.config.databases) {
        rt.logger.info(
          {
            database: d.name,
            schedule: d.schedule,
            timezone: d.timezone,
            next: nextSlot(d.schedule, d.timezone, new Date()).at.toISOString(),
            drill: d.drillSchedule ?? null,
          },
          'scheduled',
        );
      }
      await new Promise<void>(() => {});
    });
}
