import type { Command } from 'commander';
import os from 'node:os';
import { resolveTarget } from '../../config/index.js';
import type { BackupResult } from '../../jobs/backup.js';
import { formatBytes, formatDuration, shellQuote } from '../format.js';
import { printJson, type Runtime } from '../runtime.js';

interface Options {
  db?: string;
  inProcess?: boolean;
  wait: boolean;
  /** commander turns --no-owner into owner: false */
  owner: boolean;
  json?: boolean;
}

export function registerBackup(program: Command, runtime: () => Runtime): void {
  program
    .command('backup')
    .description('dump a database with pg_dump, gzip it and store it with its manifest')
    .option('--db <name>', 'database to back up (default: POSTGRES_DB)')
    .option('--in-process', 'run the job in this process instead of on a worker (no Redis needed)')
    .option('--no-wait', 'enqueue the job, print its id and return')
    .option('--no-owner', 'dump without ownership and privileges, to restore under any owner')
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: Options) => {
      const rt = runtime();
      rt.announceStorage();
      const input = { database: opts.db, noOwner: !opts.owner };
      const { jobId, result } = await rt.submit<BackupResult>('backup', input, {
        inProcess: opts.inProcess,
        wait: opts.wait,
        json: opts.json,
      });
      if (!result) {
        if (opts.json) printJson({ jobId, queued: true });
        else process.stdout.write(`queued backup job ${jobId}\n`);
        return;
      }
      if (opts.json) {
        printJson({ jobId, ...result });
        return;
      }
      const user = resolveTarget(rt.config, result.database).postgres.user ?? os.userInfo().username;
      process.stdout.write(
        `backup ${result.id} of "${result.database}": ${formatBytes(result.bytes)} ` +
          `(${formatBytes(result.uncompressedBytes)} uncompressed), ${result.tables} tables, ` +
          `${result.rows} rows, ${formatDuration(result.durationMs)}\n` +
          `archive:  ${result.archiveLocation}\n` +
          `manifest: ${result.manifestLocation}\n` +
          `sha256:   ${result.sha256}\n` +
          (result.archiveLocation.startsWith('/')
            ? `restore by hand: createdb --owner=${shellQuote(user)} NEW_DB && ` +
              `gunzip -c ${shellQuote(result.archiveLocation)} | psql -X -v ON_ERROR_STOP=1 -d NEW_DB\n`
            : ''),
      );
    });
}
