import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { DigestStream } from '../../src/archive/digest.js';

describe('DigestStream', () => {
  it('passes bytes through and reports their SHA-256 and count', async () => {
    const data = Buffer.from('some archive bytes'.repeat(1000));
    const digest = new DigestStream();
    const out: Buffer[] = [];
    await pipeline(
      Readable.from([data.subarray(0, 100), data.subarray(100)]),
      digest,
      new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }),
    );
    expect(Buffer.concat(out).equals(data)).toBe(true);
    expect(digest.bytes).toBe(data.length);
    expect(digest.sha256).toBe(createHash('sha256').update(data).digest('hex'));
  });
});
