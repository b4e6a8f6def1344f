import type { Logger } from '../logger.js';

export interface ShutdownOptions {
  readonly logger: Logger;
  /** Graceful stop: let work finish (the callee applies its own grace period). */
  readonly stop: () => Promise<void>;
  /** Forced stop on a second signal: abort everything now (kill children, abort uploads). Must be synchronous. */
  readonly force: () => void;
  /**
   * Most time the graceful stop may take, callee's grace included: past it, force() and exit as for a second
   * signal. A stop waiting on a service that never answers (Redis down) must not hold the process up.
   */
  readonly deadlineMs?: number;
  readonly signals?: readonly NodeJS.Signals[];
  readonly exit?: (code: number) => void;
}

export interface Shutdown {
  /** Idempotent: the first call starts the graceful stop, later calls return the same promise. */
  stop(): Promise<void>;
  dispose(): void;
}

/** Exit code of a forced stop (second signal, or a graceful stop past its deadline). */
export const FORCED_EXIT_CODE = 130;

/**
 * First SIGTERM/SIGINT: graceful stop, then exit 0. Second one, or the graceful stop overrunning `deadlineMs`:
 * force() and exit 130 at once.
 */
export function installShutdown(options: ShutdownOptions): Shutdown {
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let stopping: Promise<void> | undefined;
  let deadline: NodeJS.Timeout | undefined;

  const stop = (): Promise<void> => {
    stopping ??= options.stop().catch((err: unknown) => {
      options.logger.error({ err }, 'error while shutting down');
    });
    return stopping;
  };

  const forceExit = (): void => {
    clearTimeout(deadline);
    options.force();
    exit(FORCED_EXIT_CODE);
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      options.logger.warn({ signal }, 'second signal: aborting running jobs and exiting now');
      forceExit();
      return;
    }
    options.logger.info({ signal }, 'shutting down gracefully (send the signal again to force)');
    if (options.deadlineMs !== undefined) {
      const ms = options.deadlineMs;
      deadline = setTimeout(() => {
        options.logger.warn({ ms }, 'shutdown did not finish in time: aborting everything and exiting now');
        forceExit();
      }, ms);
    }
    void stop().then(() => {
      clearTimeout(deadline);
      exit(0);
    });
  };
  for (const s of signals) process.on(s, onSignal);
  return {
    stop,
    dispose: () => {
      clearTimeout(deadline);
      for (const s of signals) process.off(s, onSignal);
    },
  };
}
