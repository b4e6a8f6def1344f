import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadConfig, type Env } from '../../src/config/index.js';
import { createLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import { JobEvents, startWorker, type JobEventMap, type JobEventName } from '../../src/worker/index.js';
import { waitFor } from '../helpers/cli.js';
import { useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { closedPort } from '../helpers/silent.js';

const defer = useCleanup();

const NAMES: readonly JobEventName[] = [
  'job:started',
  'job:progress',
  'job:waiting',
  'job:succeeded',
  'job:retrying',
  'job:failed',
];

type Seen = { name: JobEventName; event: JobEventMap[JobEventName] };

/** A worker in this process, recording every job event and every log line. */
async function recordingWorker(env: Env): Promise<{ seen: Seen[]; logs: () => Record<string, unknown>[] }> {
  const config = loadConfig(env);
  const storage = createStorage(config.storage);
  await storage.open();
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const events = new JobEvents();
  const seen: Seen[] = [];
  for (const name of NAMES) events.on(name, (event) => seen.push({ name, event }));
  const worker = startWorker({
    config,
    storage,
    logger: createLogger('info', out),
    events,
    kinds: ['backup'],
  });
  defer(async () => {
    await worker.close(1000);
    await storage.close();
  });
  await worker.ready;
  const logs = (): Record<string, unknown>[] =>
    text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { seen, logs };
}

describe('worker job events', () => {
  it('a successful backup: started, progress..., succeeded, with kind, job id, database and attempt', async () => {
    const { db, env, queue } = await workerFixture(defer);
    const { seen } = await recordingWorker(env);
    const job = await queue('backup').add('backup', { database: db }, { attempts: 3 });
    await waitFor('the backup to succeed', () => seen.some((s) => s.name === 'job:succeeded'), 60_000);

    const names = seen.map((s) => s.name.slice(4)).join(' ');
    expect(names).toMatch(/^started( progress)+ succeeded$/);
    for (const { event } of seen) {
      expect(event).toMatchObject({ kind: 'backup', jobId: job.id, database: db, attempt: 1 });
    }
    const done = seen.at(-1)!.event as JobEventMap['job:succeeded'];
    expect(done.durationMs).toBeGreaterThanOrEqual(0);
    expect(done.result).toMatchObject({ database: db });
    const last = seen.at(-2)!.event as JobEventMap['job:progress'];
    expect(last.progress.bytesIn).toBeGreaterThan(0);
  });

  it('a failing backup: retrying after attempt 1 of 2, then failed at attempt 2, each with the error; logged as before', async () => {
    // Nothing listens on the port: a connection failure, which a retry may fix.
    const { db, env, queue } = await workerFixture(defer, {
      env: { POSTGRES_PORT: String(await closedPort()) },
    });
    const { seen, logs } = await recordingWorker(env);
    const job = await queue('backup').add(
      'backup',
      { database: db },
      { attempts: 2, backoff: { type: 'pgshelf' } },
    );
    await waitFor('the backup to fail for good', () => seen.some((s) => s.name === 'job:failed'), 60_000);

    expect(seen.map((s) => [s.name, s.event.attempt])).toEqual([
      ['job:started', 1],
      ['job:retrying', 1],
      ['job:started', 2],
      ['job:failed', 2],
    ]);
    const failures = seen
      .filter((s) => s.name !== 'job:started')
      .map((s) => s.event as JobEventMap['job:failed']);
    for (const f of failures) {
      expect(f).toMatchObject({ kind: 'backup', jobId: job.id, database: db, attempts: 2 });
      expect(f.message).toMatch(/ECONNREFUSED|connect/);
      expect(f.error).toBeInstanceOf(Error);
    }
    // The log subscriber writes the worker's usual line for each failed attempt.
    const failedLines = logs().filter((l) => l.msg === 'backup job failed');
    expect(failedLines.map((l) => [l.queue, l.jobId, l.attempt])).toEqual([
      ['backup', job.id, 1],
      ['backup', job.id, 2],
    ]);
    expect(failedLines[0]!.err).toBe(failures[0]!.message);
  });
});
