import {
  CreateBucketCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  S3Client,
  type MultipartUpload,
} from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { waitFor } from './cli.js';

export function testS3Client(endpoint = inject('s3Endpoint')): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A fresh bucket for one test. */
export async function createBucket(endpoint = inject('s3Endpoint')): Promise<string> {
  const bucket = `pgshelf-${randomBytes(5).toString('hex')}`;
  const client = testS3Client(endpoint);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}

/** The bucket's incomplete multipart uploads (moto lists them; s3rver cannot). */
export async function listUploads(s3: S3Client, bucket: string): Promise<MultipartUpload[]> {
  return (await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
}

/** Waits until the bucket's first incomplete upload has at least `parts` parts, and returns it (moto only). */
export async function uploadWithParts(
  s3: S3Client,
  bucket: string,
  parts: number,
  timeoutMs: number,
): Promise<MultipartUpload> {
  return waitFor(
    `${parts} parts of the upload`,
    async () => {
      const [u] = await listUploads(s3, bucket);
      if (!u) return undefined;
      const listed = await s3.send(
        new ListPartsCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
      );
      return (listed.Parts ?? []).length >= parts ? u : undefined;
    },
    timeoutMs,
  );
}
