import { describe, expect, it } from 'vitest';
import {
  DEFAULT_FIRST_PART_SIZE,
  MAX_OBJECT_SIZE,
  MAX_PART_SIZE,
  MIN_PART_SIZE,
  partSizes,
  reachFor,
} from '../../src/storage/s3-upload.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Bytes the first `parts` parts hold, and the size of the last of them. */
function reach(sizeOf: (n: number) => number, parts: number): { bytes: number; last: number } {
  let bytes = 0;
  for (let n = 1; n <= parts; n++) bytes += sizeOf(n);
  return { bytes, last: sizeOf(parts) };
}

/** The part number that holds byte `offset` of the stream. */
function partHolding(sizeOf: (n: number) => number, offset: number): number {
  let n = 1;
  for (let end = sizeOf(1); end <= offset; end += sizeOf(++n));
  return n;
}

describe('multipart part sizes: grown from the bytes written', () => {
  it.each([10_000, 5_000, 1_000])(
    'with at most %d parts: never shrink, stay within 5 MiB-5 GiB, and reach 5 TiB x parts / 10,000',
    (maxParts) => {
      const sizeOf = partSizes(maxParts);
      let prev = 0;
      for (let n = 1; n <= maxParts; n++) {
        const size = sizeOf(n);
        expect(size).toBeGreaterThanOrEqual(Math.max(prev, MIN_PART_SIZE));
        expect(size).toBeLessThanOrEqual(MAX_PART_SIZE);
        expect(size % MiB).toBe(0);
        prev = size;
      }
      expect(reachFor(maxParts)).toBe((MAX_OBJECT_SIZE * maxParts) / 10_000);
      expect(reach(sizeOf, maxParts).bytes).toBeGreaterThanOrEqual(reachFor(maxParts));
    },
  );

  it('keeps the first 8 MiB parts as long as 10,000 parts still reach 5 TiB: small archives, small parts', () => {
    const sizeOf = partSizes(10_000);
    expect(sizeOf(1)).toBe(DEFAULT_FIRST_PART_SIZE);
    // An archive of 8 GiB (a database of ~80 GB) is sent in 8 MiB parts only.
    expect(sizeOf(partHolding(sizeOf, 8 * GiB))).toBe(8 * MiB);
    // A 2 TB database's ~200 GiB archive: parts of 128 MiB at its end (lib-storage: 420 MiB from the start).
    expect(sizeOf(partHolding(sizeOf, 200 * GiB))).toBe(128 * MiB);
    // Growth is as late as it can be: one step later and 10,000 parts would not reach 5 TiB.
    const step = [...Array(10_000).keys()].findIndex((i) => sizeOf(i + 1) > DEFAULT_FIRST_PART_SIZE);
    expect(step).toBeGreaterThan(1000);
  });

  it('starts from PGSHELF_S3_PART_SIZE, held within 5 MiB-5 GiB', () => {
    expect(partSizes(10_000, 96 * MiB)(1)).toBe(96 * MiB);
    expect(partSizes(10_000, 1 * MiB)(1)).toBe(MIN_PART_SIZE);
    expect(partSizes(10_000, 10 * GiB)(1)).toBe(MAX_PART_SIZE);
  });

  it('with 1,000 parts, still 8 MiB parts for the first 512 MiB; with very few, grows as fast as it can', () => {
    const sizeOf = partSizes(1_000);
    expect(sizeOf(partHolding(sizeOf, 512 * MiB))).toBe(8 * MiB);
    const few = partSizes(10);
    expect(few(1)).toBe(8 * MiB);
    expect(few(2)).toBe(16 * MiB);
    expect(few(10)).toBe(4 * GiB);
  });
});
