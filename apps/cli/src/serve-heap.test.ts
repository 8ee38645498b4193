import { describe, expect, it } from 'vitest';
import { SERVE_HEAP_GROWING_PERCENT, serveHeapGrowingPercent } from './commands/serve.js';

describe("mm serve's V8 heap growing factor", () => {
  it('is 300 % unless the variable says otherwise; a bad value sets nothing', () => {
    expect(SERVE_HEAP_GROWING_PERCENT).toBe(300);
    expect(serveHeapGrowingPercent({}, [])).toBe(300);
    expect(serveHeapGrowingPercent({ MM_SERVE_HEAP_GROWING_PERCENT: '' }, [])).toBe(300);
    expect(serveHeapGrowingPercent({ MM_SERVE_HEAP_GROWING_PERCENT: '150' }, [])).toBe(150);
    expect(serveHeapGrowingPercent({ MM_SERVE_HEAP_GROWING_PERCENT: '0' }, [])).toBe(0);
    for (const bad of ['-5', '2.5', 'lots', '1001'])
      expect(serveHeapGrowingPercent({ MM_SERVE_HEAP_GROWING_PERCENT: bad }, [])).toBeUndefined();
  });

  it("leaves node's own setting alone", () => {
    expect(serveHeapGrowingPercent({}, ['--heap-growing-percent=50'])).toBeUndefined();
    expect(
      serveHeapGrowingPercent({ NODE_OPTIONS: '--heap_growing_percent=50' }, []),
    ).toBeUndefined();
    expect(serveHeapGrowingPercent({ NODE_OPTIONS: '--max-old-space-size=4096' }, [])).toBe(300);
  });
});
