import { open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import { f32ToBf16, f32ToF16 } from './float16.js';
import { quantizeQ8_0 } from './quant.js';
import {
  GGML_MAX_DIMS,
  GGML_MAX_NAME,
  GGML_TYPES,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_KEY_LENGTH,
  GGUF_SCALAR_SIZE,
  GGUF_VERSION,
  type GgmlTypeName,
  type GgufArrayItemType,
  type GgufMetadata,
  type GgufValue,
  GgufValueTypeId,
  ggmlTensorBytes,
  isGgmlTypeName,
} from './types.js';

export interface GgufTensorInput {
  name: string;
  type: GgmlTypeName;
  /** Shape in ggml order: ne[0] is the fastest-varying (row) dimension. 1 to 4 entries. */
  shape: readonly number[];
  /**
   * The data, little-endian as stored. For F16 and BF16 a Float32Array is converted (round to
   * nearest even); a Uint16Array is taken as raw bits. For Q8_0 a Float32Array is quantized
   * (`quantizeQ8_0`). Otherwise the byte length must equal
   * the size the type table gives for the shape (quantized types: the raw blocks as bytes).
   */
  data: ArrayBufferView;
}

export interface GgufWriteSpec {
  /** Values in the order they are written. */
  metadata?: GgufMetadata | Readonly<Record<string, GgufValue>>;
  tensors?: readonly GgufTensorInput[];
  /**
   * Data alignment. Defaults to `general.alignment` of the metadata, else 32. When it is not 32
   * and the metadata lacks `general.alignment`, the key is added.
   */
  alignment?: number;
}

const textEncoder = new TextEncoder();

/** A growable little-endian byte buffer. */
class ByteSink {
  private buf = new Uint8Array(4096);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    const at = this.length;
    if (at + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < at + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, at));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.length += n;
    return at;
  }

  // Note: reserve() may replace buf and view, so it is always called before they are read.
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.view.setInt32(at, v, true);
  }
  u64(v: bigint): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, v, true);
  }
  i64(v: bigint): void {
    const at = this.reserve(8);
    this.view.setBigInt64(at, v, true);
  }
  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
  }
  string(s: string): void {
    const b = textEncoder.encode(s);
    this.u64(BigInt(b.length));
    this.bytes(b);
  }
  zeros(n: number): void {
    const at = this.reserve(n);
    this.buf.fill(0, at, this.length);
  }
  scalar(type: keyof typeof GGUF_SCALAR_SIZE, v: number | bigint | boolean): void {
    const at = this.reserve(GGUF_SCALAR_SIZE[type]);
    const dv = this.view;
    switch (type) {
      case 'uint8':
        dv.setUint8(at, v as number);
        break;
      case 'int8':
        dv.setInt8(at, v as number);
        break;
      case 'uint16':
        dv.setUint16(at, v as number, true);
        break;
      case 'int16':
        dv.setInt16(at, v as number, true);
        break;
      case 'uint32':
        dv.setUint32(at, v as number, true);
        break;
      case 'int32':
        dv.setInt32(at, v as number, true);
        break;
      case 'float32':
        dv.setFloat32(at, v as number, true);
        break;
      case 'float64':
        dv.setFloat64(at, v as number, true);
        break;
      case 'uint64':
        dv.setBigUint64(at, v as bigint, true);
        break;
      case 'int64':
        dv.setBigInt64(at, v as bigint, true);
        break;
      case 'bool':
        dv.setUint8(at, v ? 1 : 0);
        break;
    }
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

const INT_RANGE: Readonly<Record<string, readonly [number, number]>> = {
  uint8: [0, 0xff],
  int8: [-0x80, 0x7f],
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};
const BIG_RANGE: Readonly<Record<string, readonly [bigint, bigint]>> = {
  uint64: [0n, (1n << 64n) - 1n],
  int64: [-(1n << 63n), (1n << 63n) - 1n],
};

function bad(where: string, message: string): MmInvalidArgumentError {
  return new MmInvalidArgumentError(where, message);
}

/** Checks one scalar against its type (range, integer-ness, JS type). */
function checkScalar(where: string, type: string, v: unknown): void {
  const range = INT_RANGE[type];
  if (range !== undefined) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw bad(where, `${String(v)} is not a ${type}`);
    }
    return;
  }
  const big = BIG_RANGE[type];
  if (big !== undefined) {
    if (typeof v !== 'bigint' || v < big[0] || v > big[1])
      throw bad(where, `${String(v)} is not a ${type} (bigint)`);
    return;
  }
  if (type === 'float32' || type === 'float64') {
    if (typeof v !== 'number') throw bad(where, `${String(v)} is not a number`);
    return;
  }
  if (type === 'bool') {
    if (typeof v !== 'boolean') throw bad(where, `${String(v)} is not a boolean`);
    return;
  }
  if (type === 'string') {
    if (typeof v !== 'string') throw bad(where, `${String(v)} is not a string`);
    return;
  }
  throw bad(where, `unknown value type '${type}'`);
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || ArrayBuffer.isView(v);
}

