import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { JOB_POLICIES } from '../../src/jobs/registry.js';
import {
  BACKOFF_TYPE,
  databaseGuardKey,
  defaultJobOptions,
  followUpJobId,
  hostGuardKey,
  JOB_KINDS,
  lastSlotJobsKey,
  manualJobId,
  queueName,
  retryDelay,
  runningJobId,
  slotClaimKey,
  slotJobId,
} from '../../src/queues.js';

describe('retries', () => {
  it("jobs name the backoff type, and the delay comes from the running worker's PGSHELF_RETRY_DELAY", () => {
    const queuedBy = loadConfig({ POSTGRES_DB: 'app' }); // default 30 s: must not end up in the job
    const opts = defaultJobOptions(queuedBy, 'backup');
    expect(opts.backoff).toEqual({ type: BACKOFF_TYPE });
    expect(opts.attempts).toBe(3);
    expect(defaultJobOptions(queuedBy, 'prune').attempts).toBe(1);
    const worker = loadConfig({ POSTGRES_DB: 'app', PGSHELF_RETRY_DELAY: '2' });
    expect([1, 2, 3].map((n) => retryDelay(worker, n))).toEqual([2000, 4000, 8000]);
  });
});

describe('names', () => {
  it('every queue name, job id and Redis key of a sample prefix and database', () => {
    const prefix = 'pgshelf-prod';
    const db = 'shop eu/1';
    expect(JOB_KINDS.map(queueName)).toEqual(['backup', 'restore', 'prune', 'drill']);
    expect({
      slotJob: slotJobId('backup', db, { local: '2026-03-29T02:30:00' }),
      drillSlotJob: slotJobId('drill', db, { local: '2026-03-29T02:30:00' }),
      pruneJob: followUpJobId('prune', db, '20260329T003000Z-1a2b3c4d'),
      runningJob: runningJobId(prefix, 'restore', '42'),
      slotClaim: slotClaimKey(prefix, 'backup', db, '2026-03-29T02:30:00'),
      lastSlot: lastSlotJobsKey(prefix, 'backup'),
      manualJob: manualJobId('backup', db, new Date('2026-03-29T02:30:07.123Z')),
      databaseGuard: databaseGuardKey(prefix, db),
      hostGuard: hostGuardKey(prefix, 'db.internal', 5432),
    }).toEqual({
      slotJob: 'backup--shop%20eu%2F1--20260329T023000',
      drillSlotJob: 'drill--shop%20eu%2F1--20260329T023000',
      pruneJob: 'prune--shop%20eu%2F1--20260329T003000Z-1a2b3c4d',
      runningJob: 'pgshelf-prod:restore:42',
      slotClaim: 'pgshelf-prod:scheduler:claim:backup:shop%20eu%2F1:2026-03-29T02:30:00',
      lastSlot: 'pgshelf-prod:scheduler:last:backup',
      manualJob: 'backup--shop%20eu%2F1--now-20260329T023007Z',
      databaseGuard: 'pgshelf-prod:guard:database:shop%20eu%2F1',
      hostGuard: 'pgshelf-prod:guard:host:db.internal%3A5432',
    });
  });

  it('the registry: what each job declares beside itself', () => {
    expect(JOB_POLICIES.backup.excludes).toMatchObject({ host: true, database: {} });
    expect(JOB_POLICIES.backup.followedBy?.kind).toBe('prune');
    expect(JOB_POLICIES.prune.excludes).toMatchObject({ database: {} });
    expect(JOB_POLICIES.prune.excludes?.host).toBeUndefined();
    expect(JOB_POLICIES.prune.attempts).toBe(1);
    expect(JOB_POLICIES.restore.excludes).toBeUndefined();
    expect(JOB_POLICIES.drill.followedBy).toBeUndefined();
  });
});
