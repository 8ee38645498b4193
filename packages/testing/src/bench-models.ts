import { homedir } from 'node:os';
import { join } from 'node:path';
import { f32ToF16, writeGguf } from '@mm/gguf';
import { fixturePath } from './fixtures.js';
import { Prng } from './prng.js';
import { llamaSpec, resolveTinyLlamaOptions, type TinyLlamaOptions } from './tiny-llama.js';

/**
 * Realistic shapes for benchmarks (BENCH.md): random F16 weights, garbage text, real kernel
 * costs. Too large to commit or to make in tests; written once into a cache folder outside the
 * repo (`$MM_BENCH_DIR`, else ~/.cache/mm/bench), keyed by the generator version.
 */
export function benchDir(): string {
  return process.env['MM_BENCH_DIR'] || join(homedir(), '.cache', 'mm', 'bench');
}

/** Runs `make` with the fixture cache pointed at benchDir() (large files stay out of the test cache). */
export async function inBenchDir<T>(make: () => Promise<T>): Promise<T> {
  const prev = process.env['MM_FIXTURES_DIR'];
  process.env['MM_FIXTURES_DIR'] = benchDir();
  try {
    return await make();
  } finally {
    if (prev === undefined) delete process.env['MM_FIXTURES_DIR'];
    else process.env['MM_FIXTURES_DIR'] = prev;
  }
}

/** A ~0.7B-parameter llama (16 layers, n_embd 2048, GQA 32/8, n_ff 5632), F16. */
/** Values tiled into every weight of the bench llama (a prime). */
const TILE = 65_521;

export const BENCH_LLAMA_1B: TinyLlamaOptions = {
  seed: 11,
  nLayers: 16,
  nEmbd: 2048,
  nHead: 32,
  nHeadKv: 8,
  nFf: 5632,
  nCtx: 2048,
  weightType: 'F16',
  name: 'bench-llama-1b',
};

/**
 * Writes (once) a large llama model whose weights tile one 64 Ki block of random values, so
 * that making a gigabyte takes seconds instead of minutes.
 */
export async function benchLlama(options: TinyLlamaOptions = BENCH_LLAMA_1B): Promise<string> {
  const o = resolveTinyLlamaOptions(options);
  const name = `bench-llama-l${o.nLayers}-e${o.nEmbd}-h${o.nHead}-kv${o.nHeadKv}-ff${o.nFf}-${o.weightType.toLowerCase()}-s${o.seed}-t${TILE}.gguf`;
  const prev = process.env['MM_FIXTURES_DIR'];
  process.env['MM_FIXTURES_DIR'] = benchDir();
  try {
    return await fixturePath(name, async (path) => {
      const rng = new Prng(o.seed);
      // A prime length: no two rows of a matrix (n_embd a power of two) repeat the same values, so
      // the logits of different tokens are not tied (with 65 536, every 32nd output row was equal
      // and greedy answers depended on how a sampler breaks ties).
      const block = rng.normals(TILE, 1);
      const tiled = (n: number, std: number, mean = 0) => {
        if (o.weightType === 'F16' && mean === 0 && n > 4096) {
          // Scale once per distinct std, then tile the F16 bits.
          const scaled = f32ToF16(block.map((x) => x * std));
          const out = new Uint16Array(n);
          for (let i = 0; i < n; i += scaled.length)
            out.set(scaled.subarray(0, Math.min(scaled.length, n - i)), i);
          return out;
        }
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = mean + std * (block[i % block.length] as number);
        return out;
      };
      await writeGguf(path, llamaSpec(o, tiled));
    });
  } finally {
    if (prev === undefined) delete process.env['MM_FIXTURES_DIR'];
    else process.env['MM_FIXTURES_DIR'] = prev;
  }
}
