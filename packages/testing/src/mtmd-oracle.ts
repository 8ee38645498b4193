import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RgbImage } from './images.js';
import { repoRoot } from './paths.js';

/**
 * Runner of the test-only libmtmd oracle (`native/tools/ref-mtmd-embed.cpp`, built by
 * `node native/scripts/build.mjs --oracle`): libmtmd's own preprocessing, vision tower and
 * projector for (mmproj, image), with nothing of mm in between.
 */

export interface MtmdOracleResult {
  image: string;
  width: number;
  height: number;
  nTokens: number;
  nEmbd: number;
  /** The projector output, [nTokens][nEmbd]. */
  embd: Float32Array;
  /** The vision tower output handed to the projector, [featuresShape[0]][featuresShape[1]]. */
  features: Float32Array;
  featuresShape: [number, number];
  /** The preprocessed pixels, planar [3][H][W]. */
  pixels: Float32Array;
  pixelsShape: [number, number, number];
  /** Wall time of mtmd_encode_chunk (with the eval callback attached: not a benchmark). */
  encodeMs: number;
}

export interface MtmdOracleOptions {
  mmproj: string;
  /** Image files (decoded by libmtmd itself) or raw RGB images. */
  images: (string | RgbImage)[];
  /** A text model: libmtmd then also checks that its n_embd matches the projection width. */
  textModel?: string;
  threads?: number;
  flashAttn?: 'auto' | 'on' | 'off';
}

export class MtmdOracleError extends Error {
  readonly exitCode: number;
  readonly stderr: string;
  constructor(exitCode: number, stderr: string) {
    super(`mm-ref-mtmd-embed exited with ${exitCode}: ${stderr.trim()}`);
    this.name = 'MtmdOracleError';
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Path of the oracle binary, or undefined when it has not been built. */
export function mtmdOracleBinary(): string | undefined {
  const p = join(repoRoot(), 'native', 'build', 'bin', 'mm-ref-mtmd-embed');
  return existsSync(p) ? p : undefined;
}

function f32(path: string): Float32Array {
  const b = readFileSync(path);
  const out = new Float32Array(b.length / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/** Runs libmtmd on every image in one process; results in input order. */
export async function runMtmdOracle(options: MtmdOracleOptions): Promise<MtmdOracleResult[]> {
  const bin = mtmdOracleBinary();
  if (bin === undefined) {
    throw new Error(
      'the libmtmd oracle is not built: run `node native/scripts/build.mjs --oracle`',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'mm-oracle-'));
  try {
    const specs = options.images.map((img, i) => {
      if (typeof img === 'string') return img;
      const p = join(dir, `in${i}.rgb`);
      writeFileSync(p, img.data);
      return `raw:${img.width}x${img.height}:${p}`;
    });
    const args = ['--mmproj', options.mmproj, '-t', String(options.threads ?? 2), '--out-dir', dir];
    if (options.textModel) args.push('--text-model', options.textModel);
    if (options.flashAttn) args.push('--fa', options.flashAttn);
    args.push(...specs);
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(bin, args, { maxBuffer: 64 * 1024 * 1024 }, (error, out, err) => {
        if (error) {
          reject(
            new MtmdOracleError(typeof error.code === 'number' ? error.code : -1, String(err)),
          );
        } else {
          resolve(String(out));
        }
      });
    });
    const json = JSON.parse(stdout) as {
      images: (Omit<MtmdOracleResult, 'embd' | 'features' | 'pixels'> & {
        embd: string;
        features: string;
        pixels: string;
      })[];
    };
    return json.images.map((r) => ({
      ...r,
      embd: f32(r.embd),
      features: f32(r.features),
      pixels: f32(r.pixels),
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Max |a - b| and cosine similarity of two equally long vectors. */
export function compareVectors(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): { maxAbsDiff: number; cosine: number } {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let maxAbsDiff = 0;
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    maxAbsDiff = Math.max(maxAbsDiff, Math.abs(x - y));
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  const cosine = na === 0 && nb === 0 ? 1 : dot / Math.sqrt(na * nb);
  return { maxAbsDiff, cosine };
}
