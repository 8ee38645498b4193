import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import { afterAll, describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from './float16.js';
import { getArray, getString } from './metadata.js';
import { readGguf, readGgufFromBuffer, readTensorData } from './reader.js';
import { GGML_TYPES, type GgufMetadata, gv } from './types.js';
import { GgufWriter, ggufToBuffer, writeGguf } from './writer.js';

const dir = mkdtempSync(join(tmpdir(), 'mm-gguf-writer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function everyValueType(): GgufMetadata {
  return new Map([
    ['general.architecture', gv.string('llama')],
    ['t.uint8', gv.uint8(255)],
    ['t.int8', gv.int8(-128)],
    ['t.uint16', gv.uint16(65535)],
    ['t.int16', gv.int16(-32768)],
    ['t.uint32', gv.uint32(0xffffffff)],
    ['t.int32', gv.int32(-0x80000000)],
    ['t.float32', gv.float32(Math.fround(1.1))],
    ['t.float64', gv.float64(Math.PI)],
    ['t.uint64', gv.uint64(0xffffffffffffffffn)],
    ['t.int64', gv.int64(-(1n << 63n))],
    ['t.bool.true', gv.bool(true)],
    ['t.bool.false', gv.bool(false)],
    ['t.string', gv.string('héllo ▁wörld 🙂')],
    ['t.string.empty', gv.string('')],
    ['t.arr.uint8', gv.array('uint8', new Uint8Array([0, 1, 255]))],
    ['t.arr.int8', gv.array('int8', new Int8Array([-128, 0, 127]))],
    ['t.arr.uint16', gv.array('uint16', new Uint16Array([0, 65535]))],
    ['t.arr.int16', gv.array('int16', new Int16Array([-32768, 32767]))],
    ['t.arr.uint32', gv.array('uint32', new Uint32Array([0, 0xffffffff]))],
    ['t.arr.int32', gv.array('int32', new Int32Array([-1, 2, -3]))],
    [
      't.arr.float32',
      gv.array('float32', new Float32Array([0.5, -1.25, Number.POSITIVE_INFINITY])),
    ],
    ['t.arr.float64', gv.array('float64', new Float64Array([Math.E, -0]))],
    ['t.arr.uint64', gv.array('uint64', new BigUint64Array([0n, 1n << 63n]))],
    ['t.arr.int64', gv.array('int64', new BigInt64Array([-5n, 5n]))],
    ['t.arr.bool', gv.array('bool', [true, false, true])],
    ['t.arr.string', gv.array('string', ['a', '', '<0x0A>', '▁the'])],
    ['t.arr.empty', gv.array('float32', new Float32Array(0))],
    [
      't.arr.nested',
      gv.array('array', [
        { type: 'array', itemType: 'int32', value: new Int32Array([1, 2]) },
        { type: 'array', itemType: 'string', value: ['x'] },
        {
          type: 'array',
          itemType: 'array',
          value: [{ type: 'array', itemType: 'bool', value: [true] }],
        },
      ]),
    ],
  ]);
}

function tensors() {
  const f32 = new Float32Array(4 * 3).map((_, i) => i * 0.25 - 1);
  const q4 = new Uint8Array(GGML_TYPES.Q4_0.typeSize * 2).map((_, i) => i);
  const q8k = new Uint8Array(GGML_TYPES.Q8_K.typeSize).map((_, i) => (i * 7) & 0xff);
  return [
    { name: 'a.f32', type: 'F32' as const, shape: [4, 3], data: f32 },
    { name: 'b.f16', type: 'F16' as const, shape: [4, 3], data: f32 },
    { name: 'c.bf16', type: 'BF16' as const, shape: [12], data: f32 },
    { name: 'd.q4_0', type: 'Q4_0' as const, shape: [64], data: q4 },
    { name: 'e.q8_k', type: 'Q8_K' as const, shape: [256, 1], data: q8k },
    { name: 'f.i32', type: 'I32' as const, shape: [3, 1, 1, 1], data: new Int32Array([7, -8, 9]) },
    {
      name: 'g.f16raw',
      type: 'F16' as const,
      shape: [2],
      data: f32ToF16(new Float32Array([1, -2])),
    },
  ];
}

describe('GgufWriter → reader round trip', () => {
  it('keeps every value type with its tag', () => {
    const md = everyValueType();
    const buf = ggufToBuffer({ metadata: md, tensors: tensors() });
    const file = readGgufFromBuffer(buf, { llamaCpp: false });
    expect(file.version).toBe(3);
    expect([...file.metadata.keys()]).toEqual([...md.keys()]);
    for (const [k, v] of md) expect(file.metadata.get(k), k).toEqual(v);
    expect(getString(file, 't.string')).toBe('héllo ▁wörld 🙂');
    expect(getArray(file, 't.arr.string', 'string')).toEqual(['a', '', '<0x0A>', '▁the']);
  });

  it('lays out tensors like llama.cpp and keeps their data', async () => {
    const ts = tensors();
    const buf = ggufToBuffer({ metadata: { 'general.architecture': gv.string('x') }, tensors: ts });
    const file = readGgufFromBuffer(buf, { llamaCpp: true });
    expect(file.alignment).toBe(32);
    expect(file.dataOffset % 32).toBe(0);
    expect(file.tensors.map((t) => [t.name, t.type, t.shape])).toEqual(
      ts.map((t) => [t.name, t.type, t.shape]),
    );
    for (const t of file.tensors) expect(t.offset % 32).toBe(0);
    const f32 = await readTensorData(buf, file, 'a.f32');
    expect(new Float32Array(f32.buffer)).toEqual(ts[0]!.data);
    const f16 = await readTensorData(buf, file, 'b.f16');
    expect(f16ToF32(new Uint16Array(f16.buffer))).toEqual(ts[0]!.data); // all exactly representable
    expect(await readTensorData(buf, file, 'd.q4_0')).toEqual(ts[3]!.data);
    expect(file.tensors[4]!.byteSize).toBe(292);
    expect(new Int32Array((await readTensorData(buf, file, 'f.i32')).buffer)).toEqual(
      new Int32Array([7, -8, 9]),
    );
    expect(buf.length).toBe(file.tensors.at(-1)!.absoluteOffset + 32); // last tensor padded to 32
  });

  it('writes the same bytes to a file as toBuffer, and reads them back from the path', async () => {
    const spec = { metadata: everyValueType(), tensors: tensors(), alignment: 64 };
    const path = join(dir, 'rt.gguf');
    await writeGguf(path, spec);
    const onDisk = readFileSync(path);
    expect(new Uint8Array(onDisk)).toEqual(ggufToBuffer(spec));
    const file = await readGguf(path, { chunkSize: 64 });
    expect(file.alignment).toBe(64);
    expect(file.metadata.get('general.alignment')).toEqual({ type: 'uint32', value: 64 });
    expect(file.metadata.get('t.arr.nested')).toEqual(spec.metadata.get('t.arr.nested'));
    const data = await readTensorData(path, file, 'a.f32');
    expect(new Float32Array(data.buffer)).toEqual(spec.tensors[0]!.data);
  });

  it('round-trips metadata much larger than the initial buffer', () => {
    const tokens = Array.from({ length: 3000 }, (_, i) => `tok${i}▁`);
    const md = new Map([
      ['a', gv.uint8(1)],
      ['tokens', gv.array('string', tokens)],
      [
        'scores',
        gv.array(
          'float32',
          new Float32Array(3000).map((_, i) => -i),
        ),
      ],
      ['z', gv.uint64(7n)],
    ]);
    const file = readGgufFromBuffer(ggufToBuffer({ metadata: md }));
    for (const [k, v] of md) expect(file.metadata.get(k), k).toEqual(v);
  });

  it('writes a metadata-only file', () => {
    const file = readGgufFromBuffer(new GgufWriter().set('k', gv.bool(true)).toBuffer());
    expect(file.tensors).toEqual([]);
    expect(file.metadata.get('k')).toEqual({ type: 'bool', value: true });
  });

  it('rejects bad input with MM_INVALID_ARGUMENT', () => {
    const cases: Array<() => unknown> = [
      () => ggufToBuffer({ metadata: { k: gv.uint8(256) } }),
      () => ggufToBuffer({ metadata: { k: gv.int32(1.5) } }),
      () => ggufToBuffer({ metadata: { k: gv.uint64(-1) } }),
      () => ggufToBuffer({ metadata: { k: { type: 'nope', value: 1 } as never } }),
      () => ggufToBuffer({ metadata: { k: gv.array('uint8', [1, 300] as never) } }),
      () => ggufToBuffer({ metadata: { 'general.alignment': gv.uint64(32) } }),
      () => ggufToBuffer({ metadata: { 'general.alignment': gv.uint32(32) }, alignment: 64 }),
      () => ggufToBuffer({ alignment: 3 }),
      () => ggufToBuffer({ alignment: 0 }),
      () =>
        ggufToBuffer({
          tensors: [{ name: 'a', type: 'F32', shape: [3], data: new Float32Array(2) }],
        }),
      () =>
        ggufToBuffer({
          tensors: [{ name: 'a', type: 'Q4_0', shape: [16], data: new Uint8Array(9) }],
        }),
      () =>
        ggufToBuffer({
          tensors: [{ name: 'a', type: 'F32', shape: [], data: new Float32Array(1) }],
        }),
      () =>
        ggufToBuffer({
          tensors: [{ name: 'x'.repeat(64), type: 'F32', shape: [1], data: new Float32Array(1) }],
        }),
      () =>
        ggufToBuffer({
          tensors: [
            { name: 'a', type: 'F32', shape: [1], data: new Float32Array(1) },
            { name: 'a', type: 'F32', shape: [1], data: new Float32Array(1) },
          ],
        }),
      () =>
        ggufToBuffer({
          tensors: [{ name: 'a', type: 'Q9' as never, shape: [1], data: new Float32Array(1) }],
        }),
    ];
    for (const [i, fn] of cases.entries()) {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(MmError.hasCode(err, 'MM_INVALID_ARGUMENT'), `case ${i}: ${String(err)}`).toBe(true);
    }
  });
});
