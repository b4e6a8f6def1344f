/** monitor/cache.ts: a value is collected once per TTL however many ask, and a failure keeps the last value. */
import { describe, expect, it } from 'vitest';
import { Refreshing, within } from '../../src/monitor/cache.js';

describe('Refreshing', () => {
  it('collects once for concurrent readers, again only after the TTL', async () => {
    let now = 1_000_000;
    const calls: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const r = new Refreshing(
      async (at) => {
        calls.push(at.getTime());
        await gate;
        return calls.length;
      },
      15_000,
      () => new Date(now),
    );
    const readers = [r.get(), r.get(), r.get()];
    release();
    const snaps = await Promise.all(readers);
    expect(calls).toEqual([1_000_000]);
    expect(snaps.map((s) => s.value)).toEqual([1, 1, 1]);
    now += 14_999;
    expect((await r.get()).value).toBe(1);
    now += 1;
    expect((await r.get()).value).toBe(2);
    expect(calls).toEqual([1_000_000, 1_015_000]);
  });

  it('keeps the last value and says why when a refresh fails; a later success clears the error', async () => {
    let now = 0;
    let fail = false;
    let n = 0;
    const r = new Refreshing(
      () => (fail ? Promise.reject(new Error('bucket unreachable')) : Promise.resolve(++n)),
      10,
      () => new Date(now),
    );
    expect(await r.get()).toMatchObject({ value: 1, error: undefined });
    fail = true;
    now = 10;
    const failed = await r.get();
    expect(failed).toMatchObject({ value: 1, error: 'bucket unreachable' });
    expect(failed.collectedAt).toEqual(new Date(0));
    expect(failed.attemptedAt).toEqual(new Date(10));
    fail = false;
    now = 20;
    expect(await r.get()).toMatchObject({ value: 2, error: undefined });
  });
});

describe('within', () => {
  it('gives the value in time, and names what did not answer otherwise', async () => {
    expect(await within(Promise.resolve(7), 1000, 'x')).toBe(7);
    await expect(within(new Promise(() => undefined), 10, 'Redis')).rejects.toThrow(
      'Redis did not answer within 0.01 s',
    );
  });
});
