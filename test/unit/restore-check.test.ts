import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { ChecksumMismatchError } from '../../src/errors.js';
import { SizeLimit } from '../../src/archive/check.js';

describe('SizeLimit', () => {
  it('errors at the first chunk past the limit and reads nothing after it', async () => {
    let pulled = 0;
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 100; i++) {
          pulled++;
          yield Buffer.alloc(1000);
        }
      })(),
    );
    let passed = 0;
    const run = pipeline(
      source,
      new SizeLimit(2500, 'archive.sql.gz'),
      new Writable({ write: (c: Buffer, _e, cb) => ((passed += c.length), cb()) }),
    );
    await expect(run).rejects.toThrow(ChecksumMismatchError);
    await expect(run).rejects.toThrow(/archive\.sql\.gz is longer than its manifest says \(2500 bytes\)/);
    expect(passed).toBe(2000);
    expect(pulled).toBeLessThan(10);
  });

  it('passes exactly the limit', async () => {
    const out: Buffer[] = [];
    await pipeline(
      Readable.from([Buffer.alloc(1500), Buffer.alloc(1000)]),
      new SizeLimit(2500, 'x'),
      new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }),
    );
    expect(Buffer.concat(out).length).toBe(2500);
  });
});
