import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { errorMessage, StorageError } from '../../errors.js';
import { collectStatus, createMonitor, type DatabaseStatus, type StatusReport } from '../../monitor/index.js';
import { checkRedis } from '../../queues.js';
import { formatBytes, formatDuration, table } from '../format.js';
import { printJson, type Runtime } from '../runtime.js';

const when = (iso: string): string => iso.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC');

function databaseLines(db: DatabaseStatus, now: number): string[] {
  const head =
    `database ${db.name}` +
    (db.schedule
      ? ` (schedule "${db.schedule.schedule}" ${db.schedule.timezone})`
      : ' (found in storage, not configured here)');
  const state = db.missingFrom
    ? `MISSING from ${db.missingFrom} (backups kept)`
    : db.failing
      ? db.overdue?.overdue
        ? 'OVERDUE'
        : db.lastAttempt?.status === 'interrupted'
          ? 'INTERRUPTED'
          : 'FAILED'
      : db.problems.length
        ? 'warning'
        : 'ok';
  const rows: string[][] = [['  status', state]];
  const s = db.lastSuccess;
  rows.push([
    '  last success',
    s
      ? `${when(s.finishedAt)} (${formatDuration(now - Date.parse(s.finishedAt))} ago), backup ${s.id}, ` +
        `${formatBytes(s.bytes)} in ${formatDuration(s.durationMs)}`
      : 'never',
  ]);
  const a = db.lastAttempt;
  if (a && (a.status !== 'succeeded' || a.id !== s?.id)) {
    rows.push([
      '  last attempt',
      `${a.status} ${when(a.at)}, backup ${a.id}${a.error ? `: ${a.error}` : ''}`,
    ]);
  }
  if (db.overdue) {
    const next = db.overdue.nextSlot;
    rows.push([
      '  overdue',
      db.overdue.overdue ? `YES, since the ${db.overdue.missedSlot!.local.replace('T', ' ')} slot` : 'no',
    ]);
    rows.push([
      '  next slot',
      `${next.local.replace('T', ' ')} ${db.schedule!.timezone} (in ${formatDuration(Date.parse(next.at) - now)})`,
    ]);
  }
  const d = db.lastDrill;
  rows.push([
    '  last drill',
    d
      ? `${d.verified ? 'verified' : 'FAILED'} ${when(d.at)}, backup ${d.backupId}, recovery time ` +
        formatDuration(d.restoreMs) +
        (d.detail ? `: ${d.detail}` : '')
      : 'never',
  ]);
  rows.push([
    '  stored',
    `${db.stored.count} backup${db.stored.count === 1 ? '' : 's'}, ${formatBytes(db.stored.bytes)}` +
      (db.stored.orphans ? `, ${db.stored.orphans} orphaned archive(s)` : ''),
  ]);
  for (const p of db.problems) rows.push(['  problem', p]);
  return [head, table(rows)];
}

/** One screen: per database, then the queues and the workers. */
export function formatStatus(report: StatusReport, now = Date.parse(report.generatedAt)): string {
  const out: string[] = [`storage ${report.storage}`, ''];
  if (report.databases.length === 0) out.push('no databases configured and no backups in storage', '');
  for (const db of report.databases) out.push(...databaseLines(db, now), '');
  for (const srv of report.servers) {
    if (srv.error) out.push(`server ${srv.server}: cannot list its databases (${srv.error})`, '');
  }
  const q = report.queues;
  if (!q.ok) {
    out.push(`queues: unknown (${q.error})`);
  } else {
    const rows = [['QUEUE', 'WAITING', 'ACTIVE', 'DELAYED', 'FAILED', 'COMPLETED']];
    for (const [name, c] of Object.entries(q.counts)) {
      rows.push(
        [name, c.waiting + c.prioritized + c.paused, c.active, c.delayed, c.failed, c.completed].map(String),
      );
    }
    out.push(table(rows), '');
    out.push(
      q.workers.length === 0
        ? 'workers: none seen (start one with `pgshelf worker`)'
        : `workers: ${q.workers.length} seen\n` +
            table(
              q.workers.map((w) => [
                `  ${w.name}`,
                w.addr,
                `queues ${w.queues.join(',')}`,
                `up ${formatDuration(w.ageSeconds * 1000)}`,
              ]),
            ),
    );
  }
  return out.join('\n') + '\n';
}

/** The report, read once; when Redis does not answer at once, from storage alone (the queues say why). */
async function collectOnce(rt: Runtime): Promise<StatusReport> {
  const redisDown = await checkRedis(rt.config, 2000).then(
    () => undefined,
    (err: unknown) => errorMessage(err),
  );
  if (redisDown !== undefined) {
    const report = await collectStatus({ config: rt.config, storage: rt.storage, logger: rt.logger });
    return { ...report, queues: { ok: false, error: redisDown } };
  }
  const monitor = createMonitor({ config: rt.config, storage: rt.storage, logger: rt.logger, ttlMs: 0 });
  try {
    const snap = await monitor.status();
    if (!snap.value) throw new StorageError(`cannot read the status from ${rt.storage.url}: ${snap.error}`);
    return snap.value;
  } finally {
    await monitor.close();
  }
}

export function registerStatus(program: Command, runtime: (level?: string) => Runtime): void {
  program
    .command('status')
    .description(
      'per database: last success and its age, overdue or not, next slot, last drill, what is stored; the ' +
        'queues and the workers. Exits 1 when a database is overdue or its latest backup attempt failed or was interrupted',
    )
    .option('--json', 'print one JSON document on stdout')
    .addHelpText(
      'after',
      '\nExit codes: 0 all well, 1 a database is overdue or its latest attempt failed or was interrupted (so it works as a cron or ' +
        'CI check), 2 settings error.',
    )
    .action(async (opts: { json?: boolean }) => {
      const rt = runtime();
      await rt.storage.open();
      const report = await collectOnce(rt);
      const settings = rt.config.storage;
      if (settings.kind === 'file' && !existsSync(settings.root)) {
        // "never backed up" would hide a mistyped folder or a command run from another directory.
        process.stderr.write(
          `pgshelf: the storage folder ${settings.root} does not exist: check PGSHELF_STORAGE (a relative ` +
            'folder is taken from the current directory)\n',
        );
      }
      const failing = report.databases.filter((d) => d.failing).map((d) => d.name);
      // "ok" follows the exit code, as in every other command's --json.
      if (opts.json) printJson({ failing, ...report, ok: failing.length === 0 });
      else process.stdout.write(formatStatus(report));
      if (failing.length > 0) {
        process.stderr.write(
          `pgshelf: ${failing.join(', ')}: overdue, or latest backup attempt failed or interrupted\n`,
        );
        process.exitCode = 1;
      }
    });
}
