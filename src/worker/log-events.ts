/** The worker's log lines about its jobs, written from its events (the same lines the worker always wrote). */
import type { Logger } from '../logger.js';
import type { JobEvents } from './events.js';

export function logJobEvents(events: JobEvents, logger: Logger): void {
  const child = (e: { kind: string; jobId: string; attempt: number }): Logger =>
    logger.child({ queue: e.kind, jobId: e.jobId, attempt: e.attempt });
  events.on('job:waiting', (e) => child(e).info({ database: e.database, reason: e.reason }, e.message));
  const failed = (e: { kind: string; jobId: string; attempt: number; message: string }): void =>
    child(e).error({ err: e.message }, `${e.kind} job failed`);
  events.on('job:retrying', failed);
  events.on('job:failed', failed);
}
