import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { mapLimit } from '../../concurrency.js';
import { ConfigError, errorMessage } from '../../errors.js';
import {
  manifestTrust,
  readManifest,
  scanBackups,
  type Manifest,
  type StoredBackup,
} from '../../catalog/manifest.js';
import { formatBytes, formatDuration, table } from '../format.js';
import { printJson, type Runtime } from '../runtime.js';

interface Options {
  db?: string;
  json?: boolean;
}

export interface ListedBackup {
  readonly id: string;
  readonly database: string;
  readonly startedAt: string;
  readonly bytes: number | null;
  readonly durationMs: number | null;
  readonly verified: boolean | null;
  readonly verifiedAt: string | null;
  /**
   * complete: manifest and archive; missing: a manifest whose archive is gone (not restorable); invalid: a
   * manifest that cannot be read or trusted (see `problem`); orphan: an archive without a manifest.
   */
  readonly status: 'complete' | 'missing' | 'invalid' | 'orphan';
  readonly archive: string | null;
  readonly manifest: string | null;
  /** Why a backup is missing or invalid; null otherwise. */
  readonly problem: string | null;
}

export async function listBackups(rt: Runtime, database?: string): Promise<ListedBackup[]> {
  const storage = rt.storage;
  const backups = await scanBackups(storage, database);
  const trust = manifestTrust(rt.config);
  return mapLimit(backups, 16, async (b: StoredBackup): Promise<ListedBackup> => {
    let manifest: Manifest | undefined;
    let problem: string | null = null;
    if (b.manifestKey) {
      try {
        manifest = await readManifest(storage, b.manifestKey, trust);
      } catch (err) {
        problem = errorMessage(err);
      }
    }
    const missing = manifest !== undefined && b.archiveKey !== manifest.archive.key;
    if (missing) problem = `archive ${storage.locate(manifest!.archive.key)} is missing`;
    return {
      id: b.id,
      database: b.database,
      startedAt: b.startedAt.toISOString(),
      bytes: manifest?.archive.bytes ?? b.archiveBytes ?? null,
      durationMs: manifest?.durationMs ?? null,
      verified: manifest ? (manifest.drill?.verified ?? false) : null,
      verifiedAt: manifest?.drill?.at ?? null,
      status:
        b.manifestKey === undefined ? 'orphan' : !manifest ? 'invalid' : missing ? 'missing' : 'complete',
      archive: b.archiveKey ? storage.locate(b.archiveKey) : null,
      manifest: b.manifestKey ? storage.locate(b.manifestKey) : null,
      problem,
    };
  });
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
      const backups = await listBackups(rt, database);
      if (opts.json) {
        printJson({ storage: rt.storage.url, database: database ?? null, backups });
        return;
      }
      if (backups.length === 0) {
        process.stdout.write(`no backups${database ? ` of "${database}"` : ''} in ${rt.storage.url}\n`);
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
      process.stdout.write(table(rows) + '\n' + problems.map((p) => `${p}\n`).join(''));
    });
}
