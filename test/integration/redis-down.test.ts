/**
 * Redis unreachable: a worker and a scheduler say so in one plain line (no raw ioredis dumps, no flood, no
 * password), say when it is back, and still end on SIGTERM.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { Env } from '../../src/config/index.js';
import { waitFor, type CliResult, type RunningCli } from '../helpers/cli.js';
import { daemon, useCleanup, workerFixture } from '../helpers/lifecycle.js';
import { closedPort } from '../helpers/silent.js';

const defer = useCleanup();

/** Lines about Redis failing, whatever their source (our logs, BullMQ, ioredis). */
function redisErrorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => /ECONNREFUSED|Unhandled error event|cannot reach Redis/.test(l));
}

async function ended(cli: RunningCli, what: string): Promise<CliResult> {
  let result: CliResult | undefined;
  void cli.done.then((r) => (result = r));
  return waitFor(what, () => result, 90_000);
}

/** A private, throwaway redis-server on `port`, stopped after the test. */
function startRedis(port: number): void {
  const server = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  const exited = new Promise((resolve) => server.once('exit', resolve));
  defer(async () => {
    server.kill('SIGTERM');
    await exited;
  });
}

describe.each(['worker', 'scheduler'] as const)('%s with Redis unreachable', (command) => {
  it('logs one plain "cannot reach Redis" line without the password, then "Redis is back"; ends on SIGTERM', async () => {
    const port = await closedPort();
    const { env } = await workerFixture(defer, { rows: 10 });
    const settings: Env = {
      ...env,
      REDIS_URL: `redis://:hunter2secret@127.0.0.1:${port}`,
      PGSHELF_SHUTDOWN_GRACE: '2',
      PGSHELF_SCHEDULE: '0 2 * * *',
    };
    const d = daemon(command, settings, defer);
    await waitFor('the Redis error line', () => d.stderr().includes('cannot reach Redis at'));
    // A while of reconnect attempts: they must not each print a line.
    await new Promise((r) => setTimeout(r, 5000));
    const during = d.stderr();
    expect(during).not.toContain('Unhandled error event');
    expect(during).not.toContain('hunter2secret');
    expect(during).toContain(`cannot reach Redis at redis://:***@127.0.0.1:${port} (`);
    expect(redisErrorLines(during).length).toBeLessThan(5);

    startRedis(port);
    await waitFor('"Redis is back"', () => d.stderr().includes('Redis is back'), 30_000);

    d.child.kill('SIGTERM');
    const res = await ended(d, `the ${command} to exit after SIGTERM`);
    expect(res.code, res.stderr).toBe(0);
  });

  it('ends on SIGTERM while Redis stays unreachable', async () => {
    const port = await closedPort();
    const { env } = await workerFixture(defer, { rows: 10 });
    const d = daemon(
      command,
      {
        ...env,
        REDIS_URL: `redis://127.0.0.1:${port}`,
        PGSHELF_SHUTDOWN_GRACE: '2',
        PGSHELF_SCHEDULE: '* * * * * *',
      },
      defer,
    );
    // Up and retrying: its signal handlers are installed before it first reaches for Redis (a fixed wait was
    // too short on a loaded machine: SIGTERM came before the handler, and killed the process outright).
    await waitFor('the Redis error line', () => d.stderr().includes('cannot reach Redis at'), 60_000);
    d.child.kill('SIGTERM');
    const res = await ended(d, `the ${command} to exit after SIGTERM`);
    expect(res.signal).toBe(null);
    // The scheduler drops its connections after the grace and stops by itself, not by the forced backstop.
    if (command === 'scheduler') {
      expect(res.code, res.stderr).toBe(0);
      expect(res.stderr).toContain('scheduler stopped');
    } else expect([0, 130]).toContain(res.code);
    expect(res.stderr).toMatch(/shutting down/);
  });
});
