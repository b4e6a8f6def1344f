/** Jobs run in-process, as a test calls them: the JobContext and the jobs built from an environment. */
import type { Env } from '../../src/config/index.js';
import { createBackupJob } from '../../src/jobs/backup.js';
import type { JobContext, Progress } from '../../src/jobs/context.js';
import { createDrillJob } from '../../src/jobs/drill.js';
import { createPruneJob } from '../../src/jobs/prune.js';
import { createRestoreJob } from '../../src/jobs/restore.js';
import { createVerifyJob } from '../../src/jobs/verify.js';
import type { Logger } from '../../src/logger.js';
import { silentLogger } from '../../src/logger.js';
import { createStorage } from '../../src/storage/index.js';
import { testConfig } from './env.js';

export interface ContextOptions {
  /** Defaults to a signal that never aborts. */
  readonly signal?: AbortSignal;
  /** Defaults to a logger that writes nothing. */
  readonly logger?: Logger;
  /** Every progress report is pushed here; dropped when not given. */
  readonly progress?: Progress[];
  /** As a queued job has it (e.g. `restore:42`); absent, as when run in-process. */
  readonly jobId?: string;
}

export function ctx(options: ContextOptions = {}): JobContext {
  const { progress } = options;
  return {
    signal: options.signal ?? new AbortController().signal,
    logger: options.logger ?? silentLogger(),
    progress: progress ? (p) => progress.push(p) : () => undefined,
    ...(options.jobId !== undefined ? { jobId: options.jobId } : {}),
  };
}

/** Every job, wired as jobs/index.ts wires them, on the storage and PostgreSQL that `env` names. */
export function jobs(env: Env) {
  const config = testConfig(env);
  const deps = { config, storage: createStorage(config.storage), logger: silentLogger() };
  const restore = createRestoreJob(deps);
  return {
    backup: createBackupJob(deps),
    restore,
    verify: createVerifyJob(deps),
    drill: createDrillJob({ ...deps, restore }),
    prune: createPruneJob(deps),
    storage: deps.storage,
  };
}
