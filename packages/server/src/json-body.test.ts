import { randomBytes } from 'node:crypto';
import { isBase64 } from '@mm/core';
import { describe, expect, it } from 'vitest';
import {
  decodeBase64,
  hasPoisonedKeys,
  LIFT_MIN_BASE64,
  LiftedDataUrl,
  parseJsonBody,
} from './json-body.js';
import { DEFAULT_LIMITS } from './limits.js';
import { parseChatRequest } from './openai-shapes.js';

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

describe('strict base64 from bytes', () => {
  const ascii = (s: string) => Buffer.from(s, 'latin1');
  const decode = (s: string) => decodeBase64(ascii(s), 0, s.length);

  it("gives Buffer.from's bytes for every length and padding", () => {
    for (let n = 1; n < 70; n++) {
      const bytes = randomBytes(n);
      const text = bytes.toString('base64');
      expect(decode(text)).toEqual(bytes);
    }
    const big = randomBytes(300_001);
    expect(decode(big.toString('base64'))?.equals(big)).toBe(true);
    // a range inside a larger buffer
    const text = `xx${big.toString('base64')}yy`;
    expect(decodeBase64(ascii(text), 2, text.length - 2)?.equals(big)).toBe(true);
  });

  it('refuses exactly what isBase64 refuses', () => {
    const cases = ['', 'A', 'AA', 'AAA', 'AAAA', 'AA==', 'AAA=', 'A===', '====', 'AA=A', '=AAA'];
    cases.push('AB*D', 'ABC-', 'AB_D', 'AB D', 'AB\nD', 'QUJD', 'QUJDRA==', 'QUJDRA=', 'QUJDR===');
    cases.push('QU=DRA==', 'QUJDRA==QUJD', 'é123');
    for (const text of cases) {
      const ours = decode(text);
      expect(ours !== undefined, text).toBe(text.length > 0 && isBase64(text));
      if (ours) expect(ours).toEqual(Buffer.from(text, 'base64'));
    }
    // one bad character anywhere in a long payload
    const good = randomBytes(3000).toString('base64');
    for (const at of [0, 1, 2, 3, 1500, good.length - 3, good.length - 1]) {
      const bad = `${good.slice(0, at)}!${good.slice(at + 1)}`;
      expect(decode(bad), String(at)).toBeUndefined();
    }
  });
});

