import { MmInvalidArgumentError } from '@mm/errors';
import { f32ToF16Bits, type GgufTensorInput } from '@mm/gguf';
import { Prng } from './prng.js';

/**
 * Random tensors for generated GGUF files, drawn in call order from one PRNG stream, so a file
 * depends only on its seed and on the order in which its generator adds tensors.
 */
export class TensorBuilder {
  readonly tensors: GgufTensorInput[] = [];
  private readonly rng: Prng;

  /**
   * `fast`: uniform values with the same spread (one PRNG draw each) instead of the near-normal
   * ones (twelve draws each), for large benchmark shapes where only the shapes matter.
   */
  constructor(
    seed: number,
    private readonly fast = false,
  ) {
    this.rng = new Prng(seed);
  }

  /** `n` values around `mean` with standard deviation `std`. */
  values(n: number, std: number, mean = 0): Float32Array {
    if (!this.fast) return this.rng.normals(n, std, mean);
    const out = new Float32Array(n);
    const a = Math.sqrt(3) * std;
    for (let i = 0; i < n; i++) out[i] = mean + a * (2 * this.rng.uniform() - 1);
    return out;
  }

  /** A tensor of ggml shape `shape` (F16 ones are rounded from the F32 draws). */
  add(name: string, type: 'F32' | 'F16', shape: readonly number[], std: number, mean = 0): void {
    const n = shape.reduce((a, b) => a * b, 1);
    if (type === 'F16' && this.fast && mean === 0) {
      const a = Math.sqrt(3) * std;
      const bits = new Uint16Array(n);
      for (let i = 0; i < n; i++) bits[i] = f32ToF16Bits(a * (2 * this.rng.uniform() - 1));
      this.tensors.push({ name, type, shape, data: bits });
      return;
    }
    this.tensors.push({ name, type, shape, data: this.values(n, std, mean) });
  }

  /** A matrix of ggml shape [nIn, nOut] with N(0, 1/nIn) entries: activations keep their scale. */
  matrix(name: string, type: 'F32' | 'F16', nIn: number, nOut: number, gain = 1): void {
    this.add(name, type, [nIn, nOut], gain / Math.sqrt(nIn));
  }

  /** An F32 vector. */
  vector(name: string, n: number, std: number, mean = 0): void {
    this.add(name, 'F32', [n], std, mean);
  }

  /** A norm weight around 1 (and, with `bias`, a bias around 0). */
  norm(prefix: string, n: number, bias: boolean): void {
    this.vector(`${prefix}.weight`, n, 0.1, 1);
    if (bias) this.vector(`${prefix}.bias`, n, 0.05);
  }

  /** A linear layer [nIn -> nOut] with a bias. */
  linear(prefix: string, type: 'F32' | 'F16', nIn: number, nOut: number): void {
    this.matrix(`${prefix}.weight`, type, nIn, nOut);
    this.vector(`${prefix}.bias`, nOut, 0.02);
  }

  /**
   * Scales the rows `ids` of the [n, nRows] F32/F16 tensor `name` by `factor` (row = ne[1] index).
   */
  scaleRows(name: string, ids: readonly number[], factor: number): void {
    const t = this.tensors.find((x) => x.name === name);
    if (t === undefined || !(t.data instanceof Float32Array)) {
      throw new Error(`internal: no F32-drawn tensor ${name}`);
    }
    const n = t.shape[0] as number;
    for (const id of ids) {
      for (let i = id * n; i < (id + 1) * n; i++) t.data[i] = (t.data[i] as number) * factor;
    }
  }
}

export function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0) {
    throw new MmInvalidArgumentError(name, `must be a positive integer, got ${v}`);
  }
  return v;
}

export function checkSeed(seed: number): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new MmInvalidArgumentError('seed', `must be an integer in [0, 2^32), got ${seed}`);
  }
  return seed;
}

export function checkWeightType(v: unknown): 'F32' | 'F16' {
  if (v !== 'F32' && v !== 'F16') {
    throw new MmInvalidArgumentError('weightType', `must be 'F32' or 'F16', got ${String(v)}`);
  }
  return v;
}

/** A name made safe for a fixture file name. */
export function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_');
}
