/**
 * `/metrics`: the status report in Prometheus' text format, through prom-client with its own Registry. Metric
 * names are a contract with users' alert rules (README "Monitoring"): add, never rename.
 */
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Monitor, StatusReport } from '../monitor/index.js';

const seconds = (iso: string): number => Date.parse(iso) / 1000;

export interface Metrics {
  readonly registry: Registry;
  /** The exposition text, from the current status report (refreshed at most once per TTL). */
  render(): Promise<string>;
}

const EMPTY: StatusReport = {
  generatedAt: new Date(0).toISOString(),
  storage: '',
  databases: [],
  queues: { ok: false, error: 'no status collected yet' },
  servers: [],
};

/** Every pgshelf gauge, registered in `registry`: the one place that names them. */
export function defineGauges(registry: Registry) {
  const gauge = (name: string, help: string, labelNames: readonly string[] = ['database']) =>
    new Gauge({ name, help, labelNames: [...labelNames], registers: [registry] });
  return {
    lastSuccess: gauge(
      'pgshelf_backup_last_success_timestamp_seconds',
      'When the newest successful backup finished (Unix time)',
    ),
    lastAttempt: gauge(
      'pgshelf_backup_last_attempt_timestamp_seconds',
      'When the latest backup attempt started, succeeded or failed (Unix time)',
    ),
    lastStatus: gauge(
      'pgshelf_backup_last_status',
      'Outcome of the latest finished backup attempt: 1 succeeded, 0 failed or interrupted (absent while none finished)',
    ),
    running: gauge(
      'pgshelf_backup_running',
      '1 while the latest backup attempt is still running (its job holds its lock), 0 once it ended or was interrupted',
    ),
    lastDuration: gauge(
      'pgshelf_backup_last_duration_seconds',
      'How long the newest successful backup took (dump, compression and upload)',
    ),
    lastSize: gauge(
      'pgshelf_backup_last_size_bytes',
      'Size in storage of the newest successful backup (compressed, encrypted when it is)',
    ),
    stored: gauge('pgshelf_backups_stored', 'Committed backups (with a manifest) in storage'),
    storedBytes: gauge('pgshelf_backups_stored_bytes', 'Bytes of the committed backups in storage'),
    orphans: gauge(
      'pgshelf_backup_orphans',
      'Archives without a manifest (left by failed backups until prune)',
    ),
    overdue: gauge(
      'pgshelf_backup_overdue',
      '1 when no backup succeeded since the latest slot plus PGSHELF_OVERDUE_GRACE (the watchdog rule)',
    ),
    nextSlot: gauge('pgshelf_backup_next_slot_timestamp_seconds', 'When the next scheduled backup is due'),
    drillSuccess: gauge(
      'pgshelf_drill_last_success_timestamp_seconds',
      'When the newest verified restore drill finished (Unix time)',
    ),
    drillStatus: gauge(
      'pgshelf_drill_last_status',
      'Outcome of the latest restore drill: 1 verified, 0 failed',
    ),
    drillRestore: gauge(
      'pgshelf_drill_last_restore_seconds',
      'Measured recovery time of the latest restore drill (download, gunzip and psql)',
    ),
    missing: gauge(
      'pgshelf_database_missing',
      '1 for a database of a servers: entry that has backups but no longer exists on its server (backups kept)',
    ),
    configured: gauge(
      'pgshelf_database_configured',
      '1 for a database in these settings (POSTGRES_DB, PGSHELF_CONFIG), 0 for one found in storage only',
    ),
    jobs: gauge('pgshelf_jobs', 'Jobs per queue and BullMQ state', ['queue', 'state']),
    workers: gauge('pgshelf_workers', 'Workers seen on the queues (BullMQ client list)', []),
    redisUp: gauge('pgshelf_redis_up', '1 when Redis answers (a PING, checked at most once a second)', []),
    storageUp: gauge(
      'pgshelf_storage_up',
      '1 when the storage answers (a HEAD, checked at most once a second)',
      [],
    ),
    statusUp: gauge(
      'pgshelf_status_up',
      '1 when the latest status refresh read the storage; 0 means the figures are from an older refresh',
      [],
    ),
    statusAge: gauge(
      'pgshelf_status_timestamp_seconds',
      'When the status these figures come from was collected (Unix time)',
      [],
    ),
  };
}

export function createMetrics(monitor: Monitor): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'pgshelf_serve_' });
  const g = defineGauges(registry);

  function fill(report: StatusReport): void {
    // A database or queue state that is gone must not keep its last value.
    for (const x of Object.values(g)) x.reset();
    for (const db of report.databases) {
      const l = { database: db.name };
      g.configured.set(l, db.configured ? 1 : 0);
      g.missing.set(l, db.missingFrom === null ? 0 : 1);
      g.stored.set(l, db.stored.count);
      g.storedBytes.set(l, db.stored.bytes);
      g.orphans.set(l, db.stored.orphans);
      if (db.lastSuccess) {
        g.lastSuccess.set(l, seconds(db.lastSuccess.finishedAt));
        g.lastDuration.set(l, db.lastSuccess.durationMs / 1000);
        g.lastSize.set(l, db.lastSuccess.bytes);
      }
      if (db.lastAttempt) {
        g.lastAttempt.set(l, seconds(db.lastAttempt.at));
        g.running.set(l, db.lastAttempt.status === 'running' ? 1 : 0);
        if (db.lastAttempt.status !== 'running') {
          g.lastStatus.set(l, db.lastAttempt.status === 'succeeded' ? 1 : 0);
        }
      }
      if (db.overdue) {
        g.overdue.set(l, db.overdue.overdue ? 1 : 0);
        g.nextSlot.set(l, seconds(db.overdue.nextSlot.at));
      }
      if (db.lastDrill) {
        g.drillStatus.set(l, db.lastDrill.verified ? 1 : 0);
        g.drillRestore.set(l, db.lastDrill.restoreMs / 1000);
      }
      if (db.lastVerifiedDrill) g.drillSuccess.set(l, seconds(db.lastVerifiedDrill.at));
    }
    if (report.queues.ok) {
      for (const [queue, counts] of Object.entries(report.queues.counts)) {
        for (const [state, n] of Object.entries(counts)) g.jobs.set({ queue, state }, n);
      }
      g.workers.set(report.queues.workers.length);
    }
    // A label-less gauge always prints a value (0 after reset): while Redis has not answered, the worker count
    // is unknown, and a 0 would fire a "no worker" alert for what is a Redis outage (pgshelf_redis_up says so).
    // So the series is taken out of the registry until the queues answer again.
    const registered = registry.getSingleMetric('pgshelf_workers') !== undefined;
    if (report.queues.ok && !registered) registry.registerMetric(g.workers);
    if (!report.queues.ok && registered) registry.removeSingleMetric('pgshelf_workers');
  }

  return {
    registry,
    async render(): Promise<string> {
      const [snap, health] = await Promise.all([monitor.status(), monitor.health()]);
      fill(snap.value ?? EMPTY);
      g.statusUp.set(snap.value && snap.error === undefined ? 1 : 0);
      if (snap.collectedAt) g.statusAge.set(snap.collectedAt.getTime() / 1000);
      g.redisUp.set(health.redis.ok ? 1 : 0);
      g.storageUp.set(health.storage.ok ? 1 : 0);
      return registry.metrics();
    },
  };
}
