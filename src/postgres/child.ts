import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../logger.js';

/** Keeps the last `maxBytes` of a stream's text, for error messages. Memory stays bounded however much is written. */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly maxBytes = 16 * 1024) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.maxBytes && this.chunks.length > 1) {
      const dropped = this.chunks.shift();
      this.size -= dropped?.length ?? 0;
    }
  }

  /** The last `lines` non-empty lines, with row data cut out (they end up in logs, job records, manifests). */
  lines(lines = 20): string[] {
    let text = Buffer.concat(this.chunks).toString('utf8');
    if (this.size > this.maxBytes) text = text.slice(-this.maxBytes);
    return text
      .split('\n')
      .map((l) => withoutRowData(l.trimEnd()))
      .filter((l) => l !== '')
      .slice(-lines);
  }

  text(lines = 20): string {
    return this.lines(lines).join('\n');
  }
}

const HIDDEN = '(value not shown)';

/**
 * A server message line without the table data it quotes: `COPY t, line 5: "<row>"` and `column c: "<value>"`
 * contexts, `Key (c)=(<values>)` and `Failing row contains (<values>)` details, and an error's trailing
 * `: "<value>"` (invalid input syntax and the like). Table, column and line number stay.
 */
export function withoutRowData(line: string): string {
  return line
    .replace(/^(\s*CONTEXT:\s+COPY [^\n]*?, line \d+(?:, column [^:]*)?): .*$/, `$1: ${HIDDEN}`)
    .replace(/^(\s*DETAIL:\s+Key \(.*?\))=\(.*\)( .*)?$/, `$1=${HIDDEN}$2`)
    .replace(/^(\s*DETAIL:\s+Failing row contains) \(.*\)\.?$/, `$1 ${HIDDEN}.`)
    .replace(/^(.*?(?:ERROR|FATAL):\s+.*?): ".*"$/, `$1: ${HIDDEN}`);
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Child {
  readonly process: ChildProcess;
  readonly stderr: TailBuffer;
  /** Resolves when the process has exited (never rejects; a spawn error resolves with code -1 and the error). */
  readonly exited: Promise<ExitStatus & { error?: Error }>;
  kill(signal?: NodeJS.Signals): void;
}

export interface SpawnOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly logger?: Logger;
  readonly echo?: boolean;
  readonly stdin?: 'pipe' | 'ignore';
  readonly stdout?: 'pipe' | 'ignore';
  readonly signal?: AbortSignal;
}

/** Spawns a program with an argument array (never a shell). stderr is captured into a bounded tail. */
export function spawnChild(command: string, args: string[], options: SpawnOptions): Child {
  if (options.echo) options.logger?.info({ argv: [command, ...args] }, 'exec');
  const child = spawn(command, args, {
    env: options.env,
    stdio: [options.stdin ?? 'ignore', options.stdout ?? 'pipe', 'pipe'],
  });
  const stderr = new TailBuffer();
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
  const exited = new Promise<ExitStatus & { error?: Error }>((resolve) => {
    let spawnError: Error | undefined;
    child.once('error', (error) => {
      spawnError = error;
      // 'close' may never come when spawn itself failed.
      if (child.pid === undefined) resolve({ code: -1, signal: null, error });
    });
    child.once('close', (code, signal) =>
      resolve({ code, signal, ...(spawnError ? { error: spawnError } : {}) }),
    );
  });
  const kill = (signal: NodeJS.Signals = 'SIGTERM'): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  const onAbort = (): void => kill();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  void exited.then(() => options.signal?.removeEventListener('abort', onAbort));
  return { process: child, stderr, exited, kill };
}

export function describeExit(status: ExitStatus & { error?: Error }): string {
  if (status.error) return status.error.message;
  if (status.signal) return `was killed by ${status.signal}`;
  return `exited with code ${status.code}`;
}