function writeArray(
  out: ByteSink,
  where: string,
  itemType: GgufArrayItemType,
  items: unknown,
  depth: number,
): void {
  if (depth > 8) throw bad(where, 'arrays nest deeper than 8');
  if (!Object.hasOwn(GgufValueTypeId, itemType))
    throw bad(where, `unknown array item type '${String(itemType)}'`);
  if (!isArrayLike(items)) throw bad(where, 'array value is not an array');
  out.u32(GgufValueTypeId[itemType]);
  out.u64(BigInt(items.length));
  if (itemType === 'array') {
    for (let i = 0; i < items.length; i++) {
      const el = items[i] as { type?: unknown; itemType?: unknown; value?: unknown } | undefined;
      if (el === undefined || el === null || el.type !== 'array')
        throw bad(`${where}[${i}]`, 'expected a tagged array value');
      writeArray(out, `${where}[${i}]`, el.itemType as GgufArrayItemType, el.value, depth + 1);
    }
    return;
  }
  if (itemType === 'string') {
    for (let i = 0; i < items.length; i++) {
      const s = items[i];
      if (typeof s !== 'string') throw bad(`${where}[${i}]`, `${String(s)} is not a string`);
      out.string(s);
    }
    return;
  }
  for (let i = 0; i < items.length; i++) {
    const v = items[i];
    if (!isExactTypedArray(itemType, items)) checkScalar(`${where}[${i}]`, itemType, v);
    out.scalar(itemType, v as number | bigint | boolean);
  }
}

const TYPED_ARRAY_OF: Partial<Record<GgufArrayItemType, new (n: number) => ArrayBufferView>> = {
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  uint32: Uint32Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
  uint64: BigUint64Array,
  int64: BigInt64Array,
};

function isExactTypedArray(itemType: GgufArrayItemType, items: unknown): boolean {
  const ctor = TYPED_ARRAY_OF[itemType];
  return ctor !== undefined && items instanceof ctor;
}

function writeValue(out: ByteSink, key: string, value: GgufValue): void {
  const where = `metadata['${key}']`;
  if (value === null || typeof value !== 'object' || !Object.hasOwn(GgufValueTypeId, value.type)) {
    throw bad(where, 'expected a tagged value such as { type: "uint32", value: 1 }');
  }
  out.u32(GgufValueTypeId[value.type]);
  if (value.type === 'array') {
    writeArray(out, where, value.itemType, value.value, 1);
    return;
  }
  checkScalar(where, value.type, value.value);
  if (value.type === 'string') out.string(value.value);
  else out.scalar(value.type, value.value);
}

interface PreparedTensor {
  name: string;
  typeId: number;
  shape: readonly number[];
  bytes: Uint8Array;
  offset: number;
}

