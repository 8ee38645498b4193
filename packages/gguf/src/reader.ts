import { type FileHandle, open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ErrorCode, MmError } from '@mm/errors';
import { MmGgufFormatError, MmGgufUnsupportedError } from './errors.js';
import {
  GGML_MAX_DIMS,
  GGML_MAX_NAME,
  GGML_REMOVED_TYPES,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_ARRAY_ELEMENTS,
  GGUF_MAX_KEY_LENGTH,
  GGUF_MAX_STRING_LENGTH,
  GGUF_MAX_TENSOR_NAME_LENGTH,
  GGUF_SCALAR_SIZE,
  GGUF_VERSION,
  type GgmlTypeName,
  type GgufArrayItemType,
  type GgufArrayValue,
  type GgufFile,
  type GgufMetadata,
  type GgufTensorInfo,
  type GgufValue,
  type GgufValueType,
  ggmlTensorBytes,
  ggmlTypeFromId,
  ggufValueTypeFromId,
} from './types.js';

export interface ReadGgufOptions {
  /**
   * Also reject what llama.cpp's loader (gguf.cpp) rejects beyond the GGUF spec: arrays of
   * arrays, tensor names of 64 bytes or more, strings and arrays longer than 2^30, and tensor
   * data that is not laid out back to back (each padded to the alignment) in table order.
   * Default false. The spec's own bounds (keys up to 65535 bytes, tensor names up to 64 bytes,
   * at most 4 dimensions) are always enforced.
   */
  llamaCpp?: boolean;
  /** Largest metadata section (header, key/values, tensor table) that is read. Default 256 MiB. */
  maxMetadataBytes?: number;
  /** Deepest nesting of arrays (an array of scalars has depth 1). Default 8. */
  maxArrayDepth?: number;
  /** Bytes read from the file at a time. Default 1 MiB. */
  chunkSize?: number;
  signal?: AbortSignal;
}

export type GgufSource = string | URL | FileHandle;

const DEFAULT_MAX_METADATA = 256 * 1024 * 1024;
const DEFAULT_CHUNK = 1024 * 1024;
const DEFAULT_MAX_DEPTH = 8;
const INT64_MAX = (1n << 63n) - 1n;
const hostIsLittleEndian = endianness() === 'LE';
const utf8 = new TextDecoder('utf-8');

/** Smallest encoding of one key/value: key length (8), 1-byte key, type (4), 1-byte value. */
const MIN_KV_BYTES = 14;
/** Smallest tensor table entry: name length (8), n_dims (4), type (4), offset (8). */
const MIN_TENSOR_INFO_BYTES = 24;

/**
 * A window onto the file. The parser reads from `buf` with plain sync calls after making sure
 * the bytes are there; when they are not it yields the number of bytes it needs and the driver
 * refills the window (async for files, never for in-memory buffers).
 */
class Cursor {
  buf: Uint8Array = new Uint8Array(0);
  view: DataView = new DataView(this.buf.buffer);
  /** File offset of buf[0]. */
  bufStart = 0;
  /** Current file offset. */
  pos = 0;

  constructor(
    readonly size: number,
    readonly maxMetadataBytes: number,
    readonly label: string | undefined,
  ) {}

  setBuffer(buf: Uint8Array, start: number): void {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.bufStart = start;
  }

  /** True when n bytes from pos are in the window. */
  has(n: number): boolean {
    return this.pos - this.bufStart + n <= this.buf.length;
  }

  /** Throws when n bytes from pos are past the end of the file or the metadata limit. */
  check(n: number, what: string): void {
    if (this.pos + n > this.size) {
      throw this.error(
        `truncated: ${what} needs ${n} bytes but the file ends at ${this.size}`,
        this.pos,
      );
    }
    if (this.pos + n > this.maxMetadataBytes) {
      throw new MmGgufUnsupportedError(
        `${what} ends past ${this.maxMetadataBytes} bytes, the limit on the metadata section (maxMetadataBytes)`,
        this.pos,
        this.label === undefined ? {} : { file: this.label },
      );
    }
  }

