import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Credentials } from '../config/index.js';
import { StorageError, StorageRefusedError, errorMessage } from '../errors.js';
import {
  newRequestCounts,
  type RequestCounts,
  type IncompleteUpload,
  type ObjectInfo,
  type ObjectWriter,
  type OpenReadOptions,
  type Storage,
  type WriteOptions,
} from './storage.js';
import { MultipartWriter, partSizes } from './s3-upload.js';
import { ResumingRead, type RangeGet, type ResumeOptions } from './s3-read.js';

type Sdk = typeof import('@aws-sdk/client-s3');
let sdkModule: Promise<Sdk> | undefined;

/**
 * The AWS SDK, loaded on first use: it adds ~40 MB to a process, which a worker writing to a local folder
 * should not carry.
 */
function loadSdk(): Promise<Sdk> {
  sdkModule ??= import('@aws-sdk/client-s3');
  return sdkModule;
}

export interface S3Options {
  readonly bucket: string;
  readonly prefix: string;
  readonly endpoint?: string | undefined;
  readonly region?: string | undefined;
  readonly forcePathStyle: boolean;
  readonly maxParts: number;
  /** PGSHELF_S3_PART_SIZE, in bytes: the first parts' size (later ones grow, see partSizes). */
  readonly firstPartSize?: number;
  readonly credentials?: S3Credentials | undefined;
  /** PGSHELF_S3_CONNECT_TIMEOUT, in ms (default 10 s). */
  readonly connectTimeoutMs?: number;
  /** PGSHELF_S3_REQUEST_TIMEOUT, in ms (default 30 s): most time without a byte sent or received. */
  readonly requestTimeoutMs?: number;
  /** How a download resumes after a dropped connection (tests shorten the waits). */
  readonly resume?: Pick<ResumeOptions, 'tries' | 'delayMs' | 'maxResumes'>;
  /** Extra client settings (credentials in tests). */
  readonly clientConfig?: S3ClientConfig;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** The SDK's own timeouts, and Node's ones beneath it (a refused or reset connection is not one). */
function isTimeout(err: unknown): boolean {
  const e = err as { name?: string; code?: string };
  // node-http-handler names ECONNRESET and EPIPE 'TimeoutError' too: a connection reset midway is no timeout.
  if (e.code === 'ECONNRESET' || e.code === 'EPIPE') return false;
  return e.name === 'TimeoutError' || e.code === 'ETIMEDOUT' || e.code === 'ESOCKETTIMEDOUT';
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

/** S3 error codes a retry cannot fix. */
const REFUSALS = new Set([
  'NoSuchBucket',
  'AccessDenied',
  'AllAccessDisabled',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidBucketName',
  'AccountProblem',
  'InvalidToken',
  'ExpiredToken',
  'InvalidObjectState',
  'PermanentRedirect',
  'AuthorizationHeaderMalformed',
]);

/** S3 or any S3-compatible service. Streams go up as multipart uploads whose parts grow (s3-upload.ts). */
export class S3Storage implements Storage {
  readonly url: string;
  readonly requests = newRequestCounts();
  private clientInstance: Promise<{ sdk: Sdk; client: S3Client }> | undefined;
  private readonly prefix: string;
  /**
   * Set when a call got no answer: later calls fail at once, for one request timeout, instead of each waiting
   * out its own timeouts and retries (a backup's marker, upload, clean-up and failure marker took ~6 min).
   */
  private unanswered: { readonly until: number; readonly cause: unknown } | undefined;

  constructor(private readonly options: S3Options) {
    this.prefix = options.prefix ? `${options.prefix}/` : '';
    this.url = `s3://${options.bucket}${options.prefix ? `/${options.prefix}` : ''}`;
  }

  private connect(): Promise<{ sdk: Sdk; client: S3Client }> {
    const options = this.options;
    this.clientInstance ??= loadSdk().then((sdk) => ({
      sdk,
      client: new sdk.S3Client({
        ...(options.endpoint ? { endpoint: options.endpoint } : {}),
        region: options.region ?? (options.endpoint ? 'us-east-1' : undefined),
        forcePathStyle: options.forcePathStyle,
        // A copy: the SDK annotates the credentials object it is given, and ours is frozen.
        ...(options.credentials ? { credentials: { ...options.credentials } } : {}),
        // Non-AWS services (MinIO, R2, Scaleway, s3rver) reject or mangle the SDK's default CRC checksums.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        // Without these an endpoint that accepts connections and never answers holds a call forever. The socket
        // timeout is an idle one, so a long streamed upload or download is fine as long as bytes keep moving.
        requestHandler: {
          connectionTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
          socketTimeout: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
        },
        ...options.clientConfig,
      }),
    }));
    return this.clientInstance;
  }

  private full(key: string): string {
    return this.prefix + key;
  }

  private relative(fullKey: string): string {
    return fullKey.startsWith(this.prefix) ? fullKey.slice(this.prefix.length) : fullKey;
  }

  locate(key: string): string {
    return `s3://${this.options.bucket}/${this.full(key)}`;
  }

  private fail(action: string, key: string, err: unknown): StorageError {
    if (err instanceof StorageError) return err;
    if (isTimeout(err)) {
      const requestTimeoutMs = this.options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
      this.unanswered = { until: Date.now() + requestTimeoutMs, cause: err };
      return this.timedOut(action, key, err);
    }
    // AWS S3 with no region anywhere (S3_REGION, AWS_REGION, ~/.aws/config): the SDK fails before any request.
    if (!this.options.endpoint && /Region is missing/i.test(errorMessage(err))) {
      return new StorageRefusedError(
        `S3 ${action} ${this.locate(key)} failed: no AWS region is set. Set S3_REGION (or AWS_REGION) to the ` +
          "bucket's region, e.g. S3_REGION=eu-west-1, or S3_ENDPOINT for an S3-compatible service",
        { cause: err },
      );
    }
    const status = httpStatus(err);
    const detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    const code = (err as { Code?: unknown }).Code ?? (err instanceof Error ? err.name : undefined);
    // Settings or permissions: trying again later gives the same answer, so the job fails at once.
    const Refused = typeof code === 'string' && REFUSALS.has(code) ? StorageRefusedError : StorageError;
    return new Refused(
      `S3 ${action} ${this.locate(key)} failed${status ? ` (HTTP ${status})` : ''}: ${detail}. ` +
        'Check PGSHELF_STORAGE, S3_ENDPOINT and the AWS credentials',
      { cause: err },
    );
  }

  /** Throws at once while the service is known not to answer (see `unanswered`). */
  private checkAnswering(action: string, key: string): void {
    if (this.unanswered && Date.now() < this.unanswered.until) {
      throw this.timedOut(action, key, this.unanswered.cause);
    }
  }

  /** A call that got no answer in time: which endpoint, which setting, and what to do. */
  private timedOut(action: string, key: string, err: unknown): StorageError {
    const connecting = /establish a connection|connect/i.test(errorMessage(err));
    const setting = connecting ? 'PGSHELF_S3_CONNECT_TIMEOUT' : 'PGSHELF_S3_REQUEST_TIMEOUT';
    const ms = connecting
      ? (this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS)
      : (this.options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    // The origin only: an endpoint URL may carry user:password.
    const where = this.options.endpoint
      ? `S3_ENDPOINT=${new URL(this.options.endpoint).origin}`
      : `AWS S3 (region ${this.options.region ?? 'from the AWS chain'})`;
    return new StorageError(
      `S3 ${action} ${this.locate(key)} failed: ${where} ` +
        (connecting ? 'did not accept a connection' : 'accepted the connection but did not answer') +
        ` within ${setting}=${ms / 1000} s. Check that S3_ENDPOINT points at a working S3 service, or raise ` +
        `${setting}, e.g. ${setting}=${connecting ? 30 : 120}`,
      { cause: err },
    );
  }

  createWriter(key: string, options: WriteOptions = {}): ObjectWriter {
    // Parts are sized from the bytes written, not from options.sizeHint (databases run ~10x their archives).
    const sizes = partSizes(this.options.maxParts, this.options.firstPartSize);
    // One pipe read: the writer's parts are the buffer (a larger one sits full while a large part is sent).
    const body = new PassThrough({ highWaterMark: 64 * 1024 });
    this.requests.multipart++;
    const target = {
      Bucket: this.options.bucket,
      Key: this.full(key),
      ContentType: options.contentType ?? 'application/gzip',
    };
    // The client is ready before the first byte is written (a worker builds it at start-up); meanwhile the
    // PassThrough holds what comes. Started now and observed here, so an early failure is never unhandled.
    const ready = this.connect().then((s3) => {
      this.checkAnswering('upload', key);
      const writer = new MultipartWriter(s3, target, this.options.maxParts, sizes);
      const piped = pipeline(body, writer);
      return { writer, piped };
    });
    let failure: unknown;
    const failed = (err: unknown): void => {
      failure ??= err;
      body.destroy(err instanceof Error ? err : new Error(String(err)));
    };
    // Only the storage side's own errors count as its failure; a stop from upstream (pg_dump failed) does not.
    ready.then(
      ({ writer, piped }) => piped.catch(() => writer.error !== undefined && failed(writer.error)),
      failed,
    );
    let settled = false;
    return {
      stream: body,
      commit: async () => {
        if (settled) throw new StorageError(`writer for ${key} already finished`);
        settled = true;
        try {
          const { writer, piped } = await ready;
          await piped;
          await writer.complete();
        } catch (err) {
          const { writer } = await ready.catch(() => ({ writer: undefined }));
          await writer?.abort().catch(() => undefined);
          throw this.fail('upload', key, failure ?? err);
        }
      },
      abort: async () => {
        if (settled) return;
        settled = true;
        body.destroy(new Error('upload aborted'));
        const { writer } = await ready.catch(() => ({ writer: undefined }));
        await writer?.abort().catch(() => undefined);
        await this.abortUploadsOf(key);
      },
      failure: () => (failure === undefined ? undefined : this.fail('upload', key, failure)),
    };
  }

  /** Aborts any multipart upload still open for exactly `key` (services without the listing call are skipped). */
  private async abortUploadsOf(key: string): Promise<void> {
    try {
      for await (const upload of this.listIncomplete(key)) {
        if (upload.key === key) await this.abortIncomplete(upload);
      }
    } catch {
      // s3rver and some gateways do not implement ListMultipartUploads; the writer has already aborted its own.
    }
  }

  /**
   * One S3 request: counted, sent with the lazily created client, and any failure turned into a StorageError
   * naming the action and the object. With `ifMissing`, a 404 returns that value instead.
   */
  private async request<R, M = never>(
    kind: keyof RequestCounts,
    action: string,
    key: string,
    send: (sdk: Sdk, client: S3Client) => Promise<R>,
    ifMissing?: { value: M },
  ): Promise<R | M> {
    this.requests[kind]++;
    const { sdk, client } = await this.connect();
    this.checkAnswering(action, key);
    try {
      const out = await send(sdk, client);
      this.unanswered = undefined;
      return out;
    } catch (err) {
      const name = (err as Error).name;
      if (ifMissing && (httpStatus(err) === 404 || name === 'NoSuchKey' || name === 'NotFound'))
        return ifMissing.value;
      throw this.fail(action, key, err);
    }
  }

  async putObject(key: string, body: string | Buffer, contentType = 'application/json'): Promise<void> {
    const params = { Bucket: this.options.bucket, Key: this.full(key), Body: body, ContentType: contentType };
    await this.request('put', 'put', key, (sdk, c) => c.send(new sdk.PutObjectCommand(params)));
  }

  async getObject(key: string, options: { maxBytes?: number } = {}): Promise<Buffer | undefined> {
    const params = { Bucket: this.options.bucket, Key: this.full(key) };
    const max = options.maxBytes;
    return this.request(
      'get',
      'get',
      key,
      async (sdk, c) => {
        const out = await c.send(new sdk.GetObjectCommand(params));
        if (!out.Body) return Buffer.alloc(0);
        if (max === undefined || !(out.Body instanceof Readable))
          return Buffer.from(await out.Body.transformToByteArray());
        // Stop downloading once past the cap (leaving the loop destroys the body): at most max + one chunk.
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of out.Body as AsyncIterable<Buffer>) {
          chunks.push(chunk);
          size += chunk.length;
          if (size > max) break;
        }
        return Buffer.concat(chunks).subarray(0, max + 1);
      },
      { value: undefined },
    );
  }

  /**
   * The object as a stream that picks up where it stopped when the connection drops midway (s3-read.ts): a ranged
   * GET pinned to the first response's ETag, up to five tries in a row without a byte.
   */
  async openRead(key: string, options: OpenReadOptions = {}): Promise<Readable> {
    const get: RangeGet = async (start, etag) => {
      const params = {
        Bucket: this.options.bucket,
        Key: this.full(key),
        ...(start > 0 ? { Range: `bytes=${start}-`, ...(etag ? { IfMatch: etag } : {}) } : {}),
      };
      const out = await this.request('get', 'get', key, (sdk, c) =>
        c.send(new sdk.GetObjectCommand(params), { abortSignal: options.signal }),
      );
      if (!(out.Body instanceof Readable))
        throw new StorageError(`S3 returned no stream for ${this.locate(key)}`);
      return { body: out.Body, etag: out.ETag, length: out.ContentLength };
    };
    const first = await get(0, undefined);
    return new ResumingRead(get, this.locate(key), first, first.length, {
      signal: options.signal,
      onResume: options.onResume,
      ...this.options.resume,
    });
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const params = { Bucket: this.options.bucket, Key: this.full(key) };
    const out = await this.request(
      'head',
      'head',
      key,
      (sdk, c) => c.send(new sdk.HeadObjectCommand(params)),
      {
        value: undefined,
      },
    );
    return out && { key, size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0) };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const params = {
        Bucket: this.options.bucket,
        Prefix: this.full(prefix),
        ContinuationToken: token,
        MaxKeys: 1000,
      };
      const out = await this.request('list', 'list', prefix, (sdk, c) =>
        c.send(new sdk.ListObjectsV2Command(params)),
      );
      for (const o of out.Contents ?? []) {
        if (!o.Key) continue;
        yield { key: this.relative(o.Key), size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const params = {
        Bucket: this.options.bucket,
        Delete: { Objects: batch.map((k) => ({ Key: this.full(k) })), Quiet: true },
      };
      const out = await this.request('delete', 'delete', batch[0] ?? '', (sdk, c) =>
        c.send(new sdk.DeleteObjectsCommand(params)),
      );
      const errors = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (errors.length > 0) {
        const first = errors[0];
        throw new StorageError(
          `S3 refused to delete ${errors.length} of ${batch.length} objects, e.g. ${first?.Key ?? '?'}: ` +
            `${first?.Code ?? ''} ${first?.Message ?? ''}`,
        );
      }
    }
  }

  async *listIncomplete(prefix: string): AsyncIterable<IncompleteUpload> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const params = {
        Bucket: this.options.bucket,
        Prefix: this.full(prefix),
        KeyMarker: keyMarker,
        UploadIdMarker: uploadIdMarker,
      };
      const out = await this.request('list', 'list multipart uploads', prefix, (sdk, c) =>
        c.send(new sdk.ListMultipartUploadsCommand(params)),
      );
      for (const u of out.Uploads ?? []) {
        if (!u.Key || !u.UploadId) continue;
        yield { key: this.relative(u.Key), uploadId: u.UploadId, initiated: u.Initiated ?? new Date(0) };
      }
      keyMarker = out.IsTruncated ? out.NextKeyMarker : undefined;
      uploadIdMarker = out.IsTruncated ? out.NextUploadIdMarker : undefined;
    } while (keyMarker);
  }

  async abortIncomplete(upload: IncompleteUpload): Promise<void> {
    const params = { Bucket: this.options.bucket, Key: this.full(upload.key), UploadId: upload.uploadId };
    await this.request(
      'delete',
      'abort multipart upload',
      upload.key,
      (sdk, c) => c.send(new sdk.AbortMultipartUploadCommand(params)),
      { value: undefined },
    );
  }

  async open(): Promise<void> {
    await this.connect();
  }

  async close(): Promise<void> {
    const connected = this.clientInstance;
    this.clientInstance = undefined;
    if (connected) (await connected).client.destroy();
  }
}