function tensorBytes(t: GgufTensorInput, i: number): Uint8Array {
  const where = `tensors[${i}] '${t.name}'`;
  if (!ArrayBuffer.isView(t.data)) throw bad(where, 'data is not a typed array');
  // the shape first: a Float32Array is converted row by row of it
  const expected = ggmlTensorBytes(GGML_TYPES[t.type], t.shape);
  if (expected === undefined) {
    throw bad(
      where,
      `ne[0] = ${t.shape[0]} is not a multiple of the ${t.type} block size ${GGML_TYPES[t.type].blockSize}`,
    );
  }
  let data: ArrayBufferView = t.data;
  if (t.data instanceof Float32Array && t.type === 'F16') data = f32ToF16(t.data);
  if (t.data instanceof Float32Array && t.type === 'BF16') data = f32ToBf16(t.data);
  if (t.data instanceof Float32Array && t.type === 'Q8_0') data = quantizeQ8_0(t.data);
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (BigInt(bytes.length) !== expected) {
    throw bad(
      where,
      `data has ${bytes.length} bytes but a ${t.type} tensor of shape [${t.shape.join(', ')}] needs ${expected}`,
    );
  }
  return bytes;
}

function metadataEntries(metadata: GgufWriteSpec['metadata']): [string, GgufValue][] {
  if (metadata === undefined) return [];
  if (metadata instanceof Map) return [...metadata.entries()];
  return Object.entries(metadata);
}

