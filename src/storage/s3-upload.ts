/**
 * A streamed S3 multipart upload whose parts grow with the bytes actually written, sent without copying them.
 *
 * lib-storage sized every part up front (from the database's size, which archives run ~10% of) and joined each part
 * into one buffer, holding several copies while sending: 96 MiB parts peaked at 399 MB RSS, 229 MiB at 574 MB.
 * Here a part is the list of chunks already received, sent as a stream with its ContentLength, and the bytes held
 * (the part being filled and the parts in flight) stay within a budget.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { Readable, Writable } from 'node:stream';
import { StorageError } from '../errors.js';
import { getGc } from '../gc.js';

type S3 = typeof import('@aws-sdk/client-s3');

const MiB = 1024 * 1024;
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;
/** S3's largest object. */
export const MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MiB;
/** First parts' size (PGSHELF_S3_PART_SIZE): small enough to keep memory low, large enough for few requests. */
export const DEFAULT_FIRST_PART_SIZE = 8 * MiB;
/**
 * Bytes held at most (the part being filled and the parts in flight) while parts are small: three 8 MiB parts.
 * A part larger than this is sent alone, with nothing filled meanwhile: memory stays at one part.
 */
export const PART_BUFFER_BUDGET = 24 * MiB;

/**
 * What `maxParts` parts must hold: S3's largest object (5 TiB) with its 10,000 parts, and proportionally less with
 * fewer (1,000 parts: 512 GiB), or parts would have to grow from the start.
 */
export function reachFor(maxParts: number): number {
  return Math.floor(MAX_OBJECT_SIZE * Math.min(1, maxParts / 10_000));
}

/**
 * Size of part n (1-based): `first` for the first `step` parts, then doubling every `step` parts up to 5 GiB, with
 * the largest step (the slowest growth) by which `maxParts` parts still hold reachFor(maxParts). With the defaults,
 * parts stay 8 MiB for the first 8.4 GiB of an archive, 16 MiB up to 25 GiB, 32 MiB up to 59 GiB, ...
 */
export function partSizes(maxParts: number, first = DEFAULT_FIRST_PART_SIZE): (n: number) => number {
  const goal = reachFor(maxParts);
  const base = Math.min(MAX_PART_SIZE, Math.max(MIN_PART_SIZE, first));
  const sizeAt = (step: number, n: number): number =>
    Math.min(MAX_PART_SIZE, base * 2 ** Math.min(30, Math.floor((n - 1) / step)));
  const total = (step: number): number => {
    let sum = 0;
    for (let n = 1; n <= maxParts && sum < goal; n++) sum += sizeAt(step, n);
    return sum;
  };
  // total() falls as step grows: the largest step that still reaches the goal (1 when none does).
  let lo = 1;
  let hi = Math.max(1, maxParts);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (total(mid) >= goal) lo = mid;
    else hi = mid - 1;
  }
  return (n) => sizeAt(lo, n);
}

export interface UploadTarget {
  readonly Bucket: string;
  readonly Key: string;
  readonly ContentType: string;
}

/**
 * The writable side of one upload. Bytes go into parts as they come; a full part is sent at once (CreateMultipartUpload
 * on the first), and writing waits while the bytes held exceed the budget. At the end of the stream the last part
 * is sent and every part waited for; `complete()` then makes the object visible (CompleteMultipartUpload, or one
 * PutObject when the whole stream fit in the first part), and `abort()` removes every part.
 */
export class MultipartWriter extends Writable {
  /** Bytes written. */
  bytes = 0;
  /** Most bytes held at once (for tests: bounded memory). */
  maxHeld = 0;
  /** Parts sent, with their sizes (for tests: the size sequence). */
  readonly sentSizes: number[] = [];
  private part: Buffer[] = [];
  private partBytes = 0;
  private partNumber = 1;
  private held = 0;
  private uploadId: Promise<string> | undefined;
  private readonly sending = new Set<Promise<void>>();
  private readonly etags: { PartNumber: number; ETag: string }[] = [];
  private failure: unknown;
  private requestError: unknown;
  private readonly stop = new AbortController();

  constructor(
    private readonly s3: { readonly sdk: S3; readonly client: S3Client },
    private readonly target: UploadTarget,
    private readonly maxParts: number,
    private readonly sizeOf: (n: number) => number,
    private readonly budget = PART_BUFFER_BUDGET,
  ) {
    // The parts are the buffer; this only holds the chunk being split between two parts.
    super({ highWaterMark: 64 * 1024 });
  }

