import type { Command } from 'commander';
import os from 'node:os';
import { findServer, resolveTarget } from '../../config/index.js';
import { globalsName, parseGlobalsName } from '../../catalog/layout.js';
import { ConfigError } from '../../errors.js';
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
  globals?: boolean;
  server?: string;
}

export function registerBackup(program: Command, runtime: () => Runtime): void {
  program
    .command('backup')
    .description('dump a database with pg_dump, gzip it and store it with its manifest')
    .option('--db <name>', 'database to back up (default: POSTGRES_DB)')
    .option('--in-process', 'run the job in this process instead of on a worker (no Redis needed)')
    .option('--no-wait', 'enqueue the job, print its id and return')
    .option('--no-owner', 'dump without ownership and privileges, to restore under any owner')
    .option(
      '--globals',
      "back up the server's globals instead (roles, memberships, tablespaces: pg_dumpall --globals-only)",
    )
    .option(
      '--server <host:port>',
      'with --globals: a `servers:` entry of PGSHELF_CONFIG (default: POSTGRES_HOST)',
    )
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: Options) => {
      const rt = runtime();
      rt.announceStorage();
      let database = opts.db;
      if (opts.globals) {
        if (opts.db !== undefined)
          throw new ConfigError('--globals backs up a server, not a database: drop --db');
        const server = opts.server === undefined ? undefined : findServer(rt.config, opts.server);
        if (opts.server !== undefined && !server) {
          throw new ConfigError(
            `--server ${opts.server} is not a \`servers:\` entry of PGSHELF_CONFIG (known: ` +
              `${rt.config.servers.map((s) => s.id).join(', ') || 'none'}); leave it out for POSTGRES_HOST`,
          );
        }
        const pg = server?.postgres ?? rt.config.envDefaults.postgres;
        database = globalsName(pg.host, pg.port);
      }
      const input = { database, noOwner: !opts.owner };
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
      const globals = parseGlobalsName(result.database);
      process.stdout.write(
        (globals
          ? `backup ${result.id} of the globals of ${globals.host}:${globals.port} (${result.database}): ` +
            `${formatBytes(result.bytes)} (${formatBytes(result.uncompressedBytes)} uncompressed), ` +
            `${formatDuration(result.durationMs)}\n`
          : `backup ${result.id} of "${result.database}": ${formatBytes(result.bytes)} ` +
            `(${formatBytes(result.uncompressedBytes)} uncompressed), ${result.tables} tables, ` +
            `${result.rows} rows, ${formatDuration(result.durationMs)}\n`) +
          `archive:  ${result.archiveLocation}\n` +
          `manifest: ${result.manifestLocation}\n` +
          `sha256:   ${result.sha256}\n` +
          (result.encryption ? `age:      encrypted to ${result.encryption.recipients.join(', ')}\n` : '') +
          (result.archiveLocation.startsWith('/')
            ? 'restore by hand: ' +
              (globals ? '' : `createdb --owner=${shellQuote(user)} NEW_DB && `) +
              (result.encryption
                ? `age -d -i KEY_FILE ${shellQuote(result.archiveLocation)} | ${unzip(result.archiveLocation, '')}`
                : unzip(result.archiveLocation, ` ${shellQuote(result.archiveLocation)}`)) +
              (globals ? ' | psql -X -d postgres\n' : ' | psql -X -v ON_ERROR_STOP=1 -d NEW_DB\n')
            : ''),
      );
    });
}

/** The by-hand decompressor of an archive (`file` empty: reading stdin): gunzip, or zstd for `.zst` (`.zst.age`). */
function unzip(location: string, file: string): string {
  if (/\.zst(\.age)?$/.test(location)) return `zstd -dc${file}`;
  return file ? `gunzip -c${file}` : 'gunzip';
}
