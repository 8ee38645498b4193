import { randomBytes } from 'node:crypto';
import { errorCodes, type FastifyInstance, type FastifyRequest } from 'fastify';
import { nextTurn } from './turns.js';

/**
 * Whether a parsed JSON value holds an own `__proto__` key, or a `constructor` key whose value
 * has a `prototype` key, at any depth: the keys that poison an object that code later merges
 * (fastify's default parser refuses them; so does this one). A walk of the parsed value: its
 * nodes, not the text, so a picture's 400 KB of base64 costs nothing here.
 */
export function hasPoisonedKeys(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null) continue;
    if (Array.isArray(node)) {
      for (const item of node) stack.push(item);
      continue;
    }
    if (Object.hasOwn(node, '__proto__')) return true;
    const ctor = (node as { constructor?: unknown }).constructor;
    if (
      Object.hasOwn(node, 'constructor') &&
      typeof ctor === 'object' &&
      ctor !== null &&
      Object.hasOwn(ctor, 'prototype')
    ) {
      return true;
    }
    for (const key in node) stack.push((node as Record<string, unknown>)[key]);
  }
  return false;
}

/**
 * A picture's base64 `data:` URL taken out of a JSON body before the parse: its media type and its
 * decoded bytes (strict base64: the standard alphabet, padded). `parseJsonBody` puts one where a
 * chat request's `image_url.url` (or a string `image_url`) held such a URL.
 */
export class LiftedDataUrl {
  constructor(
    /** The media type as sent (`image/png`); may be empty. */
    readonly mediaType: string,
    /** The decoded bytes: outside the JS heap. */
    readonly bytes: Buffer,
    /** How many base64 characters the URL's payload had. */
    readonly base64Length: number,
  ) {}
}

/** The value of each base64 character, -1 for any other byte ('=' included). */
const BASE64_VALUE = (() => {
  const t = new Int8Array(256).fill(-1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < alphabet.length; i++) t[alphabet.charCodeAt(i)] = i;
  return t;
})();

/**
 * `src[start, end)` decoded as strict base64 (what `isBase64` accepts: the standard alphabet, a
 * length that is a multiple of 4, '=' only as the last one or two characters), or undefined. The
 * bytes equal `Buffer.from(text, 'base64')`'s; no string is made.
 */
export function decodeBase64(src: Uint8Array, start: number, end: number): Buffer | undefined {
  const n = end - start;
  if (n <= 0 || n % 4 !== 0) return undefined;
  const pad = src[end - 1] === 61 ? (src[end - 2] === 61 ? 2 : 1) : 0;
  const out = Buffer.allocUnsafe((n / 4) * 3 - pad);
  const full = pad > 0 ? end - 4 : end;
  let o = 0;
  for (let i = start; i < full; i += 4) {
    const a = BASE64_VALUE[src[i] as number] as number;
    const b = BASE64_VALUE[src[i + 1] as number] as number;
    const c = BASE64_VALUE[src[i + 2] as number] as number;
    const d = BASE64_VALUE[src[i + 3] as number] as number;
    if ((a | b | c | d) < 0) return undefined;
    const v = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = v >>> 16;
    out[o++] = (v >>> 8) & 255;
    out[o++] = v & 255;
  }
  if (pad > 0) {
    const a = BASE64_VALUE[src[full] as number] as number;
    const b = BASE64_VALUE[src[full + 1] as number] as number;
    const c = pad === 1 ? (BASE64_VALUE[src[full + 2] as number] as number) : 0;
    if ((a | b | c) < 0) return undefined;
    const v = (a << 18) | (b << 12) | (c << 6);
    out[o++] = v >>> 16;
    if (pad === 1) out[o++] = (v >>> 8) & 255;
  }
  return out;
}

/** Payloads shorter than this stay in the text: lifting them saves nothing worth the walk. */
export const LIFT_MIN_BASE64 = 4096;

const BASE64_MARK = Buffer.from(';base64,', 'latin1');
const DATA_PREFIX = Buffer.from('"data:', 'latin1');

interface Lift {
  /** The payload's `[start, end)` in the body. */
  start: number;
  end: number;
  mediaType: string;
  bytes: Buffer;
}

/**
 * The body's base64 `data:` URL payloads of at least `LIFT_MIN_BASE64` characters that can be
 * lifted exactly: inside a JSON string that starts `"data:<type>;base64,` (a type of printable
 * ASCII without `"`, `\`, `;` or `,`), made only of base64 characters up to the string's closing
 * quote (so no escapes: the text is the value), and valid strict base64.
 */
function findLifts(bytes: Buffer): Lift[] {
  const lifts: Lift[] = [];
  let from = 0;
  for (;;) {
    const mark = bytes.indexOf(BASE64_MARK, from);
    if (mark < 0) break;
    const start = mark + BASE64_MARK.length;
    const end = bytes.indexOf(0x22, start);
    if (end < 0) break;
    from = end;
    if (end - start < LIFT_MIN_BASE64) continue;
    const quote = bytes.lastIndexOf(0x22, mark);
    if (quote < 0 || mark - quote > 256) continue;
    if (bytes.compare(DATA_PREFIX, 0, DATA_PREFIX.length, quote, quote + DATA_PREFIX.length) !== 0)
      continue;
    let typeOk = true;
    for (let i = quote + DATA_PREFIX.length; i < mark; i++) {
      const c = bytes[i] as number;
      if (c < 0x20 || c > 0x7e || c === 0x5c || c === 0x3b || c === 0x2c) typeOk = false;
    }
    if (!typeOk) continue;
    const decoded = decodeBase64(bytes, start, end);
    if (!decoded) continue;
    const mediaType = bytes.toString('latin1', quote + DATA_PREFIX.length, mark);
    lifts.push({ start, end, mediaType, bytes: decoded });
  }
  return lifts;
}

