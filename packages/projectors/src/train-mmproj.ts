import { rename, rm } from 'node:fs/promises';
import { ErrorCode, MmError } from '@mm/errors';
import { f16BitsToF32, type GgufFile, GgufWriter, readTensorData } from '@mm/gguf';
import { mulberry32 } from './train-projector.js';

/** The projector tensors of a trained `mlp` (all four) or `linear` (mm.0 only). */
function shapes(projector: 'mlp' | 'linear', nEmbdV: number, hidden: number, llmWidth: number) {
  const out: [string, number[]][] = [
    ['mm.0.weight', [nEmbdV, hidden]],
    ['mm.0.bias', [hidden]],
  ];
  if (projector === 'mlp') {
    out.push(['mm.2.weight', [hidden, llmWidth]], ['mm.2.bias', [llmWidth]]);
  }
  return out;
}

/**
 * Initial projector values: `random` as PyTorch's nn.Linear (weights and biases uniform in
 * ±1/sqrt(fan_in)) from `seed`, or `mmproj`: the file's own tensors (f32 or f16), which must have
 * the shapes the encoder and the LLM need.
 */
export async function initialParams(o: {
  mmFile: GgufFile;
  mmproj: string;
  projector: 'mlp' | 'linear';
  init: 'random' | 'mmproj';
  nEmbdV: number;
  hidden: number;
  llmWidth: number;
  seed: number;
}): Promise<{ hidden: number; params: Map<string, Float32Array> }> {
  const params = new Map<string, Float32Array>();
  if (o.init === 'random') {
    const rnd = mulberry32((o.seed ^ 0x9e3779b9) >>> 0);
    for (const [name, shape] of shapes(o.projector, o.nEmbdV, o.hidden, o.llmWidth)) {
      const fanIn = name.startsWith('mm.0') ? o.nEmbdV : o.hidden;
      const bound = 1 / Math.sqrt(fanIn);
      const n = shape.reduce((a, b) => a * b, 1);
      params.set(
        name,
        Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * bound),
      );
    }
    return { hidden: o.hidden, params };
  }
  const w0 = o.mmFile.tensors.find((t) => t.name === 'mm.0.weight');
  const hidden = w0?.shape[1] ?? 0;
  for (const [name, shape] of shapes(o.projector, o.nEmbdV, hidden, o.llmWidth)) {
    const info = o.mmFile.tensors.find((t) => t.name === name);
    if (
      info === undefined ||
      info.shape.length !== shape.length ||
      info.shape.some((d, i) => d !== shape[i])
    ) {
      throw new MmError(
        ErrorCode.MM_MODEL_MISMATCH,
        `${name} of '${o.mmproj}' is ${info ? `[${info.shape.join(', ')}]` : 'missing'}; continuing from it needs [${shape.join(', ')}] (encoder width ${o.nEmbdV}, LLM width ${o.llmWidth})`,
      );
    }
    const bytes = await readTensorData(o.mmproj, o.mmFile, info);
    if (info.type === 'F32') {
      params.set(
        name,
        new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)),
      );
    } else if (info.type === 'F16') {
      const bits = new Uint16Array(
        bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      );
      params.set(
        name,
        Float32Array.from(bits, (b) => f16BitsToF32(b)),
      );
    } else {
      throw new MmError(
        ErrorCode.MM_GGUF_UNSUPPORTED,
        `${name} of '${o.mmproj}' is ${info.type}; continuing from it needs F32 or F16`,
      );
    }
  }
  return { hidden, params };
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
  projector: 'mlp' | 'linear';
  params: Map<string, Float32Array>;
  llmWidth: number;
  signal?: AbortSignal;
}): Promise<void> {
  const w = new GgufWriter({ metadata: o.mmFile.metadata, alignment: o.mmFile.alignment });
  w.set('clip.projector_type', { type: 'string', value: 'mlp' });
  if (o.mmFile.metadata.has('clip.vision.projector_type')) {
    w.set('clip.vision.projector_type', { type: 'string', value: 'mlp' });
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
  const params = o.projector === 'linear' ? linearAsMlp(o.params, o.llmWidth) : o.params;
  for (const [name, data] of params) {
    const shape =
      name === 'mm.0.weight'
        ? [
            data.length / (params.get('mm.0.bias')?.length ?? 1),
            params.get('mm.0.bias')?.length ?? 1,
          ]
        : name === 'mm.2.weight'
          ? [data.length / o.llmWidth, o.llmWidth]
          : [data.length];
    w.addTensor({ name, type: 'F32', shape, data });
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
): Map<string, Float32Array> {
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
  return new Map([
    ['mm.0.weight', w0],
    ['mm.0.bias', b0],
    ['mm.2.weight', w2],
    ['mm.2.bias', new Float32Array(D)],
  ]);
}
