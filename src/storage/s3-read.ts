/**
 * A download that survives the connection dropping midway: when the body of a GET stops early (reset, closed,
 * idle past the socket timeout), the rest is asked for again from the byte where it stopped (`Range: bytes=N-`),
 * pinned to the object first read (`If-Match: <ETag>`), as `aws s3 cp` and rclone do. The bytes come out as one
 * stream, in order, each once: the consumer (a restore, a verify) never sees the seam.
 *
 * Without it a restore of a 100 MB archive failed with Node's bare "aborted" when S3 reset the connection at 58 MB
 * (seen on CI against moto): the error named neither the object nor what to do, and the restore started over.
 */
import { Readable, finished } from 'node:stream';
import { StorageError, errorMessage } from '../errors.js';
import type { ResumeInfo } from './storage.js';

/** One GET: the whole object (`start` 0) or its bytes from `start` on, refused unless the ETag still matches. */
export type RangeGet = (
  start: number,
  etag: string | undefined,
) => Promise<{
  readonly body: Readable;
  readonly etag?: string | undefined;
  /** Content-Length of this response. */
  readonly length?: number | undefined;
}>;

export interface ResumeOptions {
  readonly signal?: AbortSignal | undefined;
  /** Tries in a row that bring no byte before giving up (default 5). */
  readonly tries?: number;
  /** Wait before try n (1-based), in ms (default 0.5 s doubling: 0.5, 1, 2, 4, 8 s). */
  readonly delayMs?: (attempt: number) => number;
  /** Resumptions in all, whatever the progress, before giving up (default 100): a link that drops every few KB. */
  readonly maxResumes?: number;
  readonly onResume?: ((info: ResumeInfo) => void) | undefined;
}

/** Did the service refuse the ranged GET because the object is no longer the one first read? */
function changed(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number }; cause?: unknown };
  if (e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412) return true;
  return e.cause !== undefined && e.cause !== err && changed(e.cause);
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export class ResumingRead extends Readable {
  /** Bytes delivered so far. */
  position = 0;
  /** Times the body was asked for again. */
  resumes = 0;
  /** The first response's ETag: every later ranged GET must match it (If-Match). */
  private readonly etag: string | undefined;
  private body: Readable | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly tries: number;
  private readonly delayMs: (attempt: number) => number;
  private readonly maxResumes: number;

  constructor(
    private readonly get: RangeGet,
    /** Where the bytes come from, for messages: s3://bucket/key. */
    private readonly where: string,
    first: { readonly body: Readable; readonly etag?: string | undefined },
    private readonly total: number | undefined,
    private readonly options: ResumeOptions = {},
  ) {
    super({ highWaterMark: 1 << 20 });
    this.etag = first.etag;
    this.tries = options.tries ?? 5;
    this.delayMs = options.delayMs ?? ((n) => 500 * 2 ** (n - 1));
    this.maxResumes = options.maxResumes ?? 100;
    this.attach(first.body);
  }

  private attach(body: Readable): void {
    this.body = body;
    const onData = (chunk: Buffer): void => {
      this.position += chunk.length;
      this.failures = 0;
      if (!this.push(chunk)) body.pause();
    };
    body.on('data', onData);
    finished(body, (err) => {
      body.off('data', onData);
      if (this.body !== body || this.destroyed) return;
      this.body = undefined;
      if (!err && (this.total === undefined || this.position >= this.total)) {
        this.push(null);
        return;
      }
      this.retry(err ?? new Error(`the body ended at byte ${this.position} of ${this.total ?? '?'}`));
    });
  }

  override _read(): void {
    this.body?.resume();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    clearTimeout(this.timer);
    const body = this.body;
    this.body = undefined;
    body?.destroy();
    callback(err);
  }

  private retry(cause: unknown): void {
    const signal = this.options.signal;
    if (this.destroyed) return;
    if (signal?.aborted) {
      this.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      return;
    }
    if (changed(cause)) {
      this.destroy(
        new StorageError(
          `${this.where} changed while it was being read (after ${mib(this.position)}): its ETag no longer ` +
            `matches ${this.etag ?? 'the first response'}. Something overwrote the archive; read it again`,
          { cause },
        ),
      );
      return;
    }
    this.failures++;
    this.resumes++;
    if (this.failures > this.tries || this.resumes > this.maxResumes) {
      const of = this.total === undefined ? '' : ` of ${mib(this.total)}`;
      const tries =
        this.failures > this.tries
          ? `${this.tries} tries to go on from there brought no byte`
          : `it was resumed ${this.maxResumes} times`;
      this.destroy(
        new StorageError(
          `reading ${this.where} stopped after ${mib(this.position)}${of}: ${errorMessage(cause)}; ${tries}. ` +
            'Check the network path to the storage (S3_ENDPOINT, proxies, PGSHELF_S3_REQUEST_TIMEOUT) and try again',
          { cause },
        ),
      );
      return;
    }
    this.options.onResume?.({ position: this.position, total: this.total, attempt: this.failures, cause });
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.destroyed) return;
      this.get(this.position, this.etag).then(
        (next) => {
          if (this.destroyed) next.body.destroy();
          else this.attach(next.body);
        },
        (err: unknown) => this.retry(err),
      );
    }, this.delayMs(this.failures));
  }
}
