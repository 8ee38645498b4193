import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, MmError } from '@mm/errors';
import { describe, expect, it } from 'vitest';
import { isGgufError, MmGgufFormatError } from './errors.js';
import { getArray, getBool, getFloat, getString, getUint } from './metadata.js';
import { readGguf, readGgufFromBuffer, readTensorData } from './reader.js';
import { type GgufFile, gv } from './types.js';
import { ggufToBuffer } from './writer.js';

// The tiny-shapes model bundled in the repository (@mm/testing depends on this package, so the
// path is spelled out here).
const tinyShapes = join(import.meta.dirname, '../../../apps/demo/models/tiny-shapes');
const llmPath = join(tinyShapes, 'tiny-shapes-llm.gguf');
const mmprojPath = join(tinyShapes, 'mmproj-tiny-shapes.gguf');

/** Catches what `fn` throws (sync). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

function expectFormatError(buf: Uint8Array, pattern?: RegExp): MmGgufFormatError {
  const e = thrown(() => readGgufFromBuffer(buf));
  if (!(e instanceof MmGgufFormatError)) throw e;
  expect(e.code).toBe(ErrorCode.MM_GGUF_INVALID);
  expect(MmError.isInstance(e)).toBe(true);
  if (pattern) expect(e.message).toMatch(pattern);
  return e;
}

function expectUnsupported(buf: Uint8Array, pattern?: RegExp): void {
  const e = thrown(() => readGgufFromBuffer(buf));
  expect(MmError.hasCode(e, ErrorCode.MM_GGUF_UNSUPPORTED), String(e)).toBe(true);
  if (pattern) expect((e as Error).message).toMatch(pattern);
}

function u64le(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
  return b;
}
function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}
function patched(buf: Uint8Array, at: number, bytes: Uint8Array): Uint8Array {
  const out = buf.slice();
  out.set(bytes, at);
  return out;
}
function keyBytes(key: string): number {
  return Buffer.byteLength(key);
}

/** A small valid file: a string, a uint32, an array and two tensors. */
function sample(): { buf: Uint8Array; file: GgufFile } {
  const buf = ggufToBuffer({
    metadata: {
      'general.architecture': gv.string('llama'),
      'general.alignment': gv.uint32(32),
      'a.count': gv.uint32(7),
      'a.list': gv.array('int32', new Int32Array([1, 2, 3])),
    },
    tensors: [
      { name: 'blk.0.attn_q.weight', type: 'F32', shape: [8, 2], data: new Float32Array(16) },
      { name: 'blk.0.attn_k.weight', type: 'Q8_0', shape: [32, 2], data: new Uint8Array(68) },
    ],
  });
  return { buf, file: readGgufFromBuffer(buf) };
}

