import { describe, expect, it } from 'vitest';
import { heartbeatFresh, HEARTBEAT_MISSES, type AttemptRecord } from '../../src/catalog/markers.js';

describe('heartbeatFresh: whether a "running" marker is still renewed (when Redis cannot tell)', () => {
  const started = '2026-11-26T02:00:00.000Z';
  const at = (ms: number): Date => new Date(Date.parse(started) + ms);
  const running: AttemptRecord = { status: 'running', id: '1a2b3c4d', at: started, renewEveryMs: 30_000 };

  it('counts from the latest beat, or from the start before the first one', () => {
    expect(heartbeatFresh(running, at(HEARTBEAT_MISSES * 30_000))).toBe(true);
    expect(heartbeatFresh(running, at(HEARTBEAT_MISSES * 30_000 + 1))).toBe(false);
    const renewed = { ...running, renewedAt: at(600_000).toISOString() };
    expect(heartbeatFresh(renewed, at(600_000 + 89_000))).toBe(true);
    expect(heartbeatFresh(renewed, at(600_000 + 91_000))).toBe(false);
  });

  it('cannot tell for a marker written without a heartbeat (older pgshelf)', () => {
    expect(
      heartbeatFresh({ status: 'running', id: '1a2b3c4d', at: started }, at(86_400_000)),
    ).toBeUndefined();
  });
});
