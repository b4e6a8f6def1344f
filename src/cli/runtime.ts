import { inProcessAlerts, type InProcessAlerts } from '../alerts/in-process.js';
import { loadConfig, resolveTarget, type Config, type Env } from '../config/index.js';
import { AbortedError, BackupRunningError, CommandFailed, errorMessage, exitCodeFor } from '../errors.js';
import { createRegistry } from '../jobs/registry.js';
import { createLogger, type Logger } from '../logger.js';
import {
  checkRedis,
  createQueue,
  createQueueEvents,
  queuedJobData,
  redisConnection,
  type JobKind,
} from '../queues.js';
import { createStorage, type Storage } from '../storage/index.js';
import { maskUrl } from '../url.js';
import { BackupGuards, takeAdvisoryBackupLock } from '../worker/locks.js';
import { ProgressLine } from './progress.js';
import { QueueInterrupts, waitForJob } from './queued.js';

export interface SubmitOptions {
  readonly inProcess?: boolean;
  readonly wait?: boolean;
  readonly json?: boolean;
  /** Higher runs first within a queue (BullMQ priority: lower number first; we invert). */
  readonly priority?: number;
  readonly jobId?: string;
}

export class Runtime {
  private storageInstance: Storage | undefined;

  private constructor(
    readonly config: Config,
    readonly logger: Logger,
  ) {}

  /** Reads the settings; the CLI logs warnings and up unless PGSHELF_LOG_LEVEL or DB_ECHO asks for more. */
  static load(env: Env, defaultLogLevel = 'warn'): Runtime {
    const config = loadConfig(env, { defaultLogLevel });
    return new Runtime(config, createLogger(config.logLevel));
  }

  get storage(): Storage {
    this.storageInstance ??= createStorage(this.config.storage);
    return this.storageInstance;
  }

  /** Commands that write say where, so a relative or mistyped folder shows before anything lands in it. */
  announceStorage(): void {
    const s = this.config.storage;
    if (s.kind === 'file') process.stderr.write(`storage: folder ${s.root}\n`);
  }

  async close(): Promise<void> {
    await this.storageInstance?.close();
  }

  /**
   * Runs the job in this process, and raises the alerts and pings a worker would for how it ended (the
   * database's webhooks and ping URLs; nothing at all when it has none). The command's result waits for them
   * alertsFlushMs at most, and its exit code never depends on them.
   */
  private async runHere<R>(kind: JobKind, input: object, progress: ProgressLine): Promise<{ result: R }> {
    const dryRun = (input as { dryRun?: boolean }).dryRun === true;
    // Asked at most once per command: by the backup guard, then for the alert state.
    let redis: Promise<boolean> | undefined;
    const redisAnswers = (): Promise<boolean> =>
      (redis ??= checkRedis(this.config, 2000).then(
        () => true,
        () => false,
      ));
    // A dry run changes nothing, so it raises nothing (a worker's dry-run prune does not either).
    const alerts = dryRun
      ? undefined
      : inProcessAlerts({
          config: this.config,
          logger: this.logger,
          storage: this.storage,
          kind,
          database: this.databaseOf(input),
          redisAnswers,
        });
    try {
      const outcome = await this.runGuarded<R>(kind, input, progress, redisAnswers, alerts);
      alerts?.succeeded(outcome.result);
      return outcome;
    } catch (err) {
      alerts?.failed(err);
      throw err;
    } finally {
      await alerts?.flush();
    }
  }

  /** The database a job is for, as a worker names it in its events (the default one when the input has none). */
  private databaseOf(input: object): string | undefined {
    const named = (input as { database?: string }).database;
    try {
      return resolveTarget(this.config, named).name;
    } catch {
      return named;
    }
  }

  /**
   * Runs the job under its guard. A first SIGINT or SIGTERM aborts it (kills pg_dump/psql, aborts the upload)
   * and the command ends with 130 or 143 once it has cleaned up; if that takes longer than
   * PGSHELF_SHUTDOWN_GRACE (a storage call that never answers), or a second signal comes, it exits at once.
   */
  private async runGuarded<R>(
    kind: JobKind,
    input: object,
    progress: ProgressLine,
    redisAnswers: () => Promise<boolean>,
    alerts: InProcessAlerts | undefined,
  ): Promise<{ result: R }> {
    const { run } = createRegistry({ config: this.config, storage: this.storage, logger: this.logger })[kind];
    const abort = new AbortController();
    let interrupted: NodeJS.Signals | undefined;
    const exitNow = (code: number): void => {
      this.storage.abortWritersNow?.();
      process.exit(code);
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      const code = exitCodeFor(signal);
      if (interrupted) {
        process.stderr.write(`pgshelf: ${signal} again: stopping now\n`);
        exitNow(code);
        return;
      }
      interrupted = signal;
      const graceS = this.config.shutdownGraceMs / 1000;
      process.stderr.write(
        `pgshelf: ${signal}: stopping the ${kind} and cleaning up (at most ${graceS} s, ` +
          'PGSHELF_SHUTDOWN_GRACE; send the signal again to stop at once)\n',
      );
      abort.abort(new AbortedError(`interrupted by ${signal}`));
      // Not cleared: whatever is still running after the grace (a storage call that never answers), this ends it.
      setTimeout(() => {
        process.stderr.write(`pgshelf: the ${kind} did not stop within ${graceS} s: exiting now\n`);
        exitNow(code);
      }, this.config.shutdownGraceMs).unref();
    };
    // Taken before anything is visible from outside (the storage opened, the guard's lease in Redis, the start
    // ping): a signal from then on cleans up, where the default disposition would leave the lease behind.
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    let release: (() => Promise<void>) | undefined;
    try {
      await this.storage.open();
      // A real prune takes the database's guard as on a worker: beside a long backup it could abort its upload.
      const pruning = kind === 'prune' && (input as { dryRun?: boolean }).dryRun !== true;
      if (kind === 'backup' || pruning) release = await this.backupGuard(input, redisAnswers, kind);
      abort.signal.throwIfAborted();
      await alerts?.started(); // never throws: the guard is released below whatever happens
      const result = (await run(input, {
        signal: abort.signal,
        logger: this.logger,
        progress: (p) => progress.update(p),
      })) as R;
      return { result };
    } catch (err) {
      if (interrupted) {
        throw new CommandFailed(
          `${kind} interrupted by ${interrupted}` +
            (err instanceof AbortedError ? ': stopped and cleaned up' : `: ${errorMessage(err)}`),
          exitCodeFor(interrupted),
        );
      }
      throw err;
    } finally {
      progress.done();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await release?.();
    }
  }

