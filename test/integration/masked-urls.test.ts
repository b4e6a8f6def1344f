/** URLs are printed with their password masked: in Redis errors, settings errors, whatever the command. */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { runCli, waitFor } from '../helpers/cli.js';
import { pgEnv } from '../helpers/env.js';
import { daemon, useCleanup } from '../helpers/lifecycle.js';

const defer = useCleanup();

const SECRET = 's3cret';

/** A port nothing listens on (bound once, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('URLs in messages', () => {
  it('"cannot reach Redis" names the server without its password', async () => {
    const port = await closedPort();
    const res = await runCli(['backup'], {
      ...pgEnv('postgres'),
      REDIS_URL: `redis://:${SECRET}@127.0.0.1:${port}`,
    });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain(`127.0.0.1:${port}`);
    expect(res.stderr).toContain('***');
    expect(res.stdout + res.stderr).not.toContain(SECRET);
  });

  it('a worker that cannot reach Redis logs the failure without the password', async () => {
    const port = await closedPort();
    const worker = daemon(
      'worker',
      { ...pgEnv('postgres'), REDIS_URL: `redis://:${SECRET}@127.0.0.1:${port}` },
      defer,
    );
    await waitFor('the worker to log a Redis error', () => worker.stderr().includes(`127.0.0.1:${port}`));
    expect(worker.stdout() + worker.stderr()).not.toContain(SECRET);
  });

  it.each([
    ['REDIS_URL', `redis//default:${SECRET}@127.0.0.1:6379`],
    ['REDIS_URL', `http://default:${SECRET}@127.0.0.1:6379`],
    ['S3_ENDPOINT', `minio//admin:${SECRET}@127.0.0.1:9000`],
  ])('an invalid %s is quoted with its password masked', async (name, value) => {
    const res = await runCli(['list', '--json'], { ...pgEnv('postgres'), [name]: value });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(name);
    expect(res.stderr).toContain('***');
    expect(res.stdout + res.stderr).not.toContain(SECRET);
  });
});