describe('pictures lifted out of the body', () => {
  const picture = randomBytes(9000);
  const url = `data:image/png;base64,${picture.toString('base64')}`;
  const chat = (content: unknown) => ({
    model: 'm',
    messages: [{ role: 'user', content }],
  });
  const lifted = (v: unknown) => {
    expect(v).toBeInstanceOf(LiftedDataUrl);
    return v as LiftedDataUrl;
  };

  it("holds a chat picture's bytes, never its base64 text, and leaves the rest as JSON.parse does", () => {
    const body = chat([
      { type: 'text', text: 'What is in the picture? ✓' },
      { type: 'image_url', image_url: { url, detail: 'auto' } },
    ]);
    const value = parse(JSON.stringify(body)) as ReturnType<typeof chat>;
    const parts = value.messages[0]?.content as Array<{ image_url?: { url: unknown } }>;
    const got = lifted(parts[1]?.image_url?.url);
    expect(got.bytes).toEqual(picture);
    expect(got.mediaType).toBe('image/png');
    expect(got.base64Length).toBe(url.length - 'data:image/png;base64,'.length);
    (parts[1] as { image_url: { url: unknown } }).image_url.url = url;
    expect(value).toEqual(body);
  });

  it('lifts a string image_url, every picture, and only long valid payloads', () => {
    const small = `data:image/png;base64,${randomBytes(90).toString('base64')}`;
    const bad = `data:image/png;base64,${'A'.repeat(LIFT_MIN_BASE64)}*AAA`;
    const body = chat([
      { type: 'image_url', image_url: url },
      { type: 'image_url', image_url: { url } },
      { type: 'image_url', image_url: { url: small } },
      { type: 'image_url', image_url: { url: bad } },
    ]);
    const parts = (parse(JSON.stringify(body)) as ReturnType<typeof chat>).messages[0]
      ?.content as Array<{ image_url: unknown }>;
    expect(lifted(parts[0]?.image_url).bytes).toEqual(picture);
    expect(lifted((parts[1]?.image_url as { url?: unknown } | undefined)?.url).bytes).toEqual(
      picture,
    );
    expect(parts[2]?.image_url).toEqual({ url: small });
    expect(parts[3]?.image_url).toEqual({ url: bad });
  });

  it('puts a data URL back as text anywhere a picture is not taken', () => {
    const bodies = [
      chat(url),
      chat([{ type: 'text', text: url }]),
      chat([{ type: 'text', text: `before "${url}" after` }]),
      { model: 'm', url, image: { url }, list: [url, url] },
      // the URL as a key: parsed as sent
      { [url]: 1, messages: [{ image_url: { url } }] },
      // the same picture inside a text and as a picture
      chat([
        { type: 'text', text: `look: ${url}` },
        { type: 'image_url', image_url: { url } },
      ]),
    ];
    for (const body of bodies) {
      const value = parse(JSON.stringify(body)) as Record<string, unknown>;
      const walk = (v: unknown): unknown =>
        v instanceof LiftedDataUrl
          ? `data:${v.mediaType};base64,${v.bytes.toString('base64')}`
          : Array.isArray(v)
            ? v.map(walk)
            : typeof v === 'object' && v !== null
              ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]))
              : v;
      expect(walk(value)).toEqual(body);
    }
    // the key case fell back to the plain parse: its picture stayed text
    const keyed = parse(JSON.stringify({ [url]: 1, messages: [{ image_url: { url } }] })) as {
      messages: Array<{ image_url: { url: unknown } }>;
    };
    expect(keyed.messages[0]?.image_url.url).toBe(url);
  });

  it('leaves escaped text alone and keeps bad JSON bad', () => {
    // a JSON encoder that writes '/' as '\/' (PHP's default): not lifted, parsed as sent
    const escaped = JSON.stringify(chat([{ type: 'image_url', image_url: { url } }])).replaceAll(
      '/',
      '\\/',
    );
    const value = parse(escaped) as ReturnType<typeof chat>;
    const parts = value.messages[0]?.content as Array<{ image_url: { url: unknown } }>;
    expect(parts[0]?.image_url.url).toBe(url);
    const good = JSON.stringify(chat([{ type: 'image_url', image_url: { url } }]));
    for (const broken of [good.slice(0, -1), good.replace('"model"', 'model'), `${good},`]) {
      expect(codeOf(() => parse(broken))).toBe('FST_ERR_CTP_INVALID_JSON_BODY');
    }
    // the URL's quote closing a string: bare data: text is not JSON, lifted or not
    const bare = `{"a": "x"data:image/png;base64,${picture.toString('base64')}"}`;
    expect(codeOf(() => parse(bare))).toBe('FST_ERR_CTP_INVALID_JSON_BODY');
    const poisoned = good.replace('{', '{"__proto__": {"x": 1}, ');
    expect(codeOf(() => parse(poisoned))).toBe('FST_ERR_CTP_INVALID_JSON_BODY');
  });
});

describe('a chat request with lifted pictures', () => {
  const picture = randomBytes(6000);
  const url = `data:image/png;base64,${picture.toString('base64')}`;
  const request = (messages: unknown[], limits = {}) => {
    const body = parseJsonBody(Buffer.from(JSON.stringify({ model: 'm', messages })));
    try {
      return parseChatRequest(body, { ...DEFAULT_LIMITS, ...limits });
    } catch (e) {
      const { status, code, param } = e as { status: number; code: string; param: string };
      return { status, code, param };
    }
  };
  const user = (n: number) => ({
    role: 'user',
    content: Array.from({ length: n }, () => ({ type: 'image_url', image_url: { url } })),
  });

  it('gives the bytes as a picture, checked as a string URL is checked', () => {
    const ok = request([user(2)]);
    expect('messages' in ok && ok.messages[0]?.content).toEqual([
      { type: 'image', image: picture },
      { type: 'image', image: picture },
    ]);
    expect(request([user(9)])).toEqual({
      status: 400,
      code: 'too_many_images',
      param: 'messages[0].content[8]',
    });
    expect(request([user(1)], { maxImageBytes: 5000 })).toEqual({
      status: 400,
      code: 'image_too_large',
      param: 'messages[0].content[0].image_url.url',
    });
    expect(request([{ ...user(1), role: 'assistant' }])).toEqual({
      status: 400,
      code: 'invalid_value',
      param: 'messages[0].content[0]',
    });
  });
});
