/** ggml's Q8_0 blocks: 32 weights as one F16 scale `d` and 32 int8 `q`, weight = d * q. */
import { f16BitsToF32, f32ToF16Bits } from './float16.js';

/** Weights per Q8_0 block. */
export const Q8_0_BLOCK = 32;
/** Bytes per Q8_0 block: the F16 scale, then 32 int8. */
export const Q8_0_BLOCK_BYTES = 34;

/**
 * Q8_0 blocks of `values` (a multiple of 32), as ggml's `quantize_row_q8_0_ref` makes them: d is
 * the block's largest magnitude / 127 (stored as F16), q = round(x / d) with ties away from zero.
 */
export function quantizeQ8_0(values: ArrayLike<number>): Uint8Array {
  const n = values.length;
  if (n % Q8_0_BLOCK !== 0) {
    throw new RangeError(`Q8_0 takes a multiple of ${Q8_0_BLOCK} values, got ${n}`);
  }
  const out = new Uint8Array((n / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  const f = Math.fround;
  for (let b = 0; b < n / Q8_0_BLOCK; b++) {
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const v = Math.abs(values[b * Q8_0_BLOCK + j] as number);
      if (!Number.isFinite(v))
        throw new RangeError(`Q8_0: value ${b * Q8_0_BLOCK + j} is not finite`);
      amax = Math.max(amax, v);
    }
    // float arithmetic, as in C: d = amax / 127, id = 1 / d
    const d = f(f(amax) / 127);
    const id = d !== 0 ? f(1 / d) : 0;
    const at = b * Q8_0_BLOCK_BYTES;
    view.setUint16(at, f32ToF16Bits(d), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const x = f(f(values[b * Q8_0_BLOCK + j] as number) * id);
      view.setInt8(at + 2 + j, Math.sign(x) * Math.round(Math.abs(x))); // roundf: ties away from 0
    }
  }
  return out;
}

/** The weights that Q8_0 blocks stand for (d * q, with d as stored). */
export function dequantizeQ8_0(blocks: Uint8Array): Float32Array {
  if (blocks.length % Q8_0_BLOCK_BYTES !== 0) {
    throw new RangeError(
      `Q8_0 data is whole ${Q8_0_BLOCK_BYTES}-byte blocks, got ${blocks.length} bytes`,
    );
  }
  const view = new DataView(blocks.buffer, blocks.byteOffset, blocks.byteLength);
  const out = new Float32Array((blocks.length / Q8_0_BLOCK_BYTES) * Q8_0_BLOCK);
  for (let b = 0; b < out.length / Q8_0_BLOCK; b++) {
    const d = f16BitsToF32(view.getUint16(b * Q8_0_BLOCK_BYTES, true));
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      out[b * Q8_0_BLOCK + j] = d * view.getInt8(b * Q8_0_BLOCK_BYTES + 2 + j);
    }
  }
  return out;
}
