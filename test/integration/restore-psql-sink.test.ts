import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { RestoreFailedError } from '../../src/errors.js';
import { spawnChild } from '../../src/postgres/child.js';
import { PsqlSink } from '../../src/postgres/psql.js';
import { baseEnv } from '../helpers/env.js';

/** A stand-in for psql: a shell that reads some of its input, then exits with `code`. */
function fakePsql(script: string) {
  return spawnChild('sh', ['-c', script], { env: baseEnv(), stdin: 'pipe', stdout: 'ignore' });
}

function input(mib: number): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < mib * 16; i++) yield Buffer.alloc(64 * 1024, 0x61);
    })(),
  );
}

describe("PsqlSink notices psql's end", () => {
  it.each([
    ['exits non-zero while the pipeline waits for drain', 'head -c 100000 >/dev/null; exit 3', 32],
    ['exits zero before reading everything', 'head -c 100000 >/dev/null; exit 0', 32],
    ['is killed while the input is small enough to sit in buffers', 'kill -9 $$', 0.1],
    ['exits non-zero after reading everything', 'cat >/dev/null; exit 3', 4],
  ])('psql %s: the restore sees a failure and does not wait', async (_what, script, mib) => {
    const child = fakePsql(script);
    const failed = await pipeline(input(mib), new PsqlSink(child)).then(
      () => false,
      () => true,
    );
    const exit = await child.exited;
    // What the restore checks: the pipeline's error, else psql's exit status (either one may report it).
    expect(failed || exit.code !== 0).toBe(true);
  });

  it('ends cleanly when psql reads everything and exits zero', async () => {
    const child = fakePsql('cat >/dev/null');
    await pipeline(input(8), new PsqlSink(child));
    expect((await child.exited).code).toBe(0);
  });

  it('names the exit when psql ends first', async () => {
    const child = fakePsql('exit 2');
    await child.exited;
    await expect(pipeline(input(1), new PsqlSink(child))).rejects.toThrow(RestoreFailedError);
  });
});