  remaining(): number {
    return this.size - this.pos;
  }

  error(message: string, offset: number): MmGgufFormatError {
    return new MmGgufFormatError(
      message,
      offset,
      this.label === undefined ? {} : { file: this.label },
    );
  }

  unsupported(message: string, offset: number): MmGgufUnsupportedError {
    return new MmGgufUnsupportedError(
      message,
      offset,
      this.label === undefined ? {} : { file: this.label },
    );
  }

  private at(n: number): number {
    const i = this.pos - this.bufStart;
    this.pos += n;
    return i;
  }

  u8(): number {
    return this.buf[this.at(1)]!;
  }
  u32(): number {
    return this.view.getUint32(this.at(4), true);
  }
  i32(): number {
    return this.view.getInt32(this.at(4), true);
  }
  u64(): bigint {
    return this.view.getBigUint64(this.at(8), true);
  }
  i64(): bigint {
    return this.view.getBigInt64(this.at(8), true);
  }
  bytes(n: number): Uint8Array {
    const i = this.at(n);
    return this.buf.subarray(i, i + n);
  }

  scalar(type: Exclude<GgufValueType, 'array' | 'string'>): GgufValue {
    switch (type) {
      case 'uint8':
        return { type, value: this.u8() };
      case 'int8':
        return { type, value: this.view.getInt8(this.at(1)) };
      case 'uint16':
        return { type, value: this.view.getUint16(this.at(2), true) };
      case 'int16':
        return { type, value: this.view.getInt16(this.at(2), true) };
      case 'uint32':
        return { type, value: this.u32() };
      case 'int32':
        return { type, value: this.i32() };
      case 'float32':
        return { type, value: this.view.getFloat32(this.at(4), true) };
      case 'float64':
        return { type, value: this.view.getFloat64(this.at(8), true) };
      case 'uint64':
        return { type, value: this.u64() };
      case 'int64':
        return { type, value: this.i64() };
      case 'bool':
        return { type, value: this.u8() !== 0 };
    }
  }
}

function decodeString(bytes: Uint8Array): string {
  if (bytes.length <= 32) {
    let ascii = true;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode(...bytes);
  }
  return utf8.decode(bytes);
}

/** Copies `count` little-endian numbers into a fresh typed array. */
function numericArray(
  itemType: Exclude<GgufArrayItemType, 'bool' | 'string' | 'array'>,
  bytes: Uint8Array,
  count: number,
): GgufArrayValue {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  const ab = copy.buffer;
  if (!hostIsLittleEndian) {
    // Swap each element in place to host order.
    const size = GGUF_SCALAR_SIZE[itemType];
    for (let i = 0; i < copy.length; i += size) copy.subarray(i, i + size).reverse();
  }
  switch (itemType) {
    case 'uint8':
      return { type: 'array', itemType, value: copy };
    case 'int8':
      return { type: 'array', itemType, value: new Int8Array(ab, 0, count) };
    case 'uint16':
      return { type: 'array', itemType, value: new Uint16Array(ab, 0, count) };
    case 'int16':
      return { type: 'array', itemType, value: new Int16Array(ab, 0, count) };
    case 'uint32':
      return { type: 'array', itemType, value: new Uint32Array(ab, 0, count) };
    case 'int32':
      return { type: 'array', itemType, value: new Int32Array(ab, 0, count) };
    case 'float32':
      return { type: 'array', itemType, value: new Float32Array(ab, 0, count) };
    case 'float64':
      return { type: 'array', itemType, value: new Float64Array(ab, 0, count) };
    case 'uint64':
      return { type: 'array', itemType, value: new BigUint64Array(ab, 0, count) };
    case 'int64':
      return { type: 'array', itemType, value: new BigInt64Array(ab, 0, count) };
  }
}

interface ParseLimits {
  llamaCpp: boolean;
  maxArrayDepth: number;
}

