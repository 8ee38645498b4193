import { readFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isGgufError } from './errors.js';
import { readGguf, readGgufFromBuffer } from './reader.js';
import { GGML_TYPES, type GgmlTypeName, type GgufMetadata, gv } from './types.js';
import { ggufToBuffer } from './writer.js';

/**
 * Mutation fuzzing of the reader: every case must end in a parse or a GGUF-coded MmError,
 * quickly. Deterministic (seeded); prints the totals.
 */

const CASES = 12_000;
const SEED = 0x6d6d_6767;
const MAX_CASE_MS = 1000;

// The tiny-shapes model bundled in the repository (@mm/testing depends on this package, so the
// path is spelled out here).
const tinyShapes = join(import.meta.dirname, '../../../apps/demo/models/tiny-shapes');
const realFiles = ['tiny-shapes-llm.gguf', 'mmproj-tiny-shapes.gguf'].map((f) =>
  join(tinyShapes, f),
);

/** xoshiro128** seeded with splitmix32. */
function prng(seed: number): {
  u32(): number;
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
} {
  let x = seed >>> 0;
  const split = () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  const s = [split(), split(), split(), split()];
  const u32 = () => {
    const r = Math.imul(((Math.imul(s[1]!, 5) << 7) | (Math.imul(s[1]!, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = ((s[3]! << 11) | (s[3]! >>> 21)) >>> 0;
    return r;
  };
  const int = (n: number) => Math.floor((u32() / 2 ** 32) * n);
  return { u32, int, pick: (xs) => xs[int(xs.length)]! };
}

/** A small file with every value type, nested arrays and several tensor types. */
function syntheticModel(): Uint8Array {
  const md: GgufMetadata = new Map([
    ['general.architecture', gv.string('llama')],
    ['general.alignment', gv.uint32(32)],
    ['general.name', gv.string('fuzz ▁model')],
    ['llama.block_count', gv.uint32(2)],
    ['u8', gv.uint8(200)],
    ['i8', gv.int8(-3)],
    ['u16', gv.uint16(4000)],
    ['i16', gv.int16(-4000)],
    ['i32', gv.int32(-70000)],
    ['f32', gv.float32(0.5)],
    ['f64', gv.float64(1e300)],
    ['u64', gv.uint64(1n << 40n)],
    ['i64', gv.int64(-1n)],
    ['b', gv.bool(true)],
    ['tokens', gv.array('string', ['<unk>', '<s>', '</s>', '▁a', 'b', 'héllo', ''])],
    ['scores', gv.array('float32', new Float32Array([0, -1, -2, -3, -4, -5, -6]))],
    ['types', gv.array('int32', new Int32Array([2, 3, 3, 1, 1, 1, 1]))],
    ['u64s', gv.array('uint64', new BigUint64Array([1n, 2n]))],
    ['bools', gv.array('bool', [true, false])],
    [
      'nested',
      gv.array('array', [
        { type: 'array', itemType: 'string', value: ['x', 'yz'] },
        {
          type: 'array',
          itemType: 'array',
          value: [{ type: 'array', itemType: 'uint8', value: new Uint8Array([1, 2]) }],
        },
      ]),
    ],
  ]);
  const raw = (type: GgmlTypeName, blocks: number) =>
    new Uint8Array(GGML_TYPES[type].typeSize * blocks).fill(0x11);
  return ggufToBuffer({
    metadata: md,
    tensors: [
      {
        name: 'token_embd.weight',
        type: 'F32',
        shape: [4, 7],
        data: new Float32Array(28).fill(0.25),
      },
      {
        name: 'blk.0.attn_q.weight',
        type: 'F16',
        shape: [4, 4],
        data: new Float32Array(16).fill(1),
      },
      { name: 'blk.0.attn_k.weight', type: 'Q4_0', shape: [32, 2], data: raw('Q4_0', 2) },
      { name: 'blk.0.attn_v.weight', type: 'Q8_0', shape: [32], data: raw('Q8_0', 1) },
      { name: 'blk.0.ffn_up.weight', type: 'Q4_K', shape: [256], data: raw('Q4_K', 1) },
      { name: 'blk.0.ffn_down.weight', type: 'MXFP4', shape: [32, 1, 2], data: raw('MXFP4', 2) },
      {
        name: 'blk.0.ffn_gate.weight',
        type: 'BF16',
        shape: [2, 2, 2, 2],
        data: new Float32Array(16),
      },
      { name: 'pos', type: 'I32', shape: [3], data: new Int32Array([1, 2, 3]) },
    ],
  });
}

/** Positions of the u64 (counts, lengths, offsets, dims) and u32 (types, n_dims) fields. */
function fieldPositions(buf: Uint8Array): { u64: number[]; u32: number[]; metaEnd: number } {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const u64: number[] = [8, 16];
  const u32: number[] = [4];
  let p = 24;
  const fits = (n: number) => p + n <= buf.length;
  const readLen = (): number | undefined => {
    if (!fits(8)) return undefined;
    u64.push(p);
    const n = Number(dv.getBigUint64(p, true));
    p += 8;
    return fits(n) ? n : undefined;
  };
  const value = (type: number): boolean => {
    if (type === 8) {
      const n = readLen();
      if (n === undefined) return false;
      p += n;
      return true;
    }
    if (type === 9) {
      if (!fits(12)) return false;
      u32.push(p);
      u64.push(p + 4);
      const it = dv.getUint32(p, true);
      const count = Number(dv.getBigUint64(p + 4, true));
      p += 12;
      for (let i = 0; i < count; i++) if (!value(it)) return false;
      return true;
    }
    const size = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8][type];
    if (size === undefined || !fits(size)) return false;
    p += size;
    return true;
  };
  const nTensors = Number(dv.getBigUint64(8, true));
  const nKv = Number(dv.getBigUint64(16, true));
  for (let i = 0; i < nKv; i++) {
    const k = readLen();
    if (k === undefined) return { u64, u32, metaEnd: p };
    p += k;
    if (!fits(4)) return { u64, u32, metaEnd: p };
    u32.push(p);
    const type = dv.getUint32(p, true);
    p += 4;
    if (!value(type)) return { u64, u32, metaEnd: p };
  }
  for (let i = 0; i < nTensors; i++) {
    const n = readLen();
    if (n === undefined || !fits(n + 4)) break;
    p += n;
    u32.push(p);
    const dims = dv.getUint32(p, true);
    p += 4;
    if (!fits(dims * 8 + 12)) break;
    for (let d = 0; d < dims; d++) u64.push(p + 8 * d);
    p += dims * 8;
    u32.push(p);
    u64.push(p + 4);
    p += 12;
  }
  return { u64, u32, metaEnd: p };
}

interface Seed {
  name: string;
  buf: Uint8Array;
  fields: ReturnType<typeof fieldPositions>;
}

function seeds(): Seed[] {
  const out: Seed[] = [];
  const add = (name: string, buf: Uint8Array) =>
    out.push({ name, buf, fields: fieldPositions(buf) });
  add('synthetic', syntheticModel());
  for (const path of realFiles) {
    const whole = new Uint8Array(readFileSync(path));
    const head = whole.slice(0, 64 * 1024);
    add(`${path} [0, 64 KiB)`, head);
    // Metadata only: tensor count 0, so the 64 KiB head is a valid file.
    const metaOnly = head.slice();
    new DataView(metaOnly.buffer).setBigUint64(8, 0n, true);
    add(`${path} metadata only`, metaOnly);
    // A whole small file with the real metadata and a few tensors.
    const file = readGgufFromBuffer(whole);
    add(
      `${path} metadata + small tensors`,
      ggufToBuffer({
        metadata: file.metadata,
        tensors: file.tensors.slice(0, 3).map((t, i) => ({
          name: t.name,
          type: 'F32',
          shape: [4, i + 1],
          data: new Float32Array(4 * (i + 1)),
        })),
      }),
    );
  }
  return out;
}

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x20, 0x09, 0x0c, 0xfe];
const INTERESTING_U32 = [
  0, 1, 2, 4, 5, 7, 8, 9, 10, 12, 13, 14, 31, 39, 42, 43, 0x7fffffff, 0x80000000, 0xffffffff,
];

function interestingU64(r: ReturnType<typeof prng>, size: number): bigint {
  return r.pick([
    0n,
    1n,
    2n,
    (1n << 64n) - 1n,
    (1n << 63n) - 1n,
    1n << 63n,
    1n << 62n,
    1n << 32n,
    (1n << 32n) - 1n,
    1n << 31n,
    BigInt(size),
    BigInt(size + 1),
    BigInt(Math.max(0, size - 24)),
    BigInt(r.int(256)),
    BigInt(r.u32()),
    (BigInt(r.u32()) << 32n) | BigInt(r.u32()),
  ]);
}

/** One mutated copy of a seed. */
function mutate(r: ReturnType<typeof prng>, seed: Seed): Uint8Array {
  let buf = seed.buf.slice();
  const dv = () => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  // Most mutations hit the metadata section, where the parser works.
  const pos = () =>
    r.int(10) < 9
      ? r.int(Math.max(1, Math.min(buf.length, seed.fields.metaEnd + 64)))
      : r.int(buf.length);
  const steps = 1 + (r.int(4) === 0 ? r.int(3) : 0);
  for (let s = 0; s < steps; s++) {
    switch (r.int(8)) {
      case 0: {
        const flips = 1 + r.int(8);
        for (let i = 0; i < flips; i++) {
          const p = pos();
          buf[p]! ^= 1 << r.int(8);
        }
        break;
      }
      case 1: {
        const n = 1 + r.int(4);
        for (let i = 0; i < n; i++) buf[pos()] = r.pick(INTERESTING_BYTES);
        break;
      }
      case 2:
      case 3: {
        const p = r.pick(seed.fields.u64);
        if (p + 8 <= buf.length) dv().setBigUint64(p, interestingU64(r, buf.length), true);
        break;
      }
      case 4: {
        const p = r.pick(seed.fields.u32);
        if (p + 4 <= buf.length)
          dv().setUint32(p, r.int(3) === 0 ? r.u32() : r.pick(INTERESTING_U32), true);
        break;
      }
      case 5: {
        // huge or off-by-some counts at the header's tensor/kv count positions
        const p = r.pick([8, 16]);
        const cur = dv().getBigUint64(p, true);
        const v = r.int(2) === 0 ? interestingU64(r, buf.length) : cur + BigInt(r.int(5)) - 2n;
        dv().setBigUint64(p, BigInt.asUintN(64, v), true);
        break;
      }
      case 6:
        buf = buf.slice(0, pos());
        break;
      case 7: {
        // delete or duplicate a short range (shifts everything after it)
        const a = pos();
        const n = 1 + r.int(16);
        buf =
          r.int(2) === 0
            ? Buffer.concat([buf.subarray(0, a), buf.subarray(a + n)])
            : Buffer.concat([buf.subarray(0, a + n), buf.subarray(a)]);
        buf = new Uint8Array(buf);
        break;
      }
    }
  }
  return buf;
}

/** A FileHandle over a buffer, for the chunked async path. */
function memoryHandle(buf: Uint8Array): FileHandle {
  return {
    stat: async () => ({ size: buf.length }),
    read: async (target: Uint8Array, offset: number, length: number, position: number) => {
      const src = buf.subarray(position, position + length);
      target.set(src, offset);
      return { bytesRead: src.length, buffer: target };
    },
  } as unknown as FileHandle;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

function runSync(buf: Uint8Array, llamaCpp: boolean): Outcome {
  try {
    return { ok: true, value: readGgufFromBuffer(buf, { llamaCpp }) };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('gguf fuzz', () => {
  it(`${CASES} mutated files end in a parse or a typed error`, { timeout: 60_000 }, async () => {
    const r = prng(SEED);
    const all = seeds();
    expect(all.length).toBeGreaterThanOrEqual(1);
    for (const s of all)
      expect(runSync(s.buf, false).ok || s.name.includes('64 KiB'), s.name).toBe(true);

    let typed = 0;
    let valid = 0;
    let asyncChecked = 0;
    let maxMs = 0;
    const crashes: string[] = [];
    const slow: string[] = [];
    const started = performance.now();
    for (let i = 0; i < CASES; i++) {
      const seed = all[i % all.length]!;
      const buf = mutate(r, seed);
      const llamaCpp = (i & 1) === 1;
      const t0 = performance.now();
      const out = runSync(buf, llamaCpp);
      const ms = performance.now() - t0;
      maxMs = Math.max(maxMs, ms);
      if (ms > MAX_CASE_MS) slow.push(`case ${i} (${seed.name}): ${ms.toFixed(0)} ms`);
      if (out.ok) valid++;
      else if (isGgufError(out.error)) typed++;
      else
        crashes.push(
          `case ${i} (${seed.name}): ${String((out.error as Error)?.stack ?? out.error)}`,
        );

      // Every 40th case also goes through the chunked file reader with a small random chunk.
      if (i % 40 === 0) {
        asyncChecked++;
        const viaHandle = await readGguf(memoryHandle(buf), {
          llamaCpp,
          chunkSize: 64 + r.int(2048),
        }).then(
          (value): Outcome => ({ ok: true, value }),
          (error): Outcome => ({ ok: false, error }),
        );
        if (out.ok && viaHandle.ok) expect(viaHandle.value).toEqual(out.value);
        else if (out.ok || viaHandle.ok || String(out.error) !== String(viaHandle.error)) {
          crashes.push(
            `case ${i}: buffer and handle reads disagree: ${out.ok ? 'ok' : String(out.error)} / ${viaHandle.ok ? 'ok' : String(viaHandle.error)}`,
          );
        }
      }
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `gguf fuzz: ${CASES} cases, ${typed} typed errors, ${valid} valid parses, ${crashes.length} crashes` +
        ` (${all.length} seeds, ${asyncChecked} also via the chunked reader, max ${maxMs.toFixed(1)} ms/case, ${seconds.toFixed(1)} s)`,
    );
    expect(crashes.slice(0, 5)).toEqual([]);
    expect(slow).toEqual([]);
    expect(typed).toBeGreaterThan(CASES / 10);
    expect(valid).toBeGreaterThan(CASES / 100);
  });
});
