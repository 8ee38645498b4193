import type { GgufFile } from '@mm/gguf';

/**
 * Byte-level edits of a valid GGUF file, for hostile-input tests of both GGUF readers (the
 * TypeScript one in @mm/gguf and ggml's, which mm's native code and llama.cpp use): values the
 * writer refuses to produce (keys and tensor names beyond the spec's lengths, NUL bytes in keys,
 * absurd counts, lengths and dimension counts).
 */

/** Where a key's fields are: its u64 length, its u32 value type, and its value. */
export function keyFields(
  file: GgufFile,
  key: string,
): { length: number; type: number; value: number } {
  const at = file.metadataOffsets.get(key);
  if (at === undefined) throw new Error(`no key '${key}'`);
  const type = at + 8 + new TextEncoder().encode(key).length;
  return { length: at, type, value: type + 4 };
}

/** Where a tensor table entry's fields are: name length, n_dims, ne[0], type, data offset. */
export function tensorFields(
  file: GgufFile,
  name: string,
): { name: number; nDims: number; ne0: number; type: number; offset: number } {
  const t = file.tensors.find((x) => x.name === name);
  if (t === undefined) throw new Error(`no tensor '${name}'`);
  const nDims = t.infoOffset + 8 + new TextEncoder().encode(name).length;
  const type = nDims + 4 + 8 * t.shape.length;
  return { name: t.infoOffset, nDims, ne0: nDims + 4, type, offset: type + 4 };
}

/** A copy with a little-endian u32 / u64 written at `at`. */
export function patchU32(buf: Uint8Array, at: number, v: number): Uint8Array {
  const out = new Uint8Array(buf);
  new DataView(out.buffer).setUint32(at, v >>> 0, true);
  return out;
}

export function patchU64(buf: Uint8Array, at: number, v: bigint): Uint8Array {
  const out = new Uint8Array(buf);
  new DataView(out.buffer).setBigUint64(at, BigInt.asUintN(64, v), true);
  return out;
}

/**
 * A copy in which the GGUF string whose u64 length field is at `at` is `by` bytes longer (bytes
 * of `fill` appended to it). With `by` a multiple of the file's alignment the data section keeps
 * its padding, so the rest of the file stays valid.
 */
export function growGgufString(buf: Uint8Array, at: number, by: number, fill = 0x61): Uint8Array {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = Number(dv.getBigUint64(at, true));
  const end = at + 8 + len;
  const out = new Uint8Array(buf.length + by);
  out.set(buf.subarray(0, end));
  out.fill(fill, end, end + by);
  out.set(buf.subarray(end), end + by);
  new DataView(out.buffer).setBigUint64(at, BigInt(len + by), true);
  return out;
}