  /**
   * One dump of a database at a time, in-process too: the workers' Redis guard when Redis answers (so an
   * in-process backup and a worker's exclude each other), else an advisory lock in the database. A second
   * backup fails at once rather than waiting (a script can retry; a person sees why at once).
   */
  private async backupGuard(
    input: object,
    redisAnswers: () => Promise<boolean>,
    kind: JobKind = 'backup',
  ): Promise<() => Promise<void>> {
    const target = resolveTarget(this.config, (input as { database?: string }).database);
    const busy = (how: string): BackupRunningError =>
      new BackupRunningError(
        `another backup${kind === 'prune' ? ' or prune' : ''} of "${target.name}" is running (${how}); ` +
          'try again when it ends',
      );
    if (await redisAnswers()) {
      const guards = new BackupGuards(
        redisConnection(this.config),
        this.config.queuePrefix,
        this.config.hostConcurrency,
        this.config.lockDurationMs,
      );
      // A prune loads no server, so it does not count against PGSHELF_HOST_CONCURRENCY.
      const got = await (
        kind === 'prune'
          ? guards.acquireDatabase(target.name)
          : guards.acquire(target.name, target.postgres.host, target.postgres.port)
      ).catch(async (err: unknown) => {
        await guards.close();
        throw err;
      });
      if (got.ok) {
        return async () => {
          await got.release();
          await guards.close();
        };
      }
      await guards.close();
      if (got.reason === 'database-busy') throw busy(`seen in Redis at ${maskUrl(this.config.redisUrl)}`);
      throw new BackupRunningError(
        `the server ${target.postgres.host}:${target.postgres.port} already runs ` +
          `${this.config.hostConcurrency} backups (PGSHELF_HOST_CONCURRENCY); try again when one ends`,
      );
    }
    const lock = await takeAdvisoryBackupLock(target.postgres);
    if (!lock.taken) throw busy('it holds the PostgreSQL advisory lock');
    return () => lock.release();
  }

  /**
   * Runs a job: in this process (`--in-process`), or on the queue, waiting for a worker to finish it while
   * showing its progress (default), or returning at once with the job id (`--no-wait`).
   */
  async submit<R>(
    kind: JobKind,
    input: object,
    options: SubmitOptions,
  ): Promise<{ jobId?: string; result?: R }> {
    const progress = new ProgressLine(process.stderr, !options.json || process.stderr.isTTY);
    if (options.inProcess) return this.runHere<R>(kind, input, progress);

    // The worker runs the job with its own settings; the job says which database and storage the command meant,
    // and the worker refuses it when they are not its own.
    const data = queuedJobData(this.config, input);
    await checkRedis(this.config);
    const queue = createQueue(this.config, kind);
    const events = options.wait === false ? undefined : createQueueEvents(this.config, kind);
    // Signals are ours before the job exists: one that comes while it is added still takes it off the queue.
    const interrupts = events
      ? new QueueInterrupts((signal) => {
          const message = `interrupted by ${signal} before the ${kind} job was queued: nothing was queued`;
          process.stderr.write(`pgshelf: ${message}\n`);
          if (options.json) printJsonError('Interrupted', message, exitCodeFor(signal));
          process.exit(exitCodeFor(signal));
        })
      : undefined;
    try {
      await queue.waitUntilReady();
      if (events) await events.waitUntilReady();
      interrupts?.addStarts();
      const job = await queue.add(kind, data, {
        ...(options.priority !== undefined ? { priority: options.priority } : {}),
        ...(options.jobId !== undefined ? { jobId: options.jobId } : {}),
      });
      if (!events || !interrupts) return { jobId: job.id };
      if ((await queue.getWorkersCount()) === 0) {
        process.stderr.write(
          `job ${job.id} is queued on "${kind}" but no worker is running: start one with \`pgshelf worker\` ` +
            '(or press Ctrl-C, which takes it off the queue, and use --in-process)\n',
        );
      }
      return { jobId: job.id, result: await waitForJob<R>(kind, queue, events, job, progress, interrupts) };
    } finally {
      interrupts?.close();
      await events?.close();
      await queue.close();
    }
  }
}

/** Prints `value`, a successful command's result, as one JSON document on stdout, marked `"ok": true`. */
export function printJson(value: object): void {
  process.stdout.write(JSON.stringify({ ok: true, ...value }, null, 2) + '\n');
}

/** What `--json` prints when a command fails, so a script reading stdout always gets one document. */
export function printJsonError(name: string, message: string, exitCode: number): void {
  process.stdout.write(JSON.stringify({ ok: false, error: { name, message, exitCode } }, null, 2) + '\n');
}
