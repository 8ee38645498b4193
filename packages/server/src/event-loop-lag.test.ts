import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventLoopLagMonitor } from './event-loop-lag.js';
import { startTiny } from './helpers.test-util.js';
import type { MmServer } from './server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lagAt = async (url: string) => {
  // biome-ignore lint/suspicious/noExplicitAny: a test reads what it asserts on
  const body: any = await (await fetch(url)).json();
  return body.event_loop;
};

describe('event-loop lag', () => {
  it('measures a blocked loop, and a reset starts a new window', async () => {
    const m = new EventLoopLagMonitor();
    try {
      await sleep(20);
      const t = Date.now();
      while (Date.now() - t < 40) {
        // the loop is blocked for 40 ms: the next tick comes at least ~39 ms late
      }
      await sleep(20);
      const a = m.take(true);
      expect(a.resolution_ms).toBe(1);
      expect(a.samples).toBeGreaterThan(0);
      expect(a.max_ms).toBeGreaterThanOrEqual(35);
      expect(a.p99_ms).toBeLessThanOrEqual(a.max_ms);
      const b = m.take();
      expect(b.since).toBeGreaterThanOrEqual(a.since);
      expect(b.samples).toBeLessThan(a.samples);
      expect(b.max_ms).toBeLessThan(a.max_ms);
    } finally {
      m.dispose();
    }
  });

  describe('GET /health', () => {
    let server: MmServer;
    beforeAll(async () => {
      server = await startTiny();
    });
    afterAll(() => server?.close());

    it('reports event_loop { mean_ms, p99_ms, max_ms } and resets it with ?reset_lag=1', async () => {
      const first = await lagAt(`${server.url}/health?reset_lag=1`);
      expect(first).toMatchObject({ resolution_ms: 1 });
      for (const k of ['mean_ms', 'p99_ms', 'max_ms', 'samples', 'since'])
        expect(typeof first[k]).toBe('number');
      await sleep(50);
      const second = await lagAt(`${server.url}/health`);
      expect(second.since).toBeGreaterThanOrEqual(first.since);
      expect(second.samples).toBeGreaterThan(0);
      const third = await lagAt(`${server.url}/health`);
      expect(third.since).toBe(second.since); // no reset without ?reset_lag=1
    });
  });
});
