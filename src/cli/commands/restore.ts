import type { Command } from 'commander';
import type { DrillResult } from '../../jobs/drill.js';
import { restoreNonce, type RestoreResult } from '../../jobs/restore.js';
import { createVerifyJob, type VerifyResult } from '../../jobs/verify.js';
import { formatBytes, formatDuration } from '../format.js';
import { ProgressLine } from '../progress.js';
import { printJson, type Runtime } from '../runtime.js';

interface QueueOptions {
  inProcess?: boolean;
  wait: boolean;
  json?: boolean;
}

function queued(kind: string, jobId: string | undefined, json?: boolean): void {
  if (json) printJson({ jobId, queued: true });
  else process.stdout.write(`queued ${kind} job ${jobId}\n`);
}

export function registerRestore(program: Command, runtime: () => Runtime): void {
  program
    .command('restore')
    .description('restore a backup into a new database (createdb, then gunzip | psql in one transaction)')
    .requiredOption('--into <name>', 'database to create; it must not exist')
    .option('--db <name>', 'database whose backups to use (default: POSTGRES_DB)')
    .option('--backup <id>', 'backup id, or latest', 'latest')
    .option(
      '--key <key>',
      'restore this storage key instead (e.g. an archive made by plain pg_dump | gzip, or | gzip | age -r KEY)',
    )
    .option('--no-owner', 'drop ownership and privilege statements: everything belongs to POSTGRES_USER')
    .option(
      '--with-globals',
      "first apply the globals (roles, memberships, tablespaces) of the backup's server and slot, as " +
        'POSTGRES_ADMIN_USER; roles that exist are left as they are and reported',
    )
    .option(
      '--verify-first',
      'read and check the whole archive (size, SHA-256, gunzip, completion line) before any SQL is sent ' +
        '(always on with --key)',
    )
    .option('--in-process', 'run the job in this process instead of on a worker (no Redis needed)')
    .option('--no-wait', 'enqueue the job, print its id and return')
    .option('--json', 'print one JSON document on stdout')
    .action(
      async (
        opts: QueueOptions & {
          into: string;
          db?: string;
          backup: string;
          key?: string;
          owner: boolean;
          verifyFirst?: boolean;
          withGlobals?: boolean;
        },
      ) => {
        const rt = runtime();
        const input = {
          database: opts.db,
          backup: opts.backup,
          ...(opts.key !== undefined ? { key: opts.key } : {}),
          into: opts.into,
          noOwner: !opts.owner,
          ...(opts.verifyFirst ? { verifyFirst: true } : {}),
          ...(opts.withGlobals ? { withGlobals: true } : {}),
          // The restore's identity for every attempt of this job, whatever id the queue gives it.
          nonce: restoreNonce(),
        };
        const { jobId, result } = await rt.submit<RestoreResult>('restore', input, {
          inProcess: opts.inProcess,
          wait: opts.wait,
          json: opts.json,
        });
        if (!result) return queued('restore', jobId, opts.json);
        for (const w of result.warnings ?? []) process.stderr.write(`pgshelf: warning: ${w}\n`);
        if (opts.json) return printJson({ jobId, ...result });
        const g = result.globals;
        if (g) {
          process.stdout.write(
            `globals ${g.backupId} of ${g.server}: ${g.createdRoles.length} role(s) created` +
              (g.existingRoles.length ? `; existing, left as they are: ${g.existingRoles.join(', ')}` : '') +
              '\n',
          );
        }
        process.stdout.write(
          `restored ${result.backupId ? `backup ${result.backupId}` : result.archiveKey} into "${result.database}" ` +
            `(owner ${result.owner}): ${formatBytes(result.bytes)} read, ${formatBytes(result.uncompressedBytes)} ` +
            `of SQL, ${formatDuration(result.durationMs)}` +
            (result.checkedAgainstManifest
              ? ', SHA-256 matched the manifest'
              : ', no manifest to check against') +
            '\n',
        );
        for (const e of result.extensions ?? []) {
          process.stdout.write(`extension ${e.name} (schema ${e.schema}) created as POSTGRES_ADMIN_USER\n`);
        }
      },
    );
}

export function registerVerify(program: Command, runtime: () => Runtime): void {
  program
    .command('verify')
    .description('re-read an archive from storage and check it against its manifest (no PostgreSQL needed)')
    .option('--db <name>', 'database whose backups to use (default: POSTGRES_DB)')
    .option('--backup <id>', 'backup id, or latest', 'latest')
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: { db?: string; backup: string; json?: boolean }) => {
      const rt = runtime();
      const progress = new ProgressLine(process.stderr, !opts.json || process.stderr.isTTY);
      let result: VerifyResult;
      try {
        // Reading storage is all it does, so it runs right here rather than on a worker.
        result = await createVerifyJob({ config: rt.config, storage: rt.storage, logger: rt.logger })(
          { database: opts.db, backup: opts.backup },
          { signal: new AbortController().signal, logger: rt.logger, progress: (p) => progress.update(p) },
        );
      } finally {
        progress.done();
      }
      if (opts.json) return printJson({ ok: true, ...result });
      process.stdout.write(
        `backup ${result.backupId} of "${result.database}" is intact: ${formatBytes(result.bytes)}, SHA-256 ` +
          `${result.sha256} matches the manifest, gunzips to ${formatBytes(result.uncompressedBytes)} of complete ` +
          `SQL (${formatDuration(result.durationMs)})\n`,
      );
    });
}

export function registerDrill(program: Command, runtime: () => Runtime): void {
  program
    .command('drill')
    .description('restore the latest backup into a scratch database, compare row counts, record it, drop it')
    .option('--db <name>', 'database whose backups to drill (default: POSTGRES_DB)')
    .option('--backup <id>', 'backup id, or latest', 'latest')
    .option('--in-process', 'run the job in this process instead of on a worker (no Redis needed)')
    .option('--no-wait', 'enqueue the job, print its id and return')
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: QueueOptions & { db?: string; backup: string }) => {
      const rt = runtime();
      rt.announceStorage(); // a drill records its result beside the backup
      const { jobId, result } = await rt.submit<DrillResult>(
        'drill',
        { database: opts.db, backup: opts.backup },
        { inProcess: opts.inProcess, wait: opts.wait, json: opts.json },
      );
      if (!result) return queued('drill', jobId, opts.json);
      if (opts.json) return printJson({ jobId, ...result });
      process.stdout.write(
        `drill of backup ${result.backupId} of "${result.database}": verified, ${result.tables} tables and ` +
          `${result.rows} rows match the manifest; restore took ${formatDuration(result.restoreMs)}\n`,
      );
    });
}