/** The bound on string values: gguf.cpp's in llamaCpp mode, else the file size alone. */
function stringLimit(limits: ParseLimits): StringLimit | undefined {
  return limits.llamaCpp ? { bytes: GGUF_MAX_STRING_LENGTH, by: 'llama.cpp' } : undefined;
}

/** A bound on a string's length, and whose bound it is (for messages). */
interface StringLimit {
  bytes: number;
  by: string;
}

/** Reads a u64-length-prefixed string, within `limit` (checked before anything is read). */
function* readString(
  c: Cursor,
  what: string,
  limit?: StringLimit,
): Generator<number, string, void> {
  if (!c.has(8)) {
    c.check(8, `${what} length`);
    yield 8;
  }
  const at = c.pos;
  const len = c.u64();
  if (limit !== undefined && len > BigInt(limit.bytes)) {
    throw c.error(
      `${what} is ${len} bytes long, more than the ${limit.bytes} ${limit.by} allows`,
      at,
    );
  }
  if (len > BigInt(c.remaining())) {
    throw c.error(
      `${what} has length ${len} but only ${c.remaining()} bytes remain in the file`,
      at,
    );
  }
  const n = Number(len);
  if (!c.has(n)) {
    c.check(n, what);
    yield n;
  }
  return decodeString(c.bytes(n));
}

/** Reads a value type id and maps it, or throws for an unknown id. */
function readType(c: Cursor, what: string): GgufValueType {
  const at = c.pos;
  const id = c.u32();
  const type = ggufValueTypeFromId(id);
  if (type === undefined) throw c.error(`${what} has unknown value type ${id}`, at);
  return type;
}

/** Minimum encoded bytes of one array element of `type`. */
function minElementBytes(type: GgufValueType): number {
  if (type === 'string') return 8;
  if (type === 'array') return 12;
  return GGUF_SCALAR_SIZE[type];
}

