export { isGgufError, MmGgufFormatError, MmGgufUnsupportedError } from './errors.js';
export {
  bf16BitsToF32,
  bf16ToF32,
  f16BitsToF32,
  f16ToF32,
  f32ToBf16,
  f32ToBf16Bits,
  f32ToF16,
  f32ToF16Bits,
} from './float16.js';
export {
  type GgufMetadataSource,
  getArray,
  getBool,
  getFloat,
  getInt,
  getString,
  getUint,
  getValue,
  hasKey,
} from './metadata.js';
export { dequantizeQ8_0, Q8_0_BLOCK, Q8_0_BLOCK_BYTES, quantizeQ8_0 } from './quant.js';
export {
  type GgufSource,
  type ReadGgufOptions,
  readGguf,
  readGgufFromBuffer,
  readTensorData,
} from './reader.js';
export {
  type GgufMmprojSummary,
  type GgufSummary,
  type GgufTextModelSummary,
  type GgufTypeSummary,
  summarizeGguf,
} from './summary.js';
export * from './types.js';
export {
  type GgufTensorInput,
  GgufWriter,
  type GgufWriteSpec,
  ggufToBuffer,
  writeGguf,
} from './writer.js';
