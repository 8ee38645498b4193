import { MmGgufFormatError } from './errors.js';
import type {
  GgufArrayItemType,
  GgufArrayOf,
  GgufArrayValue,
  GgufFile,
  GgufMetadata,
  GgufValue,
} from './types.js';

/** A parsed file (errors then carry the key's file offset) or just its metadata. */
export type GgufMetadataSource = GgufFile | GgufMetadata;

function parts(src: GgufMetadataSource): {
  md: GgufMetadata;
  offsets: ReadonlyMap<string, number> | undefined;
} {
  if (src instanceof Map) return { md: src, offsets: undefined };
  return { md: src.metadata, offsets: src.metadataOffsets };
}

function describe(v: GgufValue): string {
  return v.type === 'array' ? `array of ${v.itemType}` : v.type;
}

function lookup(
  src: GgufMetadataSource,
  key: string,
): { value: GgufValue | undefined; offset: number } {
  const { md, offsets } = parts(src);
  return { value: md.get(key), offset: offsets?.get(key) ?? -1 };
}

function wrongType(key: string, v: GgufValue, expected: string, offset: number): MmGgufFormatError {
  return new MmGgufFormatError(
    `key '${key}' has type ${describe(v)}, expected ${expected}`,
    offset,
  );
}

function missing(key: string): MmGgufFormatError {
  return new MmGgufFormatError(`key '${key}' is missing`, -1);
}

/** The tagged value of `key`, or undefined. */
export function getValue(src: GgufMetadataSource, key: string): GgufValue | undefined {
  return parts(src).md.get(key);
}

export function hasKey(src: GgufMetadataSource, key: string): boolean {
  return parts(src).md.has(key);
}

/**
 * The string value of `key`. Without a fallback a missing key throws; a value of another type
 * always throws MmGgufFormatError (MM_GGUF_INVALID).
 */
export function getString(src: GgufMetadataSource, key: string): string;
export function getString<T>(src: GgufMetadataSource, key: string, fallback: T): string | T;
export function getString<T>(src: GgufMetadataSource, key: string, ...fallback: [T?]): string | T {
  const { value, offset } = lookup(src, key);
  if (value === undefined) {
    if (fallback.length > 0) return fallback[0] as T;
    throw missing(key);
  }
  if (value.type !== 'string') throw wrongType(key, value, 'string', offset);
  return value.value;
}

function integerOf(key: string, value: GgufValue, offset: number, unsigned: boolean): number {
  const expected = unsigned ? 'an unsigned integer' : 'an integer';
  let n: number | bigint;
  switch (value.type) {
    case 'uint8':
    case 'uint16':
    case 'uint32':
    case 'int8':
    case 'int16':
    case 'int32':
    case 'uint64':
    case 'int64':
      n = value.value;
      break;
    default:
      throw wrongType(key, value, expected, offset);
  }
  if (unsigned && n < 0) {
    throw new MmGgufFormatError(`key '${key}' is ${n}, expected ${expected}`, offset);
  }
  if (typeof n === 'bigint') {
    if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new MmGgufFormatError(`key '${key}' is ${n}, beyond 2^53`, offset);
    }
    return Number(n);
  }
  return n;
}

/** An integer value of any integer type that is >= 0 and exact as a JS number. */
export function getUint(src: GgufMetadataSource, key: string): number;
export function getUint<T>(src: GgufMetadataSource, key: string, fallback: T): number | T;
export function getUint<T>(src: GgufMetadataSource, key: string, ...fallback: [T?]): number | T {
  const { value, offset } = lookup(src, key);
  if (value === undefined) {
    if (fallback.length > 0) return fallback[0] as T;
    throw missing(key);
  }
  return integerOf(key, value, offset, true);
}

/** An integer value of any integer type that is exact as a JS number. */
export function getInt(src: GgufMetadataSource, key: string): number;
export function getInt<T>(src: GgufMetadataSource, key: string, fallback: T): number | T;
export function getInt<T>(src: GgufMetadataSource, key: string, ...fallback: [T?]): number | T {
  const { value, offset } = lookup(src, key);
  if (value === undefined) {
    if (fallback.length > 0) return fallback[0] as T;
    throw missing(key);
  }
  return integerOf(key, value, offset, false);
}

/** A float32 or float64 value. */
export function getFloat(src: GgufMetadataSource, key: string): number;
export function getFloat<T>(src: GgufMetadataSource, key: string, fallback: T): number | T;
export function getFloat<T>(src: GgufMetadataSource, key: string, ...fallback: [T?]): number | T {
  const { value, offset } = lookup(src, key);
  if (value === undefined) {
    if (fallback.length > 0) return fallback[0] as T;
    throw missing(key);
  }
  if (value.type !== 'float32' && value.type !== 'float64')
    throw wrongType(key, value, 'a float', offset);
  return value.value;
}

export function getBool(src: GgufMetadataSource, key: string): boolean;
export function getBool<T>(src: GgufMetadataSource, key: string, fallback: T): boolean | T;
export function getBool<T>(src: GgufMetadataSource, key: string, ...fallback: [T?]): boolean | T {
  const { value, offset } = lookup(src, key);
  if (value === undefined) {
    if (fallback.length > 0) return fallback[0] as T;
    throw missing(key);
  }
  if (value.type !== 'bool') throw wrongType(key, value, 'bool', offset);
  return value.value;
}

/**
 * An array value: with `itemType`, its elements (typed array, string[], boolean[]...) after
 * checking the item type; without, the tagged array. A missing key throws.
 */
export function getArray<T extends GgufArrayItemType>(
  src: GgufMetadataSource,
  key: string,
  itemType: T,
): GgufArrayOf<T>;
export function getArray(src: GgufMetadataSource, key: string): GgufArrayValue;
export function getArray(
  src: GgufMetadataSource,
  key: string,
  itemType?: GgufArrayItemType,
): unknown {
  const { value, offset } = lookup(src, key);
  if (value === undefined) throw missing(key);
  if (value.type !== 'array')
    throw wrongType(key, value, itemType ? `array of ${itemType}` : 'an array', offset);
  if (itemType === undefined) return value;
  if (value.itemType !== itemType) throw wrongType(key, value, `array of ${itemType}`, offset);
  return value.value;
}
