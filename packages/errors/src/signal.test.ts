import { describe, expect, it } from 'vitest';
import { checkSignal, ErrorCode, MmError } from './index.js';

describe('checkSignal', () => {
  it('passes undefined and AbortSignals through, aborted or not', () => {
    expect(checkSignal(undefined)).toBeUndefined();
    const c = new AbortController();
    expect(checkSignal(c.signal)).toBe(c.signal);
    c.abort(new Error('gone'));
    expect(checkSignal(c.signal)).toBe(c.signal);
    expect(() => checkSignal(c.signal)?.throwIfAborted()).toThrow('gone');
  });

  it('anything else is a TypeError, or MM_INVALID_ARGUMENT naming signal when asked', () => {
    for (const bad of [null, {}, 'x', { aborted: false }]) {
      expect(() => checkSignal(bad)).toThrow(TypeError);
      let e: unknown;
      try {
        checkSignal(bad, 'argument');
      } catch (x) {
        e = x;
      }
      expect(MmError.hasCode(e, ErrorCode.MM_INVALID_ARGUMENT)).toBe(true);
      expect((e as MmError).message).toContain('signal');
    }
  });
});
