import type { Logger } from './logger.js';

export interface ShutdownOptions {
  readonly logger: Logger;
  /** Graceful stop: let work finish (the callee applies its own grace period). */
  readonly stop: () => Promise<void>;
  /** Forced stop on a second signal: abort everything now (kill children, abort uploads). Must be synchronous. */
  readonly force: () => void;
  readonly signals?: readonly NodeJS.Signals[];
  readonly exit?: (code: number) => void;
}

export interface Shutdown {
  /** Idempotent: the first call starts the graceful stop, later calls return the same promise. */
  stop(): Promise<void>;
  dispose(): void;
}

/**
 * First SIGTERM/SIGINT: graceful stop, then exit 0. Second one: force() and exit 130 at once.
 */
export function installShutdown(options: ShutdownOptions): Shutdown {
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopping ??= options.stop().catch((err: unknown) => {
      options.logger.error({ err }, 'error while shutting down');
    });
    return stopping;
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      options.logger.warn({ signal }, 'second signal: aborting running jobs and exiting now');
      options.force();
      exit(130);
      return;
    }
    options.logger.info({ signal }, 'shutting down gracefully (send the signal again to force)');
    void stop().then(() => exit(0));
  };
  for (const s of signals) process.on(s, onSignal);
  return {
    stop,
    dispose: () => {
      for (const s of signals) process.off(s, onSignal);
    },
  };
}