describe('real files (tiny-shapes)', () => {
  it('reads the text model', async () => {
    const file = await readGguf(llmPath);
    expect(file.version).toBe(3);
    expect(file.fileSize).toBe(3030944);
    expect(file.alignment).toBe(32);
    expect(file.dataOffset).toBe(12704);
    expect(getString(file, 'general.architecture')).toBe('llama');
    expect(getUint(file, 'llama.embedding_length')).toBe(128);
    expect(getUint(file, 'llama.block_count')).toBe(3);
    expect(getUint(file, 'llama.context_length')).toBe(256);
    expect(getFloat(file, 'llama.rope.freq_base')).toBe(10000);
    expect(getBool(file, 'tokenizer.ggml.add_bos_token')).toBe(true);
    const tokens = getArray(file, 'tokenizer.ggml.tokens', 'string');
    expect(tokens.length).toBe(448);
    expect(tokens.slice(0, 5)).toEqual(['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>']);
    expect(tokens[15]).toBe('<0x0A>');
    expect(tokens[365]).toBe('▁user');
    const types = getArray(file, 'tokenizer.ggml.token_type', 'int32');
    expect(Array.from(types.subarray(0, 6))).toEqual([2, 3, 3, 3, 3, 6]);
    expect(getString(file, 'tokenizer.chat_template')).toContain(
      "'<|im_start|>' + message['role']",
    );
    expect(file.tensors.length).toBe(2 + 3 * 9 + 1);
    const q = file.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    expect(q).toMatchObject({ type: 'F32', shape: [128, 128], nElements: 16384, byteSize: 65536 });
    const emb = file.tensors[0]!;
    expect(emb).toMatchObject({
      name: 'token_embd.weight',
      shape: [128, 448],
      offset: 0,
      absoluteOffset: 12704,
    });
    const last = file.tensors.at(-1)!;
    expect(last.absoluteOffset + last.byteSize).toBe(file.fileSize);
    // llama.cpp's own rules hold for a file it loads
    await expect(readGguf(llmPath, { llamaCpp: true })).resolves.toBeDefined();
  });

  it('reads the mmproj', async () => {
    const file = await readGguf(mmprojPath);
    expect(getString(file, 'general.architecture')).toBe('clip');
    expect(getString(file, 'clip.projector_type')).toBe('mlp');
    expect(getUint(file, 'clip.vision.image_size')).toBe(48);
    expect(getUint(file, 'clip.vision.patch_size')).toBe(8);
    expect(Array.from(getArray(file, 'clip.vision.feature_layer', 'int32'))).toEqual([3]);
    expect(getArray(file, 'clip.vision.image_mean', 'float32')[0]).toBeCloseTo(0.48145466, 6);
    expect(file.tensors.find((t) => t.name === 'v.patch_embd.weight')!.shape).toEqual([
      8, 8, 3, 96,
    ]);
  });

  it('gives the same result from a FileHandle with tiny chunks as from a buffer', async () => {
    const fromBuf = readGgufFromBuffer(new Uint8Array(readFileSync(llmPath)));
    const fh = await open(llmPath, 'r');
    try {
      const fromHandle = await readGguf(fh, { chunkSize: 100 });
      expect(fromHandle).toEqual(fromBuf);
      // the handle is left open
      expect((await fh.stat()).size).toBe(fromBuf.fileSize);
      const data = await readTensorData(fh, fromHandle, 'output_norm.weight');
      expect(data.length).toBe(512);
    } finally {
      await fh.close();
    }
  });

  it('only reads the metadata section', async () => {
    const fh = await open(llmPath, 'r');
    let bytes = 0;
    const counting = new Proxy(fh, {
      get(target, prop) {
        if (prop === 'read') {
          return async (buffer: Uint8Array, offset: number, length: number, position: number) => {
            const r = await target.read(buffer, offset, length, position);
            bytes += r.bytesRead;
            return r;
          };
        }
        const v = Reflect.get(target, prop);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    try {
      await readGguf(counting, { chunkSize: 4096 });
    } finally {
      await fh.close();
    }
    expect(bytes).toBeLessThan(12704 + 4096);
  });
});

describe('readGguf errors', () => {
  it('missing file → MM_FILE_NOT_FOUND', async () => {
    const e = await readGguf('/nonexistent/dir/x.gguf').catch((x: unknown) => x);
    expect(MmError.hasCode(e, ErrorCode.MM_FILE_NOT_FOUND)).toBe(true);
    expect((e as Error).message).toContain('/nonexistent/dir/x.gguf');
  });

  it('a rejected AbortSignal stops the read', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(readGguf(llmPath, { signal: ac.signal })).rejects.toThrow('stop');
  });
});

describe('hostile input → MmGgufFormatError (MM_GGUF_INVALID)', () => {
  it('accepts the valid sample', () => {
    const { file } = sample();
    expect(file.tensors.length).toBe(2);
    expect(isGgufError(new MmGgufFormatError('x', 0))).toBe(true);
  });

  it('truncation at every byte before the end of the last tensor', () => {
    const { buf, file } = sample();
    const last = file.tensors.at(-1)!;
    const end = last.absoluteOffset + last.byteSize;
    const sections = new Set<string>();
    for (let cut = 0; cut < end; cut++) {
      const e = expectFormatError(buf.subarray(0, cut));
      if (cut < file.dataOffset) expect(e.message).toMatch(/truncated|remain/);
      sections.add(e.message.replace(/[0-9]+/g, 'N').replace(/'[^']*'/g, 'S'));
    }
    expect(sections.size).toBeGreaterThan(10);
    // the padding after the last tensor is not needed
    expect(readGgufFromBuffer(buf.subarray(0, end)).tensors.length).toBe(2);
  });

  it('bad magic', () => {
    const { buf } = sample();
    expectFormatError(patched(buf, 0, new TextEncoder().encode('GGML')), /bad magic 'GGML'/);
    expectFormatError(new Uint8Array([0x47, 0x47]), /truncated: magic/);
    expectFormatError(new Uint8Array(0), /truncated/);
  });

  it('unsupported versions and byte order → MM_GGUF_UNSUPPORTED', () => {
    const { buf } = sample();
    expectUnsupported(patched(buf, 4, u32le(1)), /v1/);
    expectUnsupported(patched(buf, 4, u32le(4)), /version 4/);
    expectUnsupported(patched(buf, 4, new Uint8Array([0, 0, 0, 3])), /big-endian/);
    expectFormatError(patched(buf, 4, u32le(0)), /version 0/);
    expect(readGgufFromBuffer(patched(buf, 4, u32le(2))).version).toBe(2);
  });

  it('huge counts in the header', () => {
    const { buf } = sample();
    expectFormatError(patched(buf, 16, u64le(-1n)), /key\/value count 18446744073709551615/);
    expectFormatError(patched(buf, 16, u64le(1n << 40n)), /key\/value count/);
    expectFormatError(patched(buf, 8, u64le(-1n)), /tensor count 18446744073709551615/);
    // plausible but wrong counts run off the end
    expectFormatError(patched(buf, 16, u64le(100n)), /truncated|remaining|unknown|duplicate|empty/);
  });

  it('huge string length, huge array count, unknown value type', () => {
    const { buf, file } = sample();
    const arch = file.metadataOffsets.get('general.architecture')!;
    expectFormatError(
      patched(buf, arch, u64le(-1n)),
      /key 0 is 18446744073709551615 bytes long, more than the 65535 the GGUF spec allows/,
    );
    const valueLen = arch + 8 + keyBytes('general.architecture') + 4;
    expectFormatError(
      patched(buf, valueLen, u64le(1n << 62n)),
      /key 0 'general.architecture' value has length/,
    );
    const list = file.metadataOffsets.get('a.list')!;
    const listType = list + 8 + keyBytes('a.list');
    expectFormatError(
      patched(buf, listType + 8, u64le(-1n)),
      /has 18446744073709551615 elements of type int32/,
    );
    expectFormatError(patched(buf, listType + 8, u64le(1000n)), /1000 elements .* remain/);
    expectFormatError(patched(buf, listType, u32le(13)), /unknown value type 13/);
    expectFormatError(
      patched(buf, listType + 4, u32le(0xffffffff)),
      /item has unknown value type 4294967295/,
    );
  });

  it('duplicate keys and empty keys', () => {
    // header 24 bytes, key 0 takes 8 + 3 + 4 + 1: key 1's last character is at 40 + 8 + 2
    const dup = ggufToBuffer({ metadata: { abc: gv.uint8(1), abd: gv.uint8(2) } });
    expectFormatError(patched(dup, 50, new Uint8Array([0x63])), /key 1 'abc' is a duplicate/);
    expectFormatError(patched(dup, 24, u64le(0n)), /key 0 is empty|unknown value type/);
  });

  it('alignment 0, 3 and of the wrong type', () => {
    const { buf, file } = sample();
    const al = file.metadataOffsets.get('general.alignment')!;
    const valueAt = al + 8 + keyBytes('general.alignment') + 4;
    expectFormatError(patched(buf, valueAt, u32le(0)), /general.alignment 0 is not a power of 2/);
    expectFormatError(patched(buf, valueAt, u32le(3)), /general.alignment 3 is not a power of 2/);
    expectFormatError(
      patched(buf, valueAt - 4, u32le(5)),
      /general.alignment must be of type uint32 but is int32/,
    );
    // alignment 16 is valid but the stored offsets (multiples of 32) stay aligned
    expect(readGgufFromBuffer(patched(buf, valueAt, u32le(16))).alignment).toBe(16);
  });

  it('tensor table: offsets, shapes, types, names', () => {
    const { buf, file } = sample();
    const t1 = file.tensors[1]!;
    const nameLen = keyBytes(t1.name);
    const dims = t1.infoOffset + 8 + nameLen;
    const ne0 = dims + 4;
    const type = ne0 + 8 * 2;
    const offset = type + 4;
    const e = expectFormatError(
      patched(buf, offset, u64le(1024n)),
      /tensor 1 'blk.0.attn_k.weight': data \[[0-9]+\.\.[0-9]+\) ends beyond the file \(size [0-9]+\)/,
    );
    expect(e.offset).toBe(t1.infoOffset);
    expectFormatError(patched(buf, offset, u64le(-32n)), /ends beyond the file/);
    expectFormatError(patched(buf, offset, u64le(33n)), /not a multiple of the alignment 32/);
    expectFormatError(patched(buf, ne0, u64le(-1n)), /dimension 0 is negative/);
    expectFormatError(
      patched(patched(buf, ne0, u64le(1n << 32n)), ne0 + 8, u64le(1n << 32n)),
      /2\^63 or more elements/,
    );
    expectFormatError(
      patched(patched(buf, ne0, u64le(1n << 31n)), ne0 + 8, u64le(1n << 32n)),
      /2\^63 or more elements/,
    );
    expectFormatError(patched(buf, ne0, u64le(1n << 40n)), /ends beyond the file/);
    expectFormatError(patched(buf, ne0, u64le(33n)), /not a multiple of the block size 32/);
    expectFormatError(patched(buf, type, u32le(99)), /unknown ggml type 99/);
    expectFormatError(patched(buf, type, u32le(-1)), /unknown ggml type -1/);
    expectUnsupported(patched(buf, type, u32le(31)), /Q4_0_4_4/);
    expectFormatError(patched(buf, dims, u32le(5)), /5 dimensions, more than 4/);
    expectFormatError(patched(buf, dims, u32le(0xffffffff)), /dimensions, more than 4/);
    // same name twice
    const t0name = file.tensors[0]!.infoOffset + 8;
    expectFormatError(
      patched(buf, t0name + nameLen - 8, new TextEncoder().encode('k.weight')),
      /tensor 1 'blk.0.attn_k.weight' is a duplicate name/,
    );
    expectFormatError(
      patched(buf, t1.infoOffset, u64le(1n << 50n)),
      /tensor 1 name is 1125899906842624 bytes long, more than the 64 the GGUF spec allows/,
    );
  });

  it('array nesting beyond the depth limit', () => {
    type Nested =
      | { type: 'array'; itemType: 'array'; value: Nested[] }
      | { type: 'array'; itemType: 'uint8'; value: Uint8Array };
    let v: Nested = { type: 'array', itemType: 'uint8', value: new Uint8Array([1]) };
    for (let i = 0; i < 7; i++) v = { type: 'array', itemType: 'array', value: [v] };
    const ok = ggufToBuffer({ metadata: { deep: v } });
    expect(readGgufFromBuffer(ok).metadata.get('deep')).toEqual(v);
    expect(() => readGgufFromBuffer(ok, { maxArrayDepth: 4 })).toThrow(
      /nests arrays deeper than 4/,
    );
    // depth 9 by hand: key 'd', type array, 8 × (item type array, count 1), then uint8 × 1
    const parts = [
      u32le(0x46554747),
      u32le(3),
      u64le(0n),
      u64le(1n),
      u64le(1n),
      new Uint8Array([0x64]),
      u32le(9),
    ];
    for (let i = 0; i < 8; i++) parts.push(u32le(9), u64le(1n));
    parts.push(u32le(0), u64le(1n), new Uint8Array([7]));
    expectFormatError(
      Buffer.concat(parts),
      /key 0 'd' value element 0 element 0 .* nests arrays deeper than 8/,
    );
  });

  it('llamaCpp mode rejects what gguf.cpp rejects', () => {
    const nested = ggufToBuffer({
      metadata: {
        n: gv.array('array', [{ type: 'array', itemType: 'uint8', value: new Uint8Array(1) }]),
      },
    });
    expect(readGgufFromBuffer(nested).metadata.size).toBe(1);
    expect(
      MmError.hasCode(
        thrown(() => readGgufFromBuffer(nested, { llamaCpp: true })),
        'MM_GGUF_INVALID',
      ),
    ).toBe(true);
    // two tensors with the second stored at offset 64 instead of 32 (gap)
    const { buf, file } = sample();
    const t1 = file.tensors[1]!;
    const offAt = t1.infoOffset + 8 + keyBytes(t1.name) + 4 + 16 + 4;
    const grown = new Uint8Array(buf.length + 32);
    grown.set(buf);
    const gap = patched(grown, offAt, u64le(BigInt(t1.offset + 32)));
    expect(readGgufFromBuffer(gap).tensors[1]!.offset).toBe(t1.offset + 32);
    // a 64-byte tensor name (the writer refuses it, so by hand)
    const name = new TextEncoder().encode('n'.repeat(64));
    const head = [
      u32le(0x46554747),
      u32le(3),
      u64le(1n),
      u64le(0n),
      u64le(64n),
      name,
      u32le(1),
      u64le(1n),
      u32le(0),
      u64le(0n),
    ];
    const table = Buffer.concat(head);
    const longName = Buffer.concat([table, new Uint8Array(128 - table.length + 4)]);
    expect(readGgufFromBuffer(longName).tensors[0]!.name.length).toBe(64);
    expect(() => readGgufFromBuffer(longName, { llamaCpp: true })).toThrow(
      /tensor 0 name is 64 bytes long, more than the 63 llama.cpp \(GGML_MAX_NAME with the NUL\) allows/,
    );
    const e = thrown(() => readGgufFromBuffer(gap, { llamaCpp: true }));
    expect((e as Error).message).toMatch(
      /should be 64 \(llama.cpp lays tensors out back to back\)/,
    );
  });

  it('the spec bounds: keys up to 65535 bytes, tensor names up to 64, no NUL in keys', () => {
    /** The string whose u64 length is at `at`, `by` bytes longer (alignment kept: by % 32 = 0). */
    const grown = (buf: Uint8Array, at: number, by: number): Uint8Array => {
      const len = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(at, true));
      const end = at + 8 + len;
      const out = Buffer.concat([buf.subarray(0, end), Buffer.alloc(by, 0x61), buf.subarray(end)]);
      out.writeBigUInt64LE(BigInt(len + by), at);
      return out;
    };
    const key = 'k'.repeat(65535 - 32);
    const buf = ggufToBuffer({
      metadata: { [key]: gv.uint8(1), 'general.alignment': gv.uint32(32) },
      tensors: [{ name: 'n'.repeat(32), type: 'F32', shape: [2], data: new Float32Array(2) }],
    });
    const file = readGgufFromBuffer(buf, { llamaCpp: true });
    const keyAt = file.metadataOffsets.get(key)!;
    const nameAt = file.tensors[0]!.infoOffset;
    // a key of exactly 65535 bytes is valid, 65536 is not (in both modes)
    const key65535 = grown(buf, keyAt, 32);
    expect([...readGgufFromBuffer(key65535).metadata.keys()][0]!.length).toBe(65535);
    const key65536 = patched(grown(buf, keyAt, 32), keyAt, u64le(65536n));
    for (const llamaCpp of [false, true]) {
      const e = thrown(() => readGgufFromBuffer(key65536, { llamaCpp }));
      expect(MmError.hasCode(e, 'MM_GGUF_INVALID')).toBe(true);
      expect((e as Error).message).toMatch(
        /key 0 is 65536 bytes long, more than the 65535 the GGUF spec allows/,
      );
    }
    // tensor names: 64 bytes is the spec's limit, llama.cpp takes 63
    const name64 = grown(buf, nameAt, 32);
    expect(readGgufFromBuffer(name64).tensors[0]!.name).toBe('n'.repeat(32) + 'a'.repeat(32));
    expect(() => readGgufFromBuffer(name64, { llamaCpp: true })).toThrow(
      /tensor 0 name is 64 bytes long, more than the 63 llama.cpp/,
    );
    const name96 = grown(buf, nameAt, 64);
    for (const llamaCpp of [false, true]) {
      expect(() => readGgufFromBuffer(name96, { llamaCpp })).toThrow(
        llamaCpp
          ? /name is 96 bytes long/
          : /name is 96 bytes long, more than the 64 the GGUF spec/,
      );
    }
    // a NUL inside a key: llama.cpp's C-string lookups would see 'kkk...' only
    const nul = patched(buf, keyAt + 8 + 10, new Uint8Array([0]));
    expectFormatError(nul, /key 0 'k{10}\\u0000k+\.\.\.' contains a NUL byte/);
    // the writer refuses what the reader refuses
    expect(() => ggufToBuffer({ metadata: { ['x'.repeat(65536)]: gv.uint8(1) } })).toThrow(
      /at most 65535 bytes/,
    );
    expect(() => ggufToBuffer({ metadata: { 'a\u0000b': gv.uint8(1) } })).toThrow(/NUL/);
  });

  it('llamaCpp mode: strings and arrays beyond 2^30 are refused before anything is read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mm-gguf-bounds-'));
    try {
      for (const [what, value] of [
        ['string', Buffer.concat([u32le(8), u64le((1n << 30n) + 1n)])],
        ['array', Buffer.concat([u32le(9), u32le(0), u64le((1n << 30n) + 1n)])],
      ] as const) {
        const head = Buffer.concat([
          u32le(0x46554747),
          u32le(3),
          u64le(0n),
          u64le(1n),
          u64le(1n),
          new Uint8Array([0x76]),
          value,
        ]);
        // a sparse file big enough to hold the value: only the limit can refuse it
        const path = join(dir, `${what}.gguf`);
        writeFileSync(path, head);
        truncateSync(path, 2 ** 30 + 4096);
        const t0 = performance.now();
        const e = await readGguf(path, { llamaCpp: true, maxMetadataBytes: 2 ** 31 }).catch(
          (x) => x,
        );
        expect(MmError.hasCode(e, 'MM_GGUF_INVALID')).toBe(true);
        expect((e as Error).message).toMatch(
          what === 'string'
            ? /key 0 'v' value is 1073741825 bytes long, more than the 1073741824 llama.cpp allows/
            : /key 0 'v' value has 1073741825 elements, more than llama.cpp's limit of 1073741824/,
        );
        expect(performance.now() - t0).toBeLessThan(1000);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('metadata beyond maxMetadataBytes → MM_GGUF_UNSUPPORTED', () => {
    const buf = ggufToBuffer({ metadata: { big: gv.array('uint8', new Uint8Array(100_000)) } });
    const e = thrown(() => readGgufFromBuffer(buf, { maxMetadataBytes: 10_000 }));
    expect(MmError.hasCode(e, ErrorCode.MM_GGUF_UNSUPPORTED)).toBe(true);
  });

  it('typed getters throw on a wrong or missing key', () => {
    const { file } = sample();
    const wrong = thrown(() => getString(file, 'a.count'));
    expect(wrong).toBeInstanceOf(MmGgufFormatError);
    expect((wrong as MmGgufFormatError).message).toMatch(
      /key 'a.count' has type uint32, expected string/,
    );
    expect((wrong as MmGgufFormatError).offset).toBe(file.metadataOffsets.get('a.count'));
    expect((thrown(() => getUint(file, 'nope')) as Error).message).toMatch(/key 'nope' is missing/);
    expect(getUint(file, 'nope', null)).toBeNull();
    expect(() => getArray(file, 'a.list', 'float32')).toThrow(
      /array of int32, expected array of float32/,
    );
    expect(() => getFloat(file.metadata, 'a.count')).toThrow(MmGgufFormatError);
    expect(getUint(new Map([['x', gv.uint64(5n)]]), 'x')).toBe(5);
    expect(() => getUint(new Map([['x', gv.int32(-5)]]), 'x')).toThrow(
      /-5, expected an unsigned integer/,
    );
    expect(() => getUint(new Map([['x', gv.uint64(1n << 60n)]]), 'x')).toThrow(/beyond 2\^53/);
  });
});
