import { describe, expect, it } from 'vitest';
import { MIN_PART_SIZE, partSizeFor, queueSizeFor } from '../../src/storage/s3.js';

describe('multipart part sizing', () => {
  const GiB = 1024 ** 3;
  it.each([
    [0, 10_000],
    [1 * GiB, 10_000],
    [100 * GiB, 10_000],
    [2048 * GiB, 10_000],
    [10 * GiB, 1_000],
    [500 * GiB, 1_000],
  ])('a %d-byte database with at most %d parts fits twice its size', (size, maxParts) => {
    const part = partSizeFor(size, maxParts);
    expect(part).toBeGreaterThanOrEqual(MIN_PART_SIZE);
    expect(part % (1024 * 1024)).toBe(0);
    expect(part * maxParts).toBeGreaterThanOrEqual(2 * size);
  });
  it('keeps buffered parts within a fixed budget as parts grow', () => {
    expect(queueSizeFor(5 * 1024 * 1024)).toBe(2);
    expect(queueSizeFor(64 * 1024 * 1024)).toBe(1);
    expect(queueSizeFor(512 * 1024 * 1024)).toBe(1);
  });
});