  /** The first error of an S3 request, if one failed (not one of this side's own stops). */
  get error(): unknown {
    return this.requestError;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.failure !== undefined) return callback(asError(this.failure));
    this.bytes += chunk.length;
    let rest = chunk;
    while (rest.length > 0) {
      const room = this.sizeOf(this.partNumber) - this.partBytes;
      const piece = rest.length <= room ? rest : rest.subarray(0, room);
      this.part.push(piece);
      this.partBytes += piece.length;
      this.held += piece.length;
      rest = rest.subarray(piece.length);
      if (this.partBytes === this.sizeOf(this.partNumber)) this.dispatch();
    }
    this.maxHeld = Math.max(this.maxHeld, this.held);
    this.whenRoom().then(() => callback(), callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    // A stream that fits in the first part is kept for complete(): one PutObject, no multipart upload.
    if (this.partNumber > 1 && this.partBytes > 0) this.dispatch();
    this.settle().then(() => {
      if (this.failure !== undefined) throw asError(this.failure);
      callback();
    }, callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (err) this.failure ??= err;
    this.stop.abort(err ?? new Error('upload stopped'));
    callback(err);
  }

  /** Makes the object visible: completes the multipart upload, or puts the one small part. */
  async complete(): Promise<void> {
    await this.settle();
    if (this.failure !== undefined) throw asError(this.failure);
    const { sdk, client } = this.s3;
    if (!this.uploadId) {
      const body = this.part;
      await client.send(
        freshBody(
          new sdk.PutObjectCommand({
            ...this.target,
            Body: Readable.from(body, { objectMode: false }),
            ContentLength: this.partBytes,
          }),
          body,
        ),
      );
      this.part = [];
      return;
    }
    const parts = [...this.etags].sort((a, b) => a.PartNumber - b.PartNumber);
    await client.send(
      new sdk.CompleteMultipartUploadCommand({
        Bucket: this.target.Bucket,
        Key: this.target.Key,
        UploadId: await this.uploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
  }

  /** Stops sending and aborts the multipart upload, if one was started (whatever failed before). */
  async abort(): Promise<void> {
    if (!this.destroyed) this.destroy();
    this.stop.abort(new Error('upload aborted'));
    await this.settle();
    const id = await this.uploadId?.catch(() => undefined);
    if (id === undefined) return;
    const { sdk, client } = this.s3;
    await client.send(
      new sdk.AbortMultipartUploadCommand({ Bucket: this.target.Bucket, Key: this.target.Key, UploadId: id }),
    );
  }

  private async settle(): Promise<void> {
    while (this.sending.size > 0) await Promise.all(this.sending);
  }

  /** Waits while more is held than the budget (or than one part, when parts outgrew it). */
  private async whenRoom(): Promise<void> {
    while (this.held > Math.max(this.budget, this.sizeOf(this.partNumber)) && this.sending.size > 0) {
      await Promise.race(this.sending);
    }
    if (this.failure !== undefined) throw asError(this.failure);
  }

  private dispatch(): void {
    const chunks = this.part;
    const bytes = this.partBytes;
    const n = this.partNumber++;
    this.part = [];
    this.partBytes = 0;
    if (n > this.maxParts) {
      this.failure ??= this.requestError ??= new StorageError(
        `the archive outgrew ${this.maxParts} parts (PGSHELF_S3_MAX_PARTS) at ${this.bytes} bytes: raise ` +
          'PGSHELF_S3_MAX_PARTS (S3 allows 10000) or PGSHELF_S3_PART_SIZE',
      );
      this.held -= bytes;
      return;
    }
    this.sentSizes.push(bytes);
    // A part larger than the budget is sent alone: free the garbage of filling it now, and the part itself once
    // sent, so that memory peaks at one part (V8 lets some 64 MB of dead buffers pile up before it collects).
    const large = bytes > this.budget;
    if (large) getGc()?.({ type: 'major' });
    const sent: Promise<void> = this.sendPart(n, chunks, bytes)
      .then(
        (ETag) => void this.etags.push({ PartNumber: n, ETag }),
        (err: unknown) => {
          if (!this.stop.signal.aborted) this.requestError ??= err;
          this.failure ??= err;
          this.stop.abort(err);
        },
      )
      .finally(() => {
        this.held -= bytes;
        this.sending.delete(sent);
        chunks.length = 0;
        if (large) getGc()?.({ type: 'major' });
      });
    this.sending.add(sent);
  }

  private async sendPart(n: number, chunks: Buffer[], bytes: number): Promise<string> {
    const { sdk, client } = this.s3;
    this.uploadId ??= client
      .send(new sdk.CreateMultipartUploadCommand(this.target), { abortSignal: this.stop.signal })
      .then((out) => {
        if (!out.UploadId) throw new StorageError(`S3 started no multipart upload for ${this.target.Key}`);
        return out.UploadId;
      });
    const UploadId = await this.uploadId;
    const command = new sdk.UploadPartCommand({
      Bucket: this.target.Bucket,
      Key: this.target.Key,
      UploadId,
      PartNumber: n,
      Body: Readable.from(chunks, { objectMode: false }),
      ContentLength: bytes,
    });
    const out = await client.send(freshBody(command, chunks), { abortSignal: this.stop.signal });
    if (!out.ETag) throw new StorageError(`S3 returned no ETag for part ${n} of ${this.target.Key}`);
    return out.ETag;
  }
}

/**
 * A stream body is used up by the first attempt; the SDK's retries would resend the same, empty, stream. This
 * gives each attempt (it runs after the retry middleware, before signing) a new stream over the same chunks.
 */
function freshBody<C extends { middlewareStack: { add: (...args: never[]) => void } }>(
  command: C,
  chunks: readonly Buffer[],
): C {
  type Next = (args: { request: unknown }) => Promise<unknown>;
  (command.middlewareStack.add as (mw: (next: Next) => Next, options: object) => void)(
    (next) => (args) => {
      const request = args.request as { body?: unknown };
      if (request && typeof request === 'object') request.body = Readable.from(chunks, { objectMode: false });
      return next(args);
    },
    { step: 'finalizeRequest', priority: 'low', name: 'pgshelfFreshPartBody' },
  );
  return command;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
