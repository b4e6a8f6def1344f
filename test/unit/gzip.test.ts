import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { BLOCK_SIZE, createGzipStream } from '../../src/archive/gzip.js';

async function compress(input: Buffer, threads: number, chunk = 64 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunk) parts.push(input.subarray(i, i + chunk));
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(parts),
    createGzipStream(6, threads),
    new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }),
  );
  return Buffer.concat(out);
}

/** Text with structure (compressible) and a random tail per line, so blocks differ. */
function sample(bytes: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `${i}\tcustomer ${i % 1000}\t${randomBytes(6).toString('hex')}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

describe('parallel gzip', () => {
  it.each([0, 1, 1000, BLOCK_SIZE, BLOCK_SIZE + 1, 5 * BLOCK_SIZE + 12345])(
    'a %i-byte input gunzips to itself with zlib and with gunzip(1)',
    async (size) => {
      const input = sample(size);
      const gz = await compress(input, 4);
      expect(gunzipSync(gz).equals(input)).toBe(true);
      expect(execFileSync('gunzip', ['-c'], { input: gz, maxBuffer: 64 << 20 }).equals(input)).toBe(true);
    },
  );

  it('keeps block order whatever order the threads finish in', async () => {
    // Blocks of very different compressibility finish at different times.
    const input = Buffer.concat([
      randomBytes(BLOCK_SIZE),
      Buffer.alloc(BLOCK_SIZE, 'a'),
      sample(3 * BLOCK_SIZE),
      randomBytes(999),
    ]);
    const gz = await compress(input, 3, 7777);
    expect(gunzipSync(gz).equals(input)).toBe(true);
  });

  it('writes one gzip member per MiB block, and a single member with one thread', async () => {
    const input = sample(3 * BLOCK_SIZE + 10);
    const members = (gz: Buffer): number => {
      let n = 0;
      // Count member headers: 1f 8b 08 at a member boundary is what gunzip looks for; count via re-compression
      // of each block is not possible, so count headers with the fixed OS byte zlib writes (0x03, Unix).
      for (let i = 0; i + 9 < gz.length; i++)
        if (gz[i] === 0x1f && gz[i + 1] === 0x8b && gz[i + 2] === 8 && gz[i + 9] === 3) n++;
      return n;
    };
    expect(members(await compress(input, 4))).toBeGreaterThanOrEqual(4);
    const single = await compress(input, 1);
    expect(members(single)).toBe(1);
    expect(gunzipSync(single).equals(input)).toBe(true);
  });

  it('is within 1% of the size `gzip -6` makes of the same input', async () => {
    const input = sample(6 * BLOCK_SIZE + 4321);
    const ours = await compress(input, 2);
    const theirs = execFileSync('gzip', ['-6', '-c'], { input, maxBuffer: 64 << 20 });
    expect(ours.length / theirs.length).toBeLessThan(1.01);
    expect(execFileSync('gunzip', ['-t'], { input: ours }).length).toBe(0);
  });

  it('costs under 1% of compression ratio against a single stream', async () => {
    const input = sample(4 * BLOCK_SIZE);
    const parallel = (await compress(input, 4)).length;
    const single = (await compress(input, 1)).length;
    expect(parallel / single).toBeLessThan(1.01);
  });
});