function padTo(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/**
 * Builds GGUF v3 files the way llama.cpp's gguf writer does: metadata, tensor table, padding
 * to the alignment, then each tensor's data padded to the alignment, in table order.
 */
export class GgufWriter {
  private readonly metadata: GgufMetadata = new Map();
  private readonly tensors: GgufTensorInput[] = [];
  private alignment: number | undefined;

  constructor(spec: GgufWriteSpec = {}) {
    for (const [k, v] of metadataEntries(spec.metadata)) this.set(k, v);
    for (const t of spec.tensors ?? []) this.addTensor(t);
    this.alignment = spec.alignment;
  }

  /** Sets a metadata value (replacing an earlier value of the same key in place). */
  set(key: string, value: GgufValue): this {
    if (typeof key !== 'string' || key.length === 0)
      throw bad('key', 'metadata keys must be non-empty strings');
    if (key.includes('\0')) throw bad('key', 'metadata keys must not contain NUL bytes');
    if (textEncoder.encode(key).length > GGUF_MAX_KEY_LENGTH)
      throw bad('key', `metadata keys are at most ${GGUF_MAX_KEY_LENGTH} bytes (GGUF spec)`);
    this.metadata.set(key, value);
    return this;
  }

  addTensor(tensor: GgufTensorInput): this {
    this.tensors.push(tensor);
    return this;
  }

  /** Validates everything and lays out the file: header bytes and tensor data with offsets. */
  private prepare(): { header: Uint8Array; tensors: PreparedTensor[]; alignment: number } {
    if (endianness() !== 'LE') {
      throw new MmError(
        ErrorCode.MM_GGUF_UNSUPPORTED,
        'writing GGUF on a big-endian host is not supported',
      );
    }
    const meta = new Map(this.metadata);
    const alignValue = meta.get('general.alignment');
    if (alignValue !== undefined && alignValue.type !== 'uint32') {
      throw bad("metadata['general.alignment']", 'must be of type uint32');
    }
    const alignment =
      this.alignment ?? (alignValue?.value as number | undefined) ?? GGUF_DEFAULT_ALIGNMENT;
    if (
      !Number.isInteger(alignment) ||
      alignment <= 0 ||
      alignment > 0xffffffff ||
      (alignment & (alignment - 1)) !== 0
    ) {
      throw bad('alignment', `${alignment} is not a power of 2`);
    }
    if (alignValue !== undefined && alignValue.value !== alignment) {
      throw bad('alignment', `${alignment} differs from general.alignment ${alignValue.value}`);
    }
    if (alignValue === undefined && alignment !== GGUF_DEFAULT_ALIGNMENT) {
      meta.set('general.alignment', { type: 'uint32', value: alignment });
    }

    const names = new Set<string>();
    const prepared: PreparedTensor[] = [];
    let offset = 0;
    this.tensors.forEach((t, i) => {
      const where = `tensors[${i}]`;
      if (typeof t.name !== 'string' || t.name.length === 0)
        throw bad(where, 'name must be a non-empty string');
      if (textEncoder.encode(t.name).length >= GGML_MAX_NAME) {
        throw bad(where, `name '${t.name}' is longer than ${GGML_MAX_NAME - 1} bytes`);
      }
      if (names.has(t.name)) throw bad(where, `duplicate tensor name '${t.name}'`);
      names.add(t.name);
      if (!isGgmlTypeName(t.type)) throw bad(where, `unknown ggml type '${String(t.type)}'`);
      if (!Array.isArray(t.shape) || t.shape.length < 1 || t.shape.length > GGML_MAX_DIMS) {
        throw bad(where, `shape must have 1 to ${GGML_MAX_DIMS} dimensions`);
      }
      for (const d of t.shape) {
        if (!Number.isSafeInteger(d) || d < 0)
          throw bad(where, `shape [${t.shape.join(', ')}] has an invalid dimension`);
      }
      const bytes = tensorBytes(t, i);
      prepared.push({ name: t.name, typeId: GGML_TYPES[t.type].id, shape: t.shape, bytes, offset });
      offset += padTo(bytes.length, alignment);
    });

    const out = new ByteSink();
    out.u32(GGUF_MAGIC);
    out.u32(GGUF_VERSION);
    out.u64(BigInt(prepared.length));
    out.u64(BigInt(meta.size));
    for (const [key, value] of meta) {
      out.string(key);
      writeValue(out, key, value);
    }
    for (const t of prepared) {
      out.string(t.name);
      out.u32(t.shape.length);
      for (const d of t.shape) out.i64(BigInt(d));
      out.i32(t.typeId);
      out.u64(BigInt(t.offset));
    }
    out.zeros(padTo(out.length, alignment) - out.length);
    return { header: out.result(), tensors: prepared, alignment };
  }

  /** The whole file in memory. */
  toBuffer(): Uint8Array {
    const { header, tensors, alignment } = this.prepare();
    let size = header.length;
    for (const t of tensors) size += padTo(t.bytes.length, alignment);
    const out = new Uint8Array(size);
    out.set(header, 0);
    for (const t of tensors) out.set(t.bytes, header.length + t.offset);
    return out;
  }

  /** Writes the file, streaming tensor data (the header is built in memory). */
  async write(path: string | URL): Promise<void> {
    const { header, tensors, alignment } = this.prepare();
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(path, 'w');
    } catch (error) {
      throw new MmError(
        ErrorCode.MM_IO,
        `${String(path)}: cannot open for writing: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    const writeAll = async (bytes: Uint8Array): Promise<void> => {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await fh.write(bytes, done, bytes.length - done);
        done += bytesWritten;
      }
    };
    try {
      await writeAll(header);
      const zeros = new Uint8Array(alignment);
      for (const t of tensors) {
        await writeAll(t.bytes);
        const pad = padTo(t.bytes.length, alignment) - t.bytes.length;
        if (pad > 0) await writeAll(zeros.subarray(0, pad));
      }
    } catch (error) {
      throw new MmError(
        ErrorCode.MM_IO,
        `${String(path)}: write failed: ${(error as Error).message}`,
        { cause: error },
      );
    } finally {
      await fh.close();
    }
  }
}

/** Builds a GGUF v3 file in memory. */
export function ggufToBuffer(spec: GgufWriteSpec): Uint8Array {
  return new GgufWriter(spec).toBuffer();
}

/** Writes a GGUF v3 file. */
export async function writeGguf(path: string | URL, spec: GgufWriteSpec): Promise<void> {
  await new GgufWriter(spec).write(path);
}
