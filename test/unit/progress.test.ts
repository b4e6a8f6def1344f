import { describe, expect, it } from 'vitest';
import { ProgressLine } from '../../src/cli/progress.js';
import type { Progress } from '../../src/jobs/context.js';

/** stderr as a pipe: what a log file or `2>&1 | tee` sees. */
function pipe(): { out: NodeJS.WriteStream; lines: () => string[] } {
  let text = '';
  const out = {
    isTTY: false,
    write: (s: string) => ((text += s), true),
  } as unknown as NodeJS.WriteStream;
  return { out, lines: () => text.split('\n').filter(Boolean) };
}

const dump = (bytesIn: number): Progress => ({
  phase: 'dump',
  bytesIn,
  bytesOut: bytesIn / 4,
  elapsedMs: 1500,
  rate: bytesIn / 1.5,
});

describe('progress on a pipe', () => {
  it('marks periodic lines as progress and prints a final one at the end', () => {
    const { out, lines } = pipe();
    const p = new ProgressLine(out);
    p.update(dump(1024 * 1024));
    p.update(dump(2 * 1024 * 1024)); // within 5 s of the first: not printed now
    p.done();
    expect(lines()).toEqual([
      'progress: dump: dumped 1.0 MiB, wrote 256.0 KiB, 682.7 KiB/s, 1.5 s',
      'progress: dump: dumped 2.0 MiB, wrote 512.0 KiB, 1.3 MiB/s, 1.5 s (final)',
    ]);
  });

  it('prints nothing when nothing was reported, and notes on lines of their own', () => {
    const { out, lines } = pipe();
    const p = new ProgressLine(out);
    p.note('backup job 3: attempt 2 of 3 after: connection refused');
    p.done();
    expect(lines()).toEqual(['backup job 3: attempt 2 of 3 after: connection refused']);
  });
});

describe('restore progress', () => {
  it('says building indexes / finishing once the whole archive is read, never 100%', () => {
    const p = (bytesIn: number): Progress => ({
      phase: 'restore',
      bytesIn,
      bytesOut: bytesIn * 5,
      totalBytes: 4096,
      elapsedMs: 2000,
      rate: bytesIn / 2,
    });
    expect(ProgressLine.describe(p(2048))).toBe(
      'restore: 50.0% read 2.0 KiB of 4.0 KiB, wrote 10.0 KiB, 1.0 KiB/s, 2.0 s',
    );
    const end = ProgressLine.describe(p(4096));
    expect(end).toBe('restore: all 4.0 KiB read; building indexes / finishing, wrote 20.0 KiB, 2.0 s');
    expect(end).not.toContain('100');
  });
});

describe('the bar on a terminal', () => {
  const base = { elapsedMs: 4000, bytesOut: 0 };
  it("measures a backup against the database's size, marked as a guess, and grows it when the SQL outgrows it", () => {
    const p: Progress = {
      ...base,
      phase: 'dump',
      bytesIn: 256 << 20,
      rate: 64 << 20,
      estimatedBytes: 1 << 30,
    };
    expect(ProgressLine.describeBar(p, '=====---------------', 12)).toBe(
      'dump [=====---------------] 25% 256.0 MiB of ~1.0 GiB, 64.0 MiB/s, ETA 12.0 s, 4.0 s',
    );
    const over = { ...p, bytesIn: 1.5 * (1 << 30) };
    expect(ProgressLine.describeBar(over, '====================', 'NULL')).toBe(
      'dump [====================] 100% 1.5 GiB of ~1.5 GiB, 64.0 MiB/s, ETA --, 4.0 s',
    );
  });

  it('measures a restore against the archive, and says when only psql is left', () => {
    const p: Progress = { ...base, phase: 'restore', bytesIn: 1 << 20, rate: 1 << 19, totalBytes: 4 << 20 };
    expect(ProgressLine.describeBar(p, 'x', 'INF')).toBe(
      'restore [x] 25% 1.0 MiB of 4.0 MiB, 512.0 KiB/s, ETA --, 4.0 s',
    );
    expect(ProgressLine.describeBar({ ...p, bytesIn: 4 << 20 }, 'x', 0)).toBe(
      'restore [x] all 4.0 MiB read; building indexes / finishing, wrote 0 B, 4.0 s',
    );
  });

  it('without a total (a job from an older worker): the numbers alone', () => {
    const p: Progress = { ...base, phase: 'dump', bytesIn: 1024, rate: 256 };
    expect(ProgressLine.describeBar(p, 'x', 1)).toBe(ProgressLine.describe(p));
  });
});
