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
 * A JSON body as fastify's default parser gives it (the same errors: FST_ERR_CTP_EMPTY_JSON_BODY,
 * FST_ERR_CTP_INVALID_JSON_BODY for bad JSON and for poisoned keys), from the body's bytes.
 */
export function parseJsonBody(bytes: Buffer): unknown {
  if (bytes.length === 0) throw new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY();
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY();
  }
  if (hasPoisonedKeys(value)) throw new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY();
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
