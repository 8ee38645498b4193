import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM script without types
import { loadCodes, renderCpp, renderTs, targets } from '../scripts/generate.mjs';
import { ErrorCode, ErrorCodeId, fromNative, MmDisposedError, MmError } from './index.js';

describe('error codes', () => {
  it('TS constants and the C++ enum are generated from the current codes.json', () => {
    const codes = loadCodes();
    expect(readFileSync(targets.ts, 'utf8')).toBe(renderTs(codes));
    expect(readFileSync(targets.cpp, 'utf8')).toBe(renderCpp(codes));
  });

  it('C++ enum values equal the TS ids', () => {
    const cpp = readFileSync(targets.cpp, 'utf8');
    for (const [code, id] of Object.entries(ErrorCodeId)) {
      expect(cpp).toContain(`    ${code.slice(3).toLowerCase()} = ${id},`);
      expect(cpp).toContain(`return "${code}";`);
    }
    expect(Object.keys(ErrorCode).length).toBe(loadCodes().length);
  });
});

describe('MmError', () => {
  it('carries code, message, cause and details', () => {
    const cause = new Error('inner');
    const e = new MmError(ErrorCode.MM_GGUF_INVALID, 'bad header', {
      cause,
      details: { offset: 4 },
    });
    expect(e.code).toBe('MM_GGUF_INVALID');
    expect(e.message).toBe('bad header');
    expect(e.cause).toBe(cause);
    expect(e.details).toEqual({ offset: 4 });
    expect(MmError.isInstance(e)).toBe(true);
    expect(MmError.hasCode(e, ErrorCode.MM_GGUF_INVALID)).toBe(true);
    expect(MmError.hasCode(e, ErrorCode.MM_IO)).toBe(false);
    expect(MmError.isInstance(new Error('x'))).toBe(false);
  });

  it('maps native errors by code property, unknown ones to MM_INTERNAL', () => {
    const native = Object.assign(new Error('boom'), { code: 'MM_OUT_OF_CONTEXT' });
    const mapped = fromNative(native);
    expect(mapped.code).toBe('MM_OUT_OF_CONTEXT');
    expect(mapped.message).toBe('boom');
    expect(fromNative(Object.assign(new Error('x'), { code: 'ENOENT' })).code).toBe('MM_INTERNAL');
    expect(fromNative('str').code).toBe('MM_INTERNAL');
  });

  it('subclasses keep the base marker', () => {
    const e = new MmDisposedError('Backbone');
    expect(e.code).toBe('MM_DISPOSED');
    expect(MmError.isInstance(e)).toBe(true);
    expect(e.message).toContain('Backbone');
  });
});
