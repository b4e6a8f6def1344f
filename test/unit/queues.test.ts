import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { BACKOFF_TYPE, defaultJobOptions, retryDelay } from '../../src/queues.js';

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
