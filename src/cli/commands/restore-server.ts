import type { Command } from 'commander';
import { inProcessAlerts } from '../../alerts/in-process.js';
import { restoreGlobals, type GlobalsRestoreResult } from '../../archive/globals.js';
import { manifestTrust } from '../../catalog/manifest.js';
import { serverSlot } from '../../catalog/servers.js';
import type { Config } from '../../config/index.js';
import { AbortedError, CommandFailed, ConfigError, TargetExistsError, errorMessage } from '../../errors.js';
import { createRegistry } from '../../jobs/registry.js';
import { restoreNonce, type RestoreResult } from '../../jobs/restore.js';
import { formatBytes, formatDuration } from '../format.js';
import { ProgressLine } from '../progress.js';
import { printJson, type Runtime } from '../runtime.js';

interface Options {
  fromServer: string;
  slot: string;
  at?: string;
  dryRun?: boolean;
  globals: boolean;
  json?: boolean;
}

/** One database's outcome. */
interface DatabaseOutcome {
  readonly database: string;
  readonly backupId: string;
  readonly slot: string | null;
  readonly owner: string | null;
  readonly status: 'restored' | 'exists' | 'failed' | 'planned';
  readonly bytes: number;
  readonly durationMs: number;
  readonly error: string | null;
}

/** `host:port`, the last colon separating them (a socket directory may be the host). */
export function parseServer(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  const host = text.slice(0, at);
  const port = Number(text.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(
      `--from-server "${text}" is not HOST:PORT: give the server the backups were made on, as \`pgshelf list ` +
        '--all` shows it, e.g. --from-server db.internal:5432',
    );
  }
  return { host, port };
}

/**
 * The restores' settings: the command's POSTGRES_* connection (the new server) for every database, whatever
 * PGSHELF_CONFIG lists (its entries point at the server that was lost).
 */
function ontoTarget(config: Config): Config {
  return Object.freeze({ ...config, databases: [], servers: [], defaultDatabase: undefined });
}