/** A marker that the body does not contain, followed by a lift's index where its payload was. */
function markerFor(bytes: Buffer): string {
  for (;;) {
    const marker = `#mm-lifted-${randomBytes(6).toString('hex')}-`;
    if (bytes.indexOf(marker, 0, 'latin1') < 0) return marker;
  }
}

/**
 * Puts each lift back: a lifted object where a chat request takes a picture URL (`image_url.url`,
 * or `image_url` as a string) and the string is exactly the data URL; the original text anywhere
 * else. False when a marker is where it cannot be put back (a key), or not found once.
 */
function restoreLifts(root: unknown, lifts: Lift[], marker: string, bytes: Buffer): boolean {
  const markerRe = new RegExp(`${marker}(\\d+)`, 'g');
  const seen = new Uint8Array(lifts.length);
  let ok = true;
  const original = (s: string) =>
    s.replace(markerRe, (_m, k: string) => {
      const i = Number(k);
      const lift = lifts[i];
      if (!lift || seen[i] !== 0) {
        ok = false;
        return '';
      }
      seen[i] = 1;
      return bytes.toString('latin1', lift.start, lift.end);
    });
  const resolve = (s: string, isPictureUrl: boolean): unknown => {
    if (!s.includes(marker)) return s;
    if (isPictureUrl) {
      const m = /^data:([^;,]*);base64,(.*)$/.exec(s);
      const k = m ? Number(m[2]?.slice(marker.length)) : Number.NaN;
      const lift = lifts[k];
      if (m && lift && m[2] === `${marker}${k}` && m[1] === lift.mediaType && seen[k] === 0) {
        seen[k] = 1;
        return new LiftedDataUrl(lift.mediaType, lift.bytes, lift.end - lift.start);
      }
    }
    return original(s);
  };
  const stack: Array<{ node: unknown; key: string | undefined }> = [{ node: root, key: undefined }];
  while (stack.length > 0 && ok) {
    const { node, key: parentKey } = stack.pop() as { node: unknown; key: string | undefined };
    if (typeof node !== 'object' || node === null) continue;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const v = node[i];
        if (typeof v === 'string') node[i] = resolve(v, false);
        else stack.push({ node: v, key: undefined });
      }
      continue;
    }
    const record = node as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (key.includes(marker)) return false;
      const v = record[key];
      if (typeof v === 'string') {
        const isPictureUrl = key === 'image_url' || (key === 'url' && parentKey === 'image_url');
        record[key] = resolve(v, isPictureUrl);
      } else {
        stack.push({ node: v, key });
      }
    }
  }
  return ok && seen.every((n) => n === 1);
}

/**
 * A JSON body as fastify's default parser gives it (the same errors: FST_ERR_CTP_EMPTY_JSON_BODY,
 * FST_ERR_CTP_INVALID_JSON_BODY for bad JSON and for poisoned keys), from the body's bytes.
 *
 * Except for pictures: a base64 `data:` URL of at least `LIFT_MIN_BASE64` characters at a chat
 * request's `image_url.url` comes back as a `LiftedDataUrl` holding the decoded bytes. Its base64
 * never becomes a JS string: a CLIP-L picture's 400 KB would be two strings in V8's large-object
 * space (the body's text and the parsed value), which counts as old generation, and on a server
 * whose live heap is 10 MB every such picture brought on a full collection (3-15 ms pauses on a
 * loaded 2-core machine, the largest stalls of the event loop at the realistic shape). The rest
 * of the body is parsed as before, and a lifted payload anywhere else is put back as it was.
 */
export function parseJsonBody(bytes: Buffer): unknown {
  return parseBody(bytes, true);
}

function parseBody(bytes: Buffer, lift: boolean): unknown {
  if (bytes.length === 0) throw new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY();
  const lifts = lift ? findLifts(bytes) : [];
  let value: unknown;
  let marker = '';
  try {
    if (lifts.length === 0) {
      value = JSON.parse(bytes.toString('utf8'));
    } else {
      marker = markerFor(bytes);
      const parts: string[] = [];
      let at = 0;
      lifts.forEach((lift, k) => {
        parts.push(bytes.toString('utf8', at, lift.start), `${marker}${k}`);
        at = lift.end;
      });
      parts.push(bytes.toString('utf8', at));
      value = JSON.parse(parts.join(''));
    }
  } catch {
    throw new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY();
  }
  if (hasPoisonedKeys(value)) throw new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY();
  if (lifts.length > 0 && !restoreLifts(value, lifts, marker, bytes)) {
    // a marker in a key: parse the text as sent (a lift changes nothing a parse can see)
    return parseBody(bytes, false);
  }
  return value;
}

/**
 * Replaces fastify's `application/json` parser with one that takes a body in on its own turn of
 * the event loop (`nextTurn`).
 *
 * fastify parses a body as soon as its last byte arrives: eight requests whose bodies come in the
 * same poll of the sockets were turned into strings and parsed back to back, each picture's
 * data URL scanned twice more by secure-json-parse's `__proto__` and `constructor` patterns
 * (0.3 ms for both in a 417 KB body on an idle core, more under load). With the rest of the
 * intake, the event loop's largest stall under 8 clients at the realistic shape on 2 cores was
 * 18-23 ms. Here the poll only gathers the bytes (fastify's Buffer.concat); the string, the
 * parse and a walk of the parsed value for the poisoned keys run one request per turn, and the
 * chat route takes one more turn for its pictures' base64 check and decode, with timers and
 * socket writes in between.
 */
export function useTurnTakingJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'buffer' },
    async (_request: FastifyRequest, body: Buffer) => {
      await nextTurn();
      return parseJsonBody(body);
    },
  );
}
