import { rename, rm } from 'node:fs/promises';
import { ErrorCode, MmError } from '@mm/errors';
import { f16BitsToF32, type GgufFile, GgufWriter, readTensorData } from '@mm/gguf';
import { mulberry32 } from './train-projector.js';

export interface ParamShape {
  name: string;
  ne: readonly number[];
}

/**
 * Initial projector values, for the trainer's tensors (`shapes`, in its order): `random` as
 * PyTorch's nn.Linear / nn.Conv2d (uniform in ±1/sqrt(fan_in); a bias takes its weight's fan-in)
 * from `seed`, or `mmproj`: the file's own tensors of those names (f32 or f16; a depthwise kernel
 * may be stored [3, 3, C] or [3, 3, 1, C]).
 */
export async function initialParams(o: {
  mmFile: GgufFile;
  mmproj: string;
  init: 'random' | 'mmproj';
  shapes: readonly ParamShape[];
  seed: number;
}): Promise<Map<string, Float32Array>> {
  const params = new Map<string, Float32Array>();
  if (o.init === 'random') {
    const rnd = mulberry32((o.seed ^ 0x9e3779b9) >>> 0);
    let fanIn = 1;
    for (const { name, ne } of o.shapes) {
      if (ne.length > 1) fanIn = ne.slice(0, -1).reduce((a, b) => a * b, 1);
      const bound = 1 / Math.sqrt(fanIn);
      const n = ne.reduce((a, b) => a * b, 1);
      params.set(
        name,
        Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * bound),
      );
    }
    return params;
  }
  for (const { name, ne } of o.shapes) {
    const info = o.mmFile.tensors.find((t) => t.name === name);
    const n = ne.reduce((a, b) => a * b, 1);
    const same =
      info !== undefined &&
      info.nElements === n &&
      (info.shape.length === ne.length
        ? info.shape.every((d, i) => d === ne[i])
        : info.shape[0] === ne[0] && info.shape[1] === ne[1]);
    if (!same) {
      throw new MmError(
        ErrorCode.MM_MODEL_MISMATCH,
        `${name} of '${o.mmproj}' is ${info ? `[${info.shape.join(', ')}]` : 'missing'}; continuing from it needs [${ne.join(', ')}]`,
      );
    }
    const bytes = await readTensorData(o.mmproj, o.mmFile, info);
    const raw = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    if (info.type === 'F32') {
      params.set(name, new Float32Array(raw));
    } else if (info.type === 'F16') {
      params.set(
        name,
        Float32Array.from(new Uint16Array(raw), (b) => f16BitsToF32(b)),
      );
    } else {
      throw new MmError(
        ErrorCode.MM_GGUF_UNSUPPORTED,
        `${name} of '${o.mmproj}' is ${info.type}; continuing from it needs F32 or F16`,
      );
    }
  }
  return params;
}

/**
 * Writes the trained mmproj: the source's metadata and every non-projector tensor byte for byte,
 * `clip.projector_type = mlp`, `clip.vision.projection_dim` = the LLM's width, and the trained
 * tensors in f32 (written beside `out`, then renamed over it).
 */
export async function writeTrainedMmproj(o: {
  mmFile: GgufFile;
  mmproj: string;
  out: string;
  projector: 'mlp' | 'linear' | 'ldpv2';
  params: Map<string, Float32Array>;
  shapes: readonly ParamShape[];
  llmWidth: number;
  signal?: AbortSignal;
}): Promise<void> {
  const type = o.projector === 'ldpv2' ? 'ldpv2' : 'mlp';
  const w = new GgufWriter({ metadata: o.mmFile.metadata, alignment: o.mmFile.alignment });
  w.set('clip.projector_type', { type: 'string', value: type });
  if (o.mmFile.metadata.has('clip.vision.projector_type')) {
    w.set('clip.vision.projector_type', { type: 'string', value: type });
  }
  w.set('clip.has_llava_projector', { type: 'bool', value: true });
  w.set('clip.vision.projection_dim', { type: 'uint32', value: o.llmWidth });
  for (const t of o.mmFile.tensors) {
    o.signal?.throwIfAborted();
    if (t.name.startsWith('mm.')) continue;
    w.addTensor({
      name: t.name,
      type: t.type,
      shape: t.shape,
      data: await readTensorData(o.mmproj, o.mmFile, t),
    });
  }
  const tensors =
    o.projector === 'linear'
      ? linearAsMlp(o.params, o.llmWidth)
      : o.shapes.map((s) => ({
          name: s.name,
          ne: [...s.ne],
          data: o.params.get(s.name) as Float32Array,
        }));
  for (const t of tensors) {
    // libmtmd's depthwise conv takes an f16 kernel
    const type = t.name === 'mm.model.peg.0.weight' ? 'F16' : 'F32';
    w.addTensor({ name: t.name, type, shape: t.ne, data: t.data });
  }
  const tmp = `${o.out}.partial`;
  try {
    await w.write(tmp);
    await rename(tmp, o.out);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * A linear projector z = W x + b written as the two-layer `mlp` libmtmd runs (it has no linear
 * llava projector, and an `mlp` without mm.2 crashes its loader): mm.0 = [W; -W], [b; -b], then
 * mm.2 = [I, -I], 0 — exact, since GELU(z) - GELU(-z) = z for GELU's tanh form as for erf's.
 * libmtmd's CPU GELU rounds through f16, so its output is z to about 1e-3 relative.
 */
export function linearAsMlp(
  params: Map<string, Float32Array>,
  llmWidth: number,
): { name: string; ne: number[]; data: Float32Array }[] {
  const w = params.get('mm.0.weight') as Float32Array;
  const b = params.get('mm.0.bias') as Float32Array;
  const D = llmWidth;
  const n = w.length / D;
  const w0 = new Float32Array(2 * D * n);
  w0.set(w, 0);
  for (let i = 0; i < w.length; i++) w0[D * n + i] = -(w[i] as number);
  const b0 = new Float32Array(2 * D);
  b0.set(b, 0);
  for (let i = 0; i < D; i++) b0[D + i] = -(b[i] as number);
  const w2 = new Float32Array(D * 2 * D);
  for (let r = 0; r < D; r++) {
    w2[r * 2 * D + r] = 1;
    w2[r * 2 * D + D + r] = -1;
  }
  return [
    { name: 'mm.0.weight', ne: [n, 2 * D], data: w0 },
    { name: 'mm.0.bias', ne: [2 * D], data: b0 },
    { name: 'mm.2.weight', ne: [2 * D, D], data: w2 },
    { name: 'mm.2.bias', ne: [D], data: new Float32Array(D) },
  ];
}