export function registerRestoreServer(program: Command, runtime: () => Runtime): void {
  program
    .command('restore-server')
    .description(
      'restore a whole server onto the one of POSTGRES_HOST/POSTGRES_PORT: the globals of a slot (roles, ' +
        'memberships, tablespaces; existing roles are left as they are), then every database of that slot under ' +
        'its own name and owner. Runs in this process',
    )
    .requiredOption(
      '--from-server <host:port>',
      'the server the backups were made on (see `pgshelf list --all`)',
    )
    .option(
      '--slot <slot>',
      'the slot to restore (local time, e.g. 2026-11-25T02:00:00), or latest',
      'latest',
    )
    .option('--at <time>', 'instead of --slot: the newest slot at or before this time (ISO 8601)')
    .option('--dry-run', 'say what would be restored, restore nothing')
    .option('--no-globals', 'leave the roles and tablespaces out (they must exist already)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: Options) => {
      const rt = runtime();
      const source = parseServer(opts.fromServer);
      let at: Date | undefined;
      if (opts.at !== undefined) {
        at = new Date(opts.at);
        if (Number.isNaN(at.getTime())) {
          throw new ConfigError(
            `--at "${opts.at}" is not a time: write ISO 8601, e.g. --at 2026-11-25T03:00:00Z`,
          );
        }
      }
      const config = ontoTarget(rt.config);
      const target = config.envDefaults.postgres;
      const onto = `${target.host}:${target.port}`;
      const trust = manifestTrust(config);
      await rt.storage.open();
      const plan = await serverSlot(
        rt.storage,
        trust,
        source,
        at !== undefined ? { at } : opts.slot === 'latest' ? {} : { slot: opts.slot },
      );
      const say = (line: string): void => {
        if (!opts.json) process.stdout.write(line + '\n');
      };
      const slotText = plan.slot ?? `by hand, ${plan.globals.manifest.startedAt}`;
      say(
        `server ${opts.fromServer}, slot ${slotText}: globals ${plan.globals.backup.id} and ` +
          `${plan.databases.length} database(s), onto ${onto}`,
      );
      for (const l of plan.left) {
        say(`  not in this slot: "${l.database}" (newest backup ${l.newest}; it may have been dropped)`);
      }
      const outcomes: DatabaseOutcome[] = [];
      const outcome = (
        p: (typeof plan.databases)[number],
        rest: Partial<DatabaseOutcome>,
      ): DatabaseOutcome => ({
        database: p.manifest.database,
        backupId: p.backup.id,
        slot: p.manifest.slot ?? null,
        owner: p.manifest.databaseOwner ?? null,
        status: 'planned',
        bytes: p.manifest.archive.bytes,
        durationMs: 0,
        error: null,
        ...rest,
      });
      const describeGlobals = (g: GlobalsRestoreResult, verb: string, left: string): string =>
        `globals ${g.backupId}: ${g.createdRoles.length} role(s) ${verb}` +
        (g.existingRoles.length ? `; existing, ${left}: ${g.existingRoles.join(', ')}` : '') +
        (g.createdTablespaces.length ? `; tablespaces ${verb}: ${g.createdTablespaces.join(', ')}` : '');
      const globalsDeps = { storage: rt.storage, trust, echo: config.dbEcho, age: config.age };
      /** The slot's globals onto the target: applied, or (dryRun) only read and compared. */
      const applyGlobals = (signal: AbortSignal, dryRun?: true): Promise<GlobalsRestoreResult> =>
        restoreGlobals(
          globalsDeps,
          target,
          source,
          { picked: plan.globals },
          { signal, logger: rt.logger },
          dryRun,
        );
      if (opts.dryRun) {
        let g: GlobalsRestoreResult | null = null;
        if (opts.globals) {
          g = await applyGlobals(new AbortController().signal, true);
          say(describeGlobals(g, 'to create', 'would be left as they are'));
        }
        for (const p of plan.databases) {
          outcomes.push(outcome(p, {}));
          say(
            `  would restore "${p.manifest.database}" from backup ${p.backup.id} (${formatBytes(p.manifest.archive.bytes)})`,
          );
        }
        if (opts.json)
          printJson({
            server: opts.fromServer,
            onto,
            slot: plan.slot,
            dryRun: true,
            globals: g,
            databases: outcomes,
            left: plan.left,
          });
        return;
      }

      const abort = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void =>
        abort.abort(new AbortedError(`interrupted by ${signal}`));
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      // Each database's restore raises restore.succeeded or restore.failed as `restore --in-process` does; the
      // command waits for their delivery at the end (alertsFlushMs at most from each restore's end).
      const flushes: Promise<void>[] = [];
      try {
        let globals: GlobalsRestoreResult | null = null;
        if (opts.globals) {
          globals = await applyGlobals(abort.signal);
          say(describeGlobals(globals, 'created', 'left as they are'));
        }
        const { run } = createRegistry({ config, storage: rt.storage, logger: rt.logger }).restore;
        const warnings = new Set<string>();
        for (const p of plan.databases) {
          const name = p.manifest.database;
          const progress = new ProgressLine(process.stderr, !opts.json || process.stderr.isTTY);
          const alerts = inProcessAlerts({
            config,
            logger: rt.logger,
            storage: rt.storage,
            kind: 'restore',
            database: name,
            redisAnswers: () => Promise.resolve(false), // restores keep no alert state
          });
          await alerts?.started();
          try {
            const r = (await run(
              {
                database: name,
                backup: p.backup.id,
                into: name,
                nonce: restoreNonce(),
                ...(p.manifest.databaseOwner ? { owner: p.manifest.databaseOwner } : {}),
              },
              { signal: abort.signal, logger: rt.logger, progress: (x) => progress.update(x) },
            )) as RestoreResult;
            alerts?.succeeded(r);
            for (const w of r.warnings) warnings.add(w);
            outcomes.push(
              outcome(p, { status: 'restored', owner: r.owner, bytes: r.bytes, durationMs: r.durationMs }),
            );
            say(
              `restored "${name}" from backup ${p.backup.id} (owner ${r.owner}): ${formatBytes(r.bytes)}, ` +
                formatDuration(r.durationMs),
            );
          } catch (err) {
            const exists = err instanceof TargetExistsError;
            // A database already there is left as it is on purpose: no failure to report.
            if (!exists) alerts?.failed(err);
            if (abort.signal.aborted) throw err;
            outcomes.push(outcome(p, { status: exists ? 'exists' : 'failed', error: errorMessage(err) }));
            say(
              exists
                ? `exists: "${name}" is on ${onto} already, left as it is`
                : `FAILED "${name}": ${errorMessage(err)}`,
            );
          } finally {
            progress.done();
            if (alerts) flushes.push(alerts.flush());
          }
        }
        for (const w of warnings) process.stderr.write(`pgshelf: warning: ${w}\n`);
        const failed = outcomes.filter((o) => o.status === 'failed');
        // With failures the command's one JSON document is the error (exit 1), naming them.
        if (opts.json && failed.length === 0) {
          printJson({
            server: opts.fromServer,
            onto,
            slot: plan.slot,
            globals,
            databases: outcomes,
            left: plan.left,
          });
        }
        if (failed.length > 0) {
          throw new CommandFailed(
            `${failed.length} of ${outcomes.length} database(s) not restored: ${failed.map((f) => f.database).join(', ')}`,
            1,
          );
        }
      } finally {
        await Promise.all(flushes);
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
