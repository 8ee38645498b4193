/**
 * GGUF value types, the ggml tensor type table and llama.cpp's file types, taken from the
 * pinned llama.cpp (80fb11ac73e66d89eae2c6a91d8a77428fa733ed): `ggml/include/ggml.h`
 * (`enum ggml_type`), `ggml/src/ggml.c` (`type_traits`: blck_size, type_size, with the block
 * struct sizes of `ggml/src/ggml-common.h`), `ggml/include/gguf.h` (`enum gguf_type`) and
 * `include/llama.h` (`enum llama_ftype`).
 */

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** GGML_MAX_DIMS */
export const GGML_MAX_DIMS = 4;
/** GGML_MAX_NAME: llama.cpp rejects tensor names of this length or longer. */
export const GGML_MAX_NAME = 64;
/** GGUF spec: a metadata key is at most 2^16 - 1 bytes long. */
export const GGUF_MAX_KEY_LENGTH = 65535;
/** GGUF spec: a tensor name is at most 64 bytes long (llama.cpp: less than GGML_MAX_NAME). */
export const GGUF_MAX_TENSOR_NAME_LENGTH = 64;
/** gguf.cpp's GGUF_MAX_STRING_LENGTH and GGUF_MAX_ARRAY_ELEMENTS: llama.cpp reads no more. */
export const GGUF_MAX_STRING_LENGTH = 1024 * 1024 * 1024;
export const GGUF_MAX_ARRAY_ELEMENTS = 1024 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Metadata values

/** `enum gguf_type`: the id written in the file for each value type. */
export const GgufValueTypeId = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

export type GgufValueType = keyof typeof GgufValueTypeId;
export type GgufScalarType = Exclude<GgufValueType, 'array'>;

const valueTypeById: readonly GgufValueType[] = Object.entries(GgufValueTypeId)
  .sort((a, b) => a[1] - b[1])
  .map(([name]) => name as GgufValueType);

/** The value type for a type id read from a file, or undefined for an unknown id. */
export function ggufValueTypeFromId(id: number): GgufValueType | undefined {
  return Number.isInteger(id) && id >= 0 ? valueTypeById[id] : undefined;
}

/** Bytes per element of the fixed-size value types (string and array have no fixed size). */
export const GGUF_SCALAR_SIZE: Readonly<Record<Exclude<GgufScalarType, 'string'>, number>> = {
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  bool: 1,
  uint64: 8,
  int64: 8,
  float64: 8,
};

export type GgufNumberType =
  | 'uint8'
  | 'int8'
  | 'uint16'
  | 'int16'
  | 'uint32'
  | 'int32'
  | 'float32'
  | 'float64';
export type GgufBigIntType = 'uint64' | 'int64';

/** A single (non-array) metadata value, tagged with its GGUF type. */
export type GgufScalarValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string };

/**
 * An array value. Numeric arrays are typed arrays (little-endian data copied out of the file);
 * an array of arrays (allowed by the GGUF spec, rejected by llama.cpp) holds tagged arrays.
 */
export type GgufArrayValue =
  | { type: 'array'; itemType: 'uint8'; value: Uint8Array }
  | { type: 'array'; itemType: 'int8'; value: Int8Array }
  | { type: 'array'; itemType: 'uint16'; value: Uint16Array }
  | { type: 'array'; itemType: 'int16'; value: Int16Array }
  | { type: 'array'; itemType: 'uint32'; value: Uint32Array }
  | { type: 'array'; itemType: 'int32'; value: Int32Array }
  | { type: 'array'; itemType: 'float32'; value: Float32Array }
  | { type: 'array'; itemType: 'float64'; value: Float64Array }
  | { type: 'array'; itemType: 'uint64'; value: BigUint64Array }
  | { type: 'array'; itemType: 'int64'; value: BigInt64Array }
  | { type: 'array'; itemType: 'bool'; value: boolean[] }
  | { type: 'array'; itemType: 'string'; value: string[] }
  | { type: 'array'; itemType: 'array'; value: GgufArrayValue[] };

export type GgufValue = GgufScalarValue | GgufArrayValue;
export type GgufArrayItemType = GgufArrayValue['itemType'];
/** The JS type of `value` of an array of `T`. */
export type GgufArrayOf<T extends GgufArrayItemType> = Extract<
  GgufArrayValue,
  { itemType: T }
>['value'];

/** Metadata in file order. A Map, so that keys such as `__proto__` are plain keys. */
export type GgufMetadata = Map<string, GgufValue>;