/** Reads an array body (item type, count, items); `depth` is this array's nesting depth. */
function* readArray(
  c: Cursor,
  what: string,
  depth: number,
  limits: ParseLimits,
): Generator<number, GgufArrayValue, void> {
  if (depth > limits.maxArrayDepth) {
    throw c.error(`${what} nests arrays deeper than ${limits.maxArrayDepth}`, c.pos);
  }
  if (!c.has(12)) {
    c.check(12, `${what} item type and count`);
    yield 12;
  }
  const typeAt = c.pos;
  const itemType = readType(c, `${what} item`);
  if (itemType === 'array' && limits.llamaCpp) {
    throw c.error(`${what} is an array of arrays, which llama.cpp rejects`, typeAt);
  }
  const countAt = c.pos;
  const count = c.u64();
  if (limits.llamaCpp && count > BigInt(GGUF_MAX_ARRAY_ELEMENTS)) {
    throw c.error(
      `${what} has ${count} elements, more than llama.cpp's limit of ${GGUF_MAX_ARRAY_ELEMENTS}`,
      countAt,
    );
  }
  const min = minElementBytes(itemType);
  if (count > BigInt(Math.floor(c.remaining() / min))) {
    throw c.error(
      `${what} has ${count} elements of type ${itemType} but only ${c.remaining()} bytes remain in the file`,
      countAt,
    );
  }
  const n = Number(count);
  switch (itemType) {
    case 'string': {
      const out: string[] = [];
      for (let i = 0; i < n; i++) {
        // Fast path: length and bytes already in the window.
        if (c.has(8)) {
          const at = c.pos;
          const len = c.u64();
          if (len <= BigInt(c.buf.length - (c.pos - c.bufStart))) {
            out.push(decodeString(c.bytes(Number(len))));
            continue;
          }
          c.pos = at;
        }
        out.push(yield* readString(c, `${what} element ${i}`, stringLimit(limits)));
      }
      return { type: 'array', itemType, value: out };
    }
    case 'array': {
      const out: GgufArrayValue[] = [];
      for (let i = 0; i < n; i++)
        out.push(yield* readArray(c, `${what} element ${i}`, depth + 1, limits));
      return { type: 'array', itemType, value: out };
    }
    case 'bool': {
      if (!c.has(n)) {
        c.check(n, `${what} data`);
        yield n;
      }
      const bytes = c.bytes(n);
      const out: boolean[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes[i] !== 0;
      return { type: 'array', itemType, value: out };
    }
    default: {
      const bytes = n * GGUF_SCALAR_SIZE[itemType];
      if (!c.has(bytes)) {
        c.check(bytes, `${what} data`);
        yield bytes;
      }
      return numericArray(itemType, c.bytes(bytes), n);
    }
  }
}

function* readValue(
  c: Cursor,
  type: GgufValueType,
  what: string,
  limits: ParseLimits,
): Generator<number, GgufValue, void> {
  if (type === 'string') return { type, value: yield* readString(c, what, stringLimit(limits)) };
  if (type === 'array') return yield* readArray(c, what, 1, limits);
  const size = GGUF_SCALAR_SIZE[type];
  if (!c.has(size)) {
    c.check(size, what);
    yield size;
  }
  return c.scalar(type);
}

function quote(name: string): string {
  const shown = name.length > 80 ? `${name.slice(0, 80)}...` : name;
  return JSON.stringify(shown).replace(/^"|"$/g, "'");
}

/** The GGUF parser: yields the number of bytes it needs next when they are not buffered. */
function* parseGguf(c: Cursor, limits: ParseLimits): Generator<number, GgufFile, void> {
  // Header
  if (c.size < 4) c.check(4, 'magic');
  const head = Math.min(24, c.size);
  if (!c.has(head)) {
    c.check(head, 'header');
    yield head;
  }
  if (c.view.getUint32(0, true) !== GGUF_MAGIC) {
    const magic = c.buf.subarray(0, 4);
    const shown = Array.from(magic, (b) =>
      b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '?',
    ).join('');
    throw c.error(`bad magic '${shown}', expected 'GGUF'`, 0);
  }
  c.pos = 4;
  c.check(20, 'header');
  const version = c.u32();
  if (version === 0) throw c.error('version 0', 4);
  if ((version & 0xffff) === 0) {
    throw c.unsupported(
      `version field 0x${version.toString(16).padStart(8, '0')} looks byte-swapped: big-endian GGUF files are not supported`,
      4,
    );
  }
  if (version === 1) throw c.unsupported('GGUF v1 is not supported (only v2 and v3)', 4);
  if (version > GGUF_VERSION)
    throw c.unsupported(`GGUF version ${version} is newer than ${GGUF_VERSION}`, 4);

  const nTensorsRaw = c.u64();
  const nKvRaw = c.u64();
  // Every key/value and every tensor entry needs bytes: bound the counts by what is left.
  const left = c.remaining();
  if (nKvRaw > BigInt(Math.floor(left / MIN_KV_BYTES))) {
    throw c.error(
      `key/value count ${nKvRaw} is more than the ${left} remaining bytes can hold`,
      16,
    );
  }
  if (nTensorsRaw > BigInt(Math.floor(left / MIN_TENSOR_INFO_BYTES))) {
    throw c.error(
      `tensor count ${nTensorsRaw} is more than the ${left} remaining bytes can hold`,
      8,
    );
  }
  const nKv = Number(nKvRaw);
  const nTensors = Number(nTensorsRaw);

  // Key/value pairs
  const metadata: GgufMetadata = new Map();
  const metadataOffsets = new Map<string, number>();
  for (let i = 0; i < nKv; i++) {
    const kvAt = c.pos;
    const key = yield* readString(c, `key ${i}`, {
      bytes: GGUF_MAX_KEY_LENGTH,
      by: 'the GGUF spec',
    });
    if (key.length === 0) throw c.error(`key ${i} is empty`, kvAt);
    // the spec's keys are ASCII names; a NUL would make llama.cpp (C strings) see another key
    if (key.includes('\0')) throw c.error(`key ${i} ${quote(key)} contains a NUL byte`, kvAt);
    if (metadata.has(key)) throw c.error(`key ${i} ${quote(key)} is a duplicate`, kvAt);
    const what = `key ${i} ${quote(key)}`;
    if (!c.has(4)) {
      c.check(4, `${what} type`);
      yield 4;
    }
    const type = readType(c, what);
    metadata.set(key, yield* readValue(c, type, `${what} value`, limits));
    metadataOffsets.set(key, kvAt);
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const alignValue = metadata.get('general.alignment');
  if (alignValue !== undefined) {
    const at = metadataOffsets.get('general.alignment')!;
    if (alignValue.type !== 'uint32') {
      throw c.error(`general.alignment must be of type uint32 but is ${alignValue.type}`, at);
    }
    alignment = alignValue.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
      throw c.error(`general.alignment ${alignment} is not a power of 2`, at);
    }
  }

  // Tensor table
  interface RawTensor {
    index: number;
    name: string;
    shape: bigint[];
    type: GgmlTypeName;
    typeId: number;
    nElements: bigint;
    byteSize: bigint;
    offset: bigint;
    infoOffset: number;
  }
  const raw: RawTensor[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const infoAt = c.pos;
    const name = yield* readString(
      c,
      `tensor ${i} name`,
      limits.llamaCpp
        ? { bytes: GGML_MAX_NAME - 1, by: 'llama.cpp (GGML_MAX_NAME with the NUL)' }
        : { bytes: GGUF_MAX_TENSOR_NAME_LENGTH, by: 'the GGUF spec' },
    );
    const what = `tensor ${i} ${quote(name)}`;
    if (names.has(name)) throw c.error(`${what} is a duplicate name`, infoAt);
    names.add(name);
    if (!c.has(4)) {
      c.check(4, `${what} n_dims`);
      yield 4;
    }
    const dimsAt = c.pos;
    const nDims = c.u32();
    if (nDims > GGML_MAX_DIMS)
      throw c.error(`${what} has ${nDims} dimensions, more than ${GGML_MAX_DIMS}`, dimsAt);
    const rest = 8 * nDims + 4 + 8;
    if (!c.has(rest)) {
      c.check(rest, `${what} shape, type and offset`);
      yield rest;
    }
    const ne: bigint[] = [];
    for (let d = 0; d < nDims; d++) {
      const at = c.pos;
      const v = c.i64();
      if (v < 0n) throw c.error(`${what} dimension ${d} is negative (${v})`, at);
      ne.push(v);
    }
    let nElements = 1n;
    for (const v of ne) nElements *= v;
    if (nElements > 0n) {
      let partial = 1n;
      for (const v of ne) {
        partial *= v;
        if (partial >= INT64_MAX) {
          throw c.error(`${what} shape [${ne.join(', ')}] has 2^63 or more elements`, dimsAt + 4);
        }
      }
    }
    const typeAt = c.pos;
    const typeId = c.i32();
    const info = ggmlTypeFromId(typeId);
    if (info === undefined) {
      const removed = GGML_REMOVED_TYPES[typeId];
      if (removed !== undefined) {
        throw c.unsupported(
          `${what} has ggml type ${typeId} (${removed}), which ggml no longer supports`,
          typeAt,
        );
      }
      throw c.error(`${what} has unknown ggml type ${typeId}`, typeAt);
    }
    const byteSize = ggmlTensorBytes(info, ne);
    if (byteSize === undefined) {
      throw c.error(
        `${what} of type ${info.name} has ${ne[0]} elements per row, not a multiple of the block size ${info.blockSize}`,
        dimsAt + 4,
      );
    }
    const offsetAt = c.pos;
    const offset = c.u64();
    if (offset % BigInt(alignment) !== 0n) {
      throw c.error(
        `${what} data offset ${offset} is not a multiple of the alignment ${alignment}`,
        offsetAt,
      );
    }
    raw.push({
      index: i,
      name,
      shape: ne,
      type: info.name as GgmlTypeName,
      typeId,
      nElements,
      byteSize,
      offset,
      infoOffset: infoAt,
    });
  }

  // Data section: starts at the next multiple of the alignment (llama.cpp pads only when there
  // are tensors).
  const tableEnd = c.pos;
  const dataOffset = nTensors > 0 ? Math.ceil(tableEnd / alignment) * alignment : tableEnd;
  if (dataOffset > c.size) {
    throw c.error(
      `truncated: the data section starts at ${dataOffset} but the file ends at ${c.size}`,
      tableEnd,
    );
  }
  const dataSize = BigInt(c.size - dataOffset);
  const tensors: GgufTensorInfo[] = [];
  let expected = 0n;
  for (const r of raw) {
    const what = `tensor ${r.index} ${quote(r.name)}`;
    const start = BigInt(dataOffset) + r.offset;
    const end = start + r.byteSize;
    if (r.offset + r.byteSize > dataSize) {
      throw c.error(
        `${what}: data [${start}..${end}) ends beyond the file (size ${c.size})`,
        r.infoOffset,
      );
    }
    if (r.shape.some((v) => v > BigInt(Number.MAX_SAFE_INTEGER))) {
      throw c.unsupported(
        `${what} has a dimension beyond 2^53 (shape [${r.shape.join(', ')}])`,
        r.infoOffset,
      );
    }
    if (limits.llamaCpp) {
      if (r.offset !== expected) {
        throw c.error(
          `${what}: data offset ${r.offset} should be ${expected} (llama.cpp lays tensors out back to back)`,
          r.infoOffset,
        );
      }
      const a = BigInt(alignment);
      expected += ((r.byteSize + a - 1n) / a) * a;
    }
    tensors.push({
      index: r.index,
      name: r.name,
      shape: r.shape.map(Number),
      type: r.type,
      typeId: r.typeId,
      nElements: Number(r.nElements),
      byteSize: Number(r.byteSize),
      offset: Number(r.offset),
      absoluteOffset: Number(start),
      infoOffset: r.infoOffset,
    });
  }

  return {
    version,
    metadata,
    metadataOffsets,
    tensors,
    alignment,
    dataOffset,
    fileSize: c.size,
  };
}

function limitsOf(opts: ReadGgufOptions): ParseLimits {
  return {
    llamaCpp: opts.llamaCpp ?? false,
    maxArrayDepth: opts.maxArrayDepth ?? DEFAULT_MAX_DEPTH,
  };
}

/**
 * Parses a whole GGUF file held in memory. Synchronous; throws MmGgufFormatError (code
 * MM_GGUF_INVALID) or MmGgufUnsupportedError (MM_GGUF_UNSUPPORTED) for bad input.
 */
export function readGgufFromBuffer(buf: Uint8Array, opts: ReadGgufOptions = {}): GgufFile {
  const limit = opts.maxMetadataBytes ?? DEFAULT_MAX_METADATA;
  const c = new Cursor(buf.length, limit, undefined);
  // The window stops at the limit, so a read past it reaches Cursor.check, which throws.
  c.setBuffer(buf.subarray(0, Math.min(buf.length, limit)), 0);
  const r = parseGguf(c, limitsOf(opts)).next();
  if (!r.done)
    throw new MmError(ErrorCode.MM_INTERNAL, 'GGUF parser asked for bytes of an in-memory buffer');
  return r.value;
}

function labelOf(source: GgufSource): string | undefined {
  if (typeof source === 'string') return source;
  if (source instanceof URL)
    return source.protocol === 'file:' ? fileURLToPath(source) : source.href;
  return undefined;
}

/** Opens a path for reading, mapping failures to MM_FILE_NOT_FOUND / MM_IO. */
export async function openForRead(path: string | URL): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const label = labelOf(path);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new MmError(ErrorCode.MM_FILE_NOT_FOUND, `${label}: no such file`, {
        cause: error,
        details: { file: label },
      });
    }
    throw new MmError(ErrorCode.MM_IO, `${label}: cannot open: ${(error as Error).message}`, {
      cause: error,
      details: { file: label },
    });
  }
}

