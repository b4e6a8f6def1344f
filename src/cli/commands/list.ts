import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { listBackups } from '../../catalog/backups.js';
import { missingDatabases, type MissingDatabases } from '../../catalog/servers.js';
import { ConfigError } from '../../errors.js';
import { formatBytes, formatDuration, table } from '../format.js';
import { printJson, type Runtime } from '../runtime.js';

interface Options {
  db?: string;
  json?: boolean;
}

export function registerList(program: Command, runtime: () => Runtime): void {
  program
    .command('list')
    .description('list backups, newest first')
    .option('--db <name>', 'only this database (default: POSTGRES_DB)')
    .option('--all', 'every database in the storage')
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: Options & { all?: boolean }) => {
      const rt = runtime();
      if (!opts.all && opts.db === undefined && rt.config.databases.length === 0) {
        throw new ConfigError(
          'no database given: pass --db NAME or --all, or set POSTGRES_DB, e.g. POSTGRES_DB=fractal_db',
        );
      }
      const database = opts.all ? undefined : (opts.db ?? rt.config.defaultDatabase);
      const settings = rt.config.storage;
      if (settings.kind === 'file' && !existsSync(settings.root)) {
        // "no backups" would hide a mistyped folder or a command run from another directory.
        throw new ConfigError(
          `the storage folder ${settings.root} does not exist, so nothing was ever backed up there: check ` +
            'PGSHELF_STORAGE (a relative folder is taken from the current directory), e.g. ' +
            'PGSHELF_STORAGE=file:///var/backups/pgshelf',
        );
      }
      const backups = await listBackups(rt.storage, rt.config, database);
      // Databases of `servers:` entries that are gone from their server: their backups stay, and are listed.
      const missing: MissingDatabases[] =
        rt.config.servers.length > 0 ? await missingDatabases(rt.config, rt.storage, rt.logger) : [];
      const gone = missing.flatMap((m) => m.missing.map((d) => `"${d}" no longer exists on ${m.server}`));
      const unlisted = missing.flatMap((m) => (m.error ? [`cannot list ${m.server}: ${m.error}`] : []));
      if (opts.json) {
        printJson({ storage: rt.storage.url, database: database ?? null, backups, missing });
        return;
      }
      const notes = [...gone, ...unlisted].map((l) => `${l}\n`).join('');
      if (backups.length === 0) {
        process.stdout.write(
          `no backups${database ? ` of "${database}"` : ''} in ${rt.storage.url}\n` + notes,
        );
        return;
      }
      const now = Date.now();
      const rows = [['ID', 'DATABASE', 'STARTED (UTC)', 'AGE', 'SIZE', 'DURATION', 'VERIFIED', 'ARCHIVE']];
      for (const b of backups) {
        rows.push([
          b.id,
          b.database,
          b.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ''),
          formatDuration(now - Date.parse(b.startedAt)),
          b.bytes === null ? '-' : formatBytes(b.bytes),
          b.durationMs === null ? '-' : formatDuration(b.durationMs),
          b.status === 'orphan'
            ? 'ORPHAN (no manifest)'
            : b.status === 'missing'
              ? 'MISSING (no archive)'
              : b.status === 'invalid'
                ? 'INVALID (see below)'
                : b.verified
                  ? `yes ${b.verifiedAt?.slice(0, 10) ?? ''}`
                  : 'no',
          b.archive ?? '-',
        ]);
      }
      const problems = backups.flatMap((b) => (b.problem ? [`${b.id}: ${b.problem}`] : []));
      process.stdout.write(
        table(rows) +
          '\n' +
          problems.map((p) => `${p}\n`).join('') +
          (gone.length > 0
            ? `missing databases (backups kept):\n${gone.map((g) => `  ${g}\n`).join('')}`
            : '') +
          unlisted.map((u) => `${u}\n`).join(''),
      );
    });
}