/** Builders for tagged values: `gv.uint32(4)`, `gv.array('string', ['a', 'b'])`. */
export const gv = {
  uint8: (value: number): GgufValue => ({ type: 'uint8', value }),
  int8: (value: number): GgufValue => ({ type: 'int8', value }),
  uint16: (value: number): GgufValue => ({ type: 'uint16', value }),
  int16: (value: number): GgufValue => ({ type: 'int16', value }),
  uint32: (value: number): GgufValue => ({ type: 'uint32', value }),
  int32: (value: number): GgufValue => ({ type: 'int32', value }),
  float32: (value: number): GgufValue => ({ type: 'float32', value }),
  float64: (value: number): GgufValue => ({ type: 'float64', value }),
  uint64: (value: bigint | number): GgufValue => ({ type: 'uint64', value: BigInt(value) }),
  int64: (value: bigint | number): GgufValue => ({ type: 'int64', value: BigInt(value) }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  string: (value: string): GgufValue => ({ type: 'string', value }),
  array: <T extends GgufArrayItemType>(itemType: T, value: GgufArrayOf<T>): GgufValue =>
    ({ type: 'array', itemType, value }) as GgufArrayValue,
} as const;

// ---------------------------------------------------------------------------------------------
// ggml tensor types

export interface GgmlTypeInfo {
  /** `enum ggml_type` value. */
  readonly id: number;
  /** Upper-case name as in `GGML_TYPE_<NAME>`. */
  readonly name: string;
  /** Elements per block (1 for plain types). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
  readonly quantized: boolean;
}

function t(id: number, name: string, blockSize: number, typeSize: number): GgmlTypeInfo {
  return { id, name, blockSize, typeSize, quantized: blockSize > 1 };
}

/** `type_traits` of ggml.c at the pinned commit, for every type a GGUF file may hold. */
export const GGML_TYPES = {
  F32: t(0, 'F32', 1, 4),
  F16: t(1, 'F16', 1, 2),
  Q4_0: t(2, 'Q4_0', 32, 18),
  Q4_1: t(3, 'Q4_1', 32, 20),
  Q5_0: t(6, 'Q5_0', 32, 22),
  Q5_1: t(7, 'Q5_1', 32, 24),
  Q8_0: t(8, 'Q8_0', 32, 34),
  Q8_1: t(9, 'Q8_1', 32, 36),
  Q2_K: t(10, 'Q2_K', 256, 84),
  Q3_K: t(11, 'Q3_K', 256, 110),
  Q4_K: t(12, 'Q4_K', 256, 144),
  Q5_K: t(13, 'Q5_K', 256, 176),
  Q6_K: t(14, 'Q6_K', 256, 210),
  Q8_K: t(15, 'Q8_K', 256, 292),
  IQ2_XXS: t(16, 'IQ2_XXS', 256, 66),
  IQ2_XS: t(17, 'IQ2_XS', 256, 74),
  IQ3_XXS: t(18, 'IQ3_XXS', 256, 98),
  IQ1_S: t(19, 'IQ1_S', 256, 50),
  IQ4_NL: t(20, 'IQ4_NL', 32, 18),
  IQ3_S: t(21, 'IQ3_S', 256, 110),
  IQ2_S: t(22, 'IQ2_S', 256, 82),
  IQ4_XS: t(23, 'IQ4_XS', 256, 136),
  I8: t(24, 'I8', 1, 1),
  I16: t(25, 'I16', 1, 2),
  I32: t(26, 'I32', 1, 4),
  I64: t(27, 'I64', 1, 8),
  F64: t(28, 'F64', 1, 8),
  IQ1_M: t(29, 'IQ1_M', 256, 56),
  BF16: t(30, 'BF16', 1, 2),
  TQ1_0: t(34, 'TQ1_0', 256, 54),
  TQ2_0: t(35, 'TQ2_0', 256, 66),
  MXFP4: t(39, 'MXFP4', 32, 17),
  NVFP4: t(40, 'NVFP4', 64, 36),
  Q1_0: t(41, 'Q1_0', 128, 18),
  Q2_0: t(42, 'Q2_0', 64, 18),
} as const satisfies Record<string, GgmlTypeInfo>;

export type GgmlTypeName = keyof typeof GGML_TYPES;

/** GGML_TYPE_COUNT at the pinned commit. */
export const GGML_TYPE_COUNT = 43;

/** Ids below GGML_TYPE_COUNT that ggml once used and no longer accepts in GGUF files. */
export const GGML_REMOVED_TYPES: Readonly<Record<number, string>> = {
  4: 'Q4_2',
  5: 'Q4_3',
  31: 'Q4_0_4_4',
  32: 'Q4_0_4_8',
  33: 'Q4_0_8_8',
  36: 'IQ4_NL_4_4',
  37: 'IQ4_NL_4_8',
  38: 'IQ4_NL_8_8',
};

const ggmlTypeById = new Map<number, GgmlTypeInfo>(
  Object.values(GGML_TYPES).map((info) => [info.id, info]),
);

export function ggmlTypeFromId(id: number): GgmlTypeInfo | undefined {
  return ggmlTypeById.get(id);
}

export function isGgmlTypeName(name: string): name is GgmlTypeName {
  return Object.hasOwn(GGML_TYPES, name);
}

/**
 * Bytes of a tensor of `type` with shape `ne` (ggml order, ne[0] fastest), or undefined when
 * ne[0] is not a multiple of the block size. Exact (BigInt).
 */
export function ggmlTensorBytes(
  type: GgmlTypeInfo,
  ne: readonly (number | bigint)[],
): bigint | undefined {
  const bs = BigInt(type.blockSize);
  const ne0 = BigInt(ne[0] ?? 1);
  if (ne0 % bs !== 0n) return undefined;
  let bytes = (ne0 / bs) * BigInt(type.typeSize);
  for (let i = 1; i < ne.length; i++) bytes *= BigInt(ne[i]!);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// llama.cpp file types (`general.file_type`)

/** `enum llama_ftype`, names without the `LLAMA_FTYPE_` prefix. */
export const LLAMA_FILE_TYPES: Readonly<Record<number, string>> = {
  0: 'ALL_F32',
  1: 'MOSTLY_F16',
  2: 'MOSTLY_Q4_0',
  3: 'MOSTLY_Q4_1',
  7: 'MOSTLY_Q8_0',
  8: 'MOSTLY_Q5_0',
  9: 'MOSTLY_Q5_1',
  10: 'MOSTLY_Q2_K',
  11: 'MOSTLY_Q3_K_S',
  12: 'MOSTLY_Q3_K_M',
  13: 'MOSTLY_Q3_K_L',
  14: 'MOSTLY_Q4_K_S',
  15: 'MOSTLY_Q4_K_M',
  16: 'MOSTLY_Q5_K_S',
  17: 'MOSTLY_Q5_K_M',
  18: 'MOSTLY_Q6_K',
  19: 'MOSTLY_IQ2_XXS',
  20: 'MOSTLY_IQ2_XS',
  21: 'MOSTLY_Q2_K_S',
  22: 'MOSTLY_IQ3_XS',
  23: 'MOSTLY_IQ3_XXS',
  24: 'MOSTLY_IQ1_S',
  25: 'MOSTLY_IQ4_NL',
  26: 'MOSTLY_IQ3_S',
  27: 'MOSTLY_IQ3_M',
  28: 'MOSTLY_IQ2_S',
  29: 'MOSTLY_IQ2_M',
  30: 'MOSTLY_IQ4_XS',
  31: 'MOSTLY_IQ1_M',
  32: 'MOSTLY_BF16',
  36: 'MOSTLY_TQ1_0',
  37: 'MOSTLY_TQ2_0',
  38: 'MOSTLY_MXFP4_MOE',
  39: 'MOSTLY_NVFP4',
  40: 'MOSTLY_Q1_0',
  41: 'MOSTLY_Q2_0',
  1024: 'GUESSED',
};

// ---------------------------------------------------------------------------------------------
// Parsed file

export interface GgufTensorInfo {
  /** Position in the tensor table. */
  readonly index: number;
  readonly name: string;
  /** Shape in ggml order (ne[0] fastest), n_dims entries as stored. */
  readonly shape: readonly number[];
  readonly type: GgmlTypeName;
  readonly typeId: number;
  /** Product of the shape. */
  readonly nElements: number;
  /** Bytes of the data, from the type table. */
  readonly byteSize: number;
  /** Offset of the data relative to the start of the data section, as stored. */
  readonly offset: number;
  /** Offset of the data from the start of the file (dataOffset + offset). */
  readonly absoluteOffset: number;
  /** File offset of this entry of the tensor table (for error messages). */
  readonly infoOffset: number;
}

export interface GgufFile {
  /** 2 or 3. */
  readonly version: number;
  readonly metadata: GgufMetadata;
  /** File offset of each metadata entry (for error messages). */
  readonly metadataOffsets: ReadonlyMap<string, number>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** File offset where the data section starts. */
  readonly dataOffset: number;
  readonly fileSize: number;
}
