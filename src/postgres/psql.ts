import { Writable } from 'node:stream';
import type { Env, PgSettings } from '../config/index.js';
import { RestoreFailedError } from '../errors.js';
import type { Logger } from '../logger.js';
import { describeExit, spawnChild, type Child, type ExitStatus } from './child.js';
import { childEnv, connectionArgs } from './connection.js';

/**
 * psql's stdin as the end of a pipeline. Ending it lets psql COMMIT; destroying it on an error first kills
 * psql, because closing psql's stdin is an end of input, which would COMMIT whatever it had read so far.
 * psql's exit is watched in every state (writing, waiting for 'drain', ending): if it ends before having read
 * all of its input (killed, or its backend terminated), the pipeline fails at once instead of waiting forever.
 */
export class PsqlSink extends Writable {
  private finalCallback: ((error?: Error | null) => void) | undefined;
  private exit: ExitStatus | undefined;
  /** _final was called: all input was written. */
  private ending = false;

  constructor(private readonly child: Child) {
    super({ highWaterMark: 1 << 20 });
    // EPIPE once psql is gone: an error of this stream, never an unhandled one.
    child.process.stdin?.on('error', (err) => this.destroy(err));
    void child.exited.then((status) => this.onExit(status));
  }

  private early(status: ExitStatus): RestoreFailedError {
    return new RestoreFailedError(`psql ${describeExit(status)} before it had read all of the archive`);
  }

  private onExit(status: ExitStatus): void {
    this.exit = status;
    const done = this.finalCallback;
    if (done) {
      // Ending: the input was all written; psql's exit code says whether it committed.
      this.finalCallback = undefined;
      done(status.code === 0 ? null : this.early(status));
    } else if (!this.destroyed && !this.ending) {
      this.destroy(this.early(status));
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    const stdin = this.child.process.stdin;
    if (this.exit || !stdin || stdin.destroyed) {
      callback(new RestoreFailedError('psql stopped reading its input'));
      return;
    }
    if (stdin.write(chunk)) callback();
    else {
      const onDrain = (): void => {
        stdin.off('error', onError);
        callback();
      };
      const onError = (err: Error): void => {
        stdin.off('drain', onDrain);
        callback(err);
      };
      stdin.once('drain', onDrain);
      stdin.once('error', onError);
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.ending = true;
    if (this.exit) {
      callback(this.exit.code === 0 ? null : this.early(this.exit));
      return;
    }
    this.finalCallback = callback;
    const stdin = this.child.process.stdin;
    if (!stdin) return callback(new RestoreFailedError('psql has no input'));
    // Node calls end's callback with the error, if any, though its type says no arguments.
    (stdin.end as (cb: (err?: Error | null) => void) => void)((err) => {
      const done = this.finalCallback;
      this.finalCallback = undefined;
      done?.(err ?? null);
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (error) this.child.kill('SIGKILL');
    this.child.process.stdin?.destroy();
    callback(error);
  }
}

/**
 * Quotes a value for a libpq connection string. pg_dump treats a --dbname containing '=' as a connection
 * string, so the name always goes in as `dbname='...'` and any database name is taken literally.
 */
export function conninfoDbname(name: string): string {
  return `dbname='${name.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** How the client tools run: their base environment, and whether to log their argv. */
export interface ToolOptions {
  readonly env: Env;
  readonly logger?: Logger;
  readonly echo?: boolean;
}

/** Settings for psql's session on a brand-new database: faster index builds, no waiting on WAL flushes. */
export const RESTORE_PGOPTIONS = '-c maintenance_work_mem=256MB -c synchronous_commit=off';

/** psql reading a restore's SQL on stdin into `dbname`, all in one transaction, stopping at the first error. */
export function spawnRestorePsql(
  psql: string,
  settings: PgSettings,
  dbname: string,
  tool: ToolOptions,
  signal: AbortSignal,
): Child {
  const args = [
    ...connectionArgs(settings),
    '--no-password',
    '--no-psqlrc',
    '--quiet',
    '--set=ON_ERROR_STOP=1',
    '--single-transaction',
    `--dbname=${conninfoDbname(dbname)}`,
  ];
  return spawnChild(psql, args, {
    env: { ...childEnv(tool.env, settings), PGOPTIONS: RESTORE_PGOPTIONS },
    logger: tool.logger,
    echo: tool.echo,
    stdin: 'pipe',
    stdout: 'ignore',
    signal,
  });
}
