import type { Readable, Writable } from 'node:stream';

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date;
}

export interface IncompleteUpload {
  readonly key: string;
  readonly uploadId: string;
  readonly initiated: Date;
}

/**
 * A streaming write. Bytes written to `stream` are not visible under the key until `commit()` resolves;
 * `abort()` removes every trace (the temp file, the multipart upload). Exactly one of the two must be called.
 */
export interface ObjectWriter {
  readonly stream: Writable;
  commit(): Promise<void>;
  abort(): Promise<void>;
  /**
   * Why the storage side failed, once abort() has resolved, when it did: an upload's own error, which the stream
   * feeding it only sees as a generic abort.
   */
  failure?(): Error | undefined;
}

export interface WriteOptions {
  /** Best guess of the final size, used to size multipart parts. */
  readonly sizeHint?: number;
  readonly contentType?: string;
}

/** Requests made so far, by kind (for benchmarks and tests that check no request is wasted). */
export interface RequestCounts {
  list: number;
  get: number;
  head: number;
  put: number;
  delete: number;
  multipart: number;
}

/** Where backups live. Keys are relative to the storage URL's folder or prefix and use '/'. */
/** What a caller hears of each resumption of a download (to log it). */
export interface ResumeInfo {
  /** Bytes delivered before the body stopped. */
  readonly position: number;
  /** The object's size, when the first response said it. */
  readonly total: number | undefined;
  /** 1 for the first try after this stop, counting up while tries bring no byte. */
  readonly attempt: number;
  readonly cause: unknown;
}

export interface OpenReadOptions {
  readonly signal?: AbortSignal | undefined;
  /**
   * Called each time a download picks up again after the connection dropped midway (S3: a ranged GET from the byte
   * where it stopped), to log it. A folder never calls it.
   */
  readonly onResume?: ((info: ResumeInfo) => void) | undefined;
}

export interface Storage {
  readonly url: string;
  readonly requests: RequestCounts;
  createWriter(key: string, options?: WriteOptions): ObjectWriter;
  /** Writes a small object atomically (manifests). */
  putObject(key: string, body: string | Buffer, contentType?: string): Promise<void>;
  /**
   * Reads a small object; undefined when it does not exist. With `maxBytes`, reads at most maxBytes + 1 bytes:
   * a longer result means the object is larger than the cap (and the rest was never downloaded).
   */
  getObject(key: string, options?: { maxBytes?: number }): Promise<Buffer | undefined>;
  openRead(key: string, options?: OpenReadOptions): Promise<Readable>;
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** Every object under `prefix` (recursively), in key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Deletes keys, in as few requests as the backend allows. Missing keys are not an error. */
  deleteMany(keys: readonly string[]): Promise<void>;
  /** Multipart uploads (or temp files) left behind by writers that never committed nor aborted. */
  listIncomplete(prefix: string): AsyncIterable<IncompleteUpload>;
  abortIncomplete(upload: IncompleteUpload): Promise<void>;
  /** A location a human or another tool can use: an absolute path or an s3:// URL. */
  locate(key: string): string;
  /**
   * Gets ready for work before the first job: S3 loads the AWS SDK and builds its client here. Loading the SDK in
   * the middle of a worker's first upload made that backup's peak RSS 15-25 MB higher than every later one's.
   */
  open(): Promise<void>;
  close(): Promise<void>;
  /**
   * For a forced exit, synchronous: drops every writer still open and removes what it wrote (temp files).
   * Optional: an S3 multipart upload left open is aborted later by prune.
   */
  abortWritersNow?(): void;
}

export function newRequestCounts(): RequestCounts {
  return { list: 0, get: 0, head: 0, put: 0, delete: 0, multipart: 0 };
}
