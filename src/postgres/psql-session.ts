/** One psql of a parallel restore: its input written piece by piece, and a way to know it has run all of it. */
import { randomBytes } from 'node:crypto';
import type { PgSettings } from '../config/index.js';
import { RestoreFailedError } from '../errors.js';
import { describeExit, spawnChild, type Child, type ExitStatus } from './child.js';
import { childEnv, connectionArgs } from './connection.js';
import { conninfoDbname, RESTORE_PGOPTIONS, type ToolOptions } from './psql.js';

const MARKER_LINE_LIMIT = 256;

/**
 * A psql reading SQL on stdin, statement by statement in autocommit (the caller sends BEGIN and COMMIT where it
 * wants a transaction), stopping at the first error. Its first input line is `\restrict KEY` with a key of its
 * own, so psql itself refuses any meta-command after it. `sync()` sends `SELECT 'pgshelf-sync KEY N'` and
 * resolves when psql prints it back: everything sent before has run. Any exit before `end()` fails the session:
 * `failure` says how, and every wait rejects.
 */
export class PsqlSession {
  readonly child: Child;
  /** Set when psql ended before `end()`, or with an error. */
  failure: RestoreFailedError | undefined;
  status: ExitStatus | undefined;
  /** What the session was last given to run, for error messages (psql reading stdin names no line). */
  last: string | undefined;
  private readonly key = randomBytes(16).toString('hex');
  private syncs = 0;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private drainWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private stdoutLine = '';
  private ending = false;
  /** The last sync promise: resolved when this session has run everything sent before it. */
  idle: Promise<void> = Promise.resolve();
  /** Work was sent since the last sync. */
  dirty = false;
  /** Version of the session settings this session has been sent (see ParallelSink). */
  settingsVersion = 0;

  constructor(
    readonly index: number,
    psql: string,
    settings: PgSettings,
    dbname: string,
    tool: ToolOptions,
    signal: AbortSignal,
    private readonly onFailure: (session: PsqlSession) => void,
  ) {
    const args = [
      ...connectionArgs(settings),
      '--no-password',
      '--no-psqlrc',
      '--quiet',
      '--tuples-only',
      '--no-align',
      '--set=ON_ERROR_STOP=1',
      `--dbname=${conninfoDbname(dbname)}`,
    ];
    this.child = spawnChild(psql, args, {
      env: { ...childEnv(tool.env, settings), PGOPTIONS: RESTORE_PGOPTIONS },
      logger: tool.logger,
      echo: tool.echo,
      stdin: 'pipe',
      stdout: 'pipe',
      signal,
    });
    const stdin = this.child.process.stdin!;
    stdin.on('error', (err) => this.fail(new RestoreFailedError(`psql's input failed: ${err.message}`)));
    stdin.on('drain', () => {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w.resolve();
    });
    this.child.process.stdout!.on('data', (chunk: Buffer) => this.onStdout(chunk));
    void this.child.exited.then((status) => {
      this.status = status;
      if (!this.ending || status.code !== 0) {
        this.fail(
          new RestoreFailedError(
            `psql ${describeExit(status)}${this.ending ? '' : ' before it had read all of its input'}`,
          ),
        );
      }
    });
    this.write(`\\restrict ${this.key}\n`);
  }

  /** Whether psql's input can take more now; false once it is full (wait for `drained()`). */
  get writable(): boolean {
    const stdin = this.child.process.stdin;
    return !this.failure && !!stdin && !stdin.writableNeedDrain;
  }

  /** Sends text or bytes; `what` says what they are, for error messages. */
  write(data: Buffer | string, what?: string): void {
    if (this.failure) throw this.failure;
    if (what) this.last = what;
    this.dirty = true;
    this.child.process.stdin!.write(data);
  }

  /** Resolves when psql's input can take more. */
  drained(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.writable) return Promise.resolve();
    return new Promise((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
  }

  /** Resolves once psql has run everything sent so far. */
  sync(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.dirty) return this.idle;
    const n = ++this.syncs;
    this.write(`SELECT 'pgshelf-sync ${this.key} ${n}';\n`);
    this.dirty = false;
    this.idle = new Promise<void>((resolve, reject) => this.waiting.set(n, { resolve, reject }));
    // Failures are handled where the session is waited for; this copy must not be an unhandled rejection.
    this.idle.catch(() => undefined);
    return this.idle;
  }

  /** Ends psql's input and waits for it to exit; rejects unless it ran everything. */
  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    this.ending = true;
    this.child.process.stdin!.end();
    const status = await this.child.exited;
    // Set meanwhile by the exit handler (TypeScript still sees the check above).
    const failure = this.failure as RestoreFailedError | undefined;
    if (failure) throw failure;
    if (status.code !== 0) throw new RestoreFailedError(`psql ${describeExit(status)}`);
  }

  kill(): void {
    this.child.kill('SIGKILL');
    this.child.process.stdin?.destroy();
  }

  private onStdout(chunk: Buffer): void {
    let text = this.stdoutLine + chunk.toString('latin1');
    let nl = text.indexOf('\n');
    while (nl !== -1) {
      this.onLine(text.slice(0, nl));
      text = text.slice(nl + 1);
      nl = text.indexOf('\n');
    }
    // Only a short line can be a marker: a long one is the archive's own output.
    this.stdoutLine = text.length > MARKER_LINE_LIMIT ? '' : text;
  }

  private onLine(line: string): void {
    const prefix = `pgshelf-sync ${this.key} `;
    if (!line.startsWith(prefix)) return;
    const n = Number(line.slice(prefix.length));
    for (const [k, w] of this.waiting) {
      if (k <= n) {
        this.waiting.delete(k);
        w.resolve();
      }
    }
  }

  private fail(err: RestoreFailedError): void {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
    for (const w of this.drainWaiters) w.reject(err);
    this.drainWaiters = [];
    this.onFailure(this);
  }
}
