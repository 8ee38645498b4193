import { describe, expect, it } from 'vitest';
import { hasPoisonedKeys, parseJsonBody } from './json-body.js';

const parse = (text: string) => parseJsonBody(Buffer.from(text, 'utf8'));
const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string; statusCode?: number }).code;
  }
  return 'no error';
};

describe('the JSON body parser', () => {
  it('gives what JSON.parse gives, UTF-8 included', () => {
    const text = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'héllo ✓' }] });
    expect(parse(text)).toEqual(JSON.parse(text));
    expect(parse('[1, 2, 3]')).toEqual([1, 2, 3]);
    expect(parse('"just a string"')).toBe('just a string');
  });

  it("refuses what fastify's default parser refuses, with its codes", () => {
    expect(codeOf(() => parse(''))).toBe('FST_ERR_CTP_EMPTY_JSON_BODY');
    expect(codeOf(() => parse('{"model": '))).toBe('FST_ERR_CTP_INVALID_JSON_BODY');
    expect(codeOf(() => parse('{"a": 1, "__proto__": {"admin": true}}'))).toBe(
      'FST_ERR_CTP_INVALID_JSON_BODY',
    );
    expect(codeOf(() => parse('{"a": [{"b": {"constructor": {"prototype": {"x": 1}}}}]}'))).toBe(
      'FST_ERR_CTP_INVALID_JSON_BODY',
    );
  });

  it('finds the poisoned keys at any depth, and only those', () => {
    expect(hasPoisonedKeys(JSON.parse('{"x": [1, {"y": {"__proto__": null}}]}'))).toBe(true);
    expect(hasPoisonedKeys(JSON.parse('[[[{"constructor": {"prototype": 1}}]]]'))).toBe(true);
    // a constructor key without a prototype under it, and prototype keys elsewhere, are data
    expect(hasPoisonedKeys(JSON.parse('{"constructor": "Object", "prototype": {}}'))).toBe(false);
    expect(hasPoisonedKeys(JSON.parse('{"constructor": {"name": "x"}}'))).toBe(false);
    expect(hasPoisonedKeys(JSON.parse('{"text": "__proto__ constructor prototype"}'))).toBe(false);
    expect(hasPoisonedKeys(null)).toBe(false);
    expect(hasPoisonedKeys(42)).toBe(false);
  });

  it('walks deep nesting without recursion', () => {
    const depth = 100_000;
    const deep = JSON.parse(`${'['.repeat(depth)}{"__proto__": 1}${']'.repeat(depth)}`);
    expect(hasPoisonedKeys(deep)).toBe(true);
  });
});
