/**
 * A web-streams transform (age-encryption's encrypt/decrypt) as one Node stream stage, so it sits in a
 * stream/promises pipeline like gzip: backpressure both ways, errors and aborts destroy it like any other stage.
 */
import { Duplex } from 'node:stream';

/** age-encryption's shape: give it the input stream, get (once it is ready) the output stream. */
export type WebTransform = (input: ReadableStream<Uint8Array>) => Promise<ReadableStream<Uint8Array>>;

export interface WebStageOptions {
  /** Turns the library's errors into pgshelf's. */
  readonly mapError?: (err: unknown) => Error;
  /** Most bytes written before the transform is ready (a header to parse); more is an error. */
  readonly maxBeforeReady?: { readonly bytes: number; readonly error: () => Error };
}

export class WebStage extends Duplex {
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private readonly output: Promise<ReadableStreamDefaultReader<Uint8Array>>;
  private reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private pumping = false;
  private written = 0;

  constructor(
    transform: WebTransform,
    private readonly options: WebStageOptions = {},
  ) {
    super({ readableHighWaterMark: 1 << 20, writableHighWaterMark: 1 << 20 });
    const input = new TransformStream<Uint8Array, Uint8Array>();
    this.writer = input.writable.getWriter();
    this.output = transform(input.readable).then((out) => {
      const reader = out.getReader();
      if (this.destroyed) reader.cancel().catch(() => undefined);
      return (this.reader = reader);
    });
    // Failing before the first read (a header no identity opens) must not wait for the reader to ask.
    this.output.catch((err: unknown) => this.destroy(this.mapped(err)));
  }

  private mapped(err: unknown): Error {
    // Once destroyed, what the web side rejects with is the reason given to it (another stage's error): as is.
    if (this.options.mapError && !this.destroyed) return this.options.mapError(err);
    return err instanceof Error ? err : new Error(String(err));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.written += chunk.length;
    const cap = this.options.maxBeforeReady;
    if (cap && !this.reader && this.written > cap.bytes) {
      callback(cap.error());
      return;
    }
    // Resolves once the transform took the chunk: that is the backpressure from the output side.
    this.writer.write(chunk).then(
      () => callback(),
      (err: unknown) => callback(this.mapped(err)),
    );
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.writer.close().then(
      () => callback(),
      (err: unknown) => callback(this.mapped(err)),
    );
  }

  override _read(): void {
    if (this.pumping) return;
    this.pumping = true;
    this.pump().then(
      () => (this.pumping = false),
      (err: unknown) => this.destroy(this.mapped(err)),
    );
  }

  /** Moves output chunks to the Node side until it has enough (push() false) or the output ends. */
  private async pump(): Promise<void> {
    const reader = await this.output;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        this.push(null);
        return;
      }
      const more = this.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      if (!more) return;
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Both sides of the web stream are released, so nothing keeps reading or waiting after a failure.
    this.writer.abort(err ?? undefined).catch(() => undefined);
    this.reader?.cancel(err ?? undefined).catch(() => undefined);
    callback(err);
  }
}