/** Reads exactly `length` bytes at `position` into `target`, or throws MM_IO. */
async function readExactly(
  fh: FileHandle,
  target: Uint8Array,
  offset: number,
  length: number,
  position: number,
  label: string | undefined,
): Promise<void> {
  let done = 0;
  while (done < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(target, offset + done, length - done, position + done));
    } catch (error) {
      throw new MmError(
        ErrorCode.MM_IO,
        `${label ?? 'GGUF file'}: read failed: ${(error as Error).message}`,
        {
          cause: error,
          details: { file: label },
        },
      );
    }
    if (bytesRead === 0) {
      throw new MmError(
        ErrorCode.MM_IO,
        `${label ?? 'GGUF file'}: the file ended at ${position + done} while reading (did it shrink?)`,
        { details: { file: label } },
      );
    }
    done += bytesRead;
  }
}

async function withHandle<T>(
  source: GgufSource,
  fn: (fh: FileHandle, label: string | undefined) => Promise<T>,
): Promise<T> {
  const label = labelOf(source);
  if (typeof source !== 'string' && !(source instanceof URL)) return fn(source, label);
  const fh = await openForRead(source);
  try {
    return await fn(fh, label);
  } finally {
    await fh.close();
  }
}

async function sizeOf(fh: FileHandle, label: string | undefined): Promise<number> {
  try {
    return (await fh.stat()).size;
  } catch (error) {
    throw new MmError(
      ErrorCode.MM_IO,
      `${label ?? 'GGUF file'}: stat failed: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

/**
 * Reads the metadata and tensor table of a GGUF file (path, file: URL or an open FileHandle,
 * which is left open). Reads in chunks and only the metadata section; tensor data is not read.
 *
 * Errors: MM_FILE_NOT_FOUND, MM_IO, MM_GGUF_INVALID (MmGgufFormatError), MM_GGUF_UNSUPPORTED.
 */
export async function readGguf(source: GgufSource, opts: ReadGgufOptions = {}): Promise<GgufFile> {
  opts.signal?.throwIfAborted();
  return withHandle(source, async (fh, label) => {
    const size = await sizeOf(fh, label);
    const chunk = Math.max(64, opts.chunkSize ?? DEFAULT_CHUNK);
    const limit = opts.maxMetadataBytes ?? DEFAULT_MAX_METADATA;
    const c = new Cursor(size, limit, label);
    const gen = parseGguf(c, limitsOf(opts));
    let r = gen.next();
    while (!r.done) {
      opts.signal?.throwIfAborted();
      // Refill: keep what is buffered from pos on, read up to a chunk (or what is needed) more.
      const need = r.value;
      const start = c.pos;
      const want = Math.min(Math.max(need, chunk), size - start, limit - start);
      const kept = Math.max(0, c.bufStart + c.buf.length - start);
      const next = new Uint8Array(want);
      if (kept > 0) next.set(c.buf.subarray(start - c.bufStart, start - c.bufStart + kept));
      await readExactly(fh, next, kept, want - kept, start + kept, label);
      c.setBuffer(next, start);
      r = gen.next();
    }
    return r.value;
  });
}

/**
 * Reads the bytes of one tensor's data (as stored: little-endian, possibly quantized blocks).
 * `file` is what readGguf returned for the same source.
 */
export async function readTensorData(
  source: GgufSource | Uint8Array,
  file: GgufFile,
  tensor: GgufTensorInfo | string,
): Promise<Uint8Array> {
  const info = typeof tensor === 'string' ? file.tensors.find((t) => t.name === tensor) : tensor;
  if (info === undefined) {
    throw new MmError(
      ErrorCode.MM_INVALID_ARGUMENT,
      `tensor ${quote(String(tensor))} is not in the file`,
    );
  }
  if (source instanceof Uint8Array) {
    return source.slice(info.absoluteOffset, info.absoluteOffset + info.byteSize);
  }
  return withHandle(source, async (fh, label) => {
    const out = new Uint8Array(info.byteSize);
    await readExactly(fh, out, 0, info.byteSize, info.absoluteOffset, label);
    return out;
  });
}
