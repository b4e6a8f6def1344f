/** The courier against local receivers: what is retried, what is given up, and what a shutdown does. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Courier } from '../../src/alerts/courier.js';
import { createLogger } from '../../src/logger.js';
import { waitFor } from '../helpers/cli.js';
import { useCleanup } from '../helpers/lifecycle.js';
import { startReceiver } from '../helpers/receiver.js';

const defer = useCleanup();

function recordingLogger() {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  const lines = () =>
    text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger: createLogger('info', out), lines };
}

const parcel = (url: string, n: number) => ({
  url,
  method: 'POST' as const,
  body: `{"n":${n}}`,
  headers: { 'Content-Type': 'application/json' },
  what: 'backup.failed',
});

describe('alert delivery', () => {
  it('a 404 is not retried; a 503 is, with backoff, until the tries run out; logs hide the URL path', async () => {
    const missing = await startReceiver(defer, 404);
    const busy = await startReceiver(defer, 503);
    const { logger, lines } = recordingLogger();
    const courier = new Courier({ logger, tries: 3, backoffMs: 20 });
    courier.send(parcel(`${missing.url}/services/T0/B0/SECRET`, 1));
    courier.send(parcel(`${busy.url}/hook/SECRET`, 2));
    await waitFor('both given up', () => courier.failed === 2);
    expect(missing.received).toHaveLength(1);
    expect(busy.received.map((r) => r.body)).toEqual(['{"n":2}', '{"n":2}', '{"n":2}']);
    const warnings = lines().filter((l) => l.level === 40);
    expect(warnings.map((l) => l.msg)).toEqual(
      expect.arrayContaining([
        `alert not delivered to ${missing.url}/*** (backup.failed): the receiver answered HTTP 404; last error: HTTP 404`,
        `alert not delivered to ${busy.url}/*** (backup.failed): 3 tries failed; last error: HTTP 503`,
      ]),
    );
    expect(JSON.stringify(lines())).not.toContain('SECRET');
    expect(courier.idle).toBe(true);
  });

  it('a full queue drops its oldest; a shutdown gives the rest a bounded time, then cuts them off', async () => {
    const silent = await startReceiver(defer, 'hang');
    const { logger, lines } = recordingLogger();
    const courier = new Courier({ logger, concurrency: 1, maxQueued: 2, timeoutMs: 60_000 });
    for (let n = 1; n <= 4; n++) courier.send(parcel(`${silent.url}/hook`, n));
    await waitFor('the first request', () => silent.received.length === 1);
    // 1 in flight, 2 and 3 queued, 4 pushed 2 out.
    expect(courier.failed).toBe(1);
    expect(lines().at(-1)?.msg).toMatch(/more than 2 alerts waiting: dropped the oldest/);
    await courier.drain(200);
    // The one in flight and the two queued are given up; nothing else reached the receiver.
    expect(courier.failed).toBe(4);
    expect(silent.received.map((r) => r.body)).toEqual(['{"n":1}']);
    courier.send(parcel(`${silent.url}/hook`, 5));
    expect(courier.failed).toBe(5);
    expect(lines().at(-1)?.msg).toMatch(/the process is shutting down/);
  });
});
