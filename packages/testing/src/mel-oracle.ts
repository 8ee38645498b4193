import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './paths.js';

/**
 * Runner of the test-only mel oracle (`native/tools/ref-mtmd-mel.cpp`, built by
 * `node native/scripts/build.mjs --oracle`): libmtmd's own `mtmd_audio_preprocessor_whisper`
 * (tools/mtmd/mtmd-audio.cpp compiled unchanged) with the hparams clip.cpp sets for
 * Whisper-style projectors (16 kHz, n_fft 400, window 400, hop 160).
 */

export interface MtmdMelResult {
  /** False when libmtmd's preprocess() refused the input. */
  ok: boolean;
  nMel: number;
  /** Frames per chunk. */
  nFrames: number;
  /** One `[nMel][nFrames]` row-major matrix per chunk. */
  chunks: Float32Array[];
}

/** Path of the oracle binary, or undefined when it has not been built. */
export function melOracleBinary(): string | undefined {
  const p = join(repoRoot(), 'native', 'build', 'bin', 'mm-ref-mtmd-mel');
  return existsSync(p) ? p : undefined;
}

/** libmtmd's log-mel chunks of mono 16 kHz PCM with `nMel` bands. */
export async function runMtmdMel(pcm: Float32Array, nMel: number): Promise<MtmdMelResult> {
  const bin = melOracleBinary();
  if (bin === undefined) {
    throw new Error('the mel oracle is not built: run `node native/scripts/build.mjs --oracle`');
  }
  const dir = mkdtempSync(join(tmpdir(), 'mm-mel-'));
  try {
    const inPath = join(dir, 'in.f32');
    const outPath = join(dir, 'out.f32');
    writeFileSync(inPath, new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength));
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(bin, ['--n-mel', String(nMel), inPath, outPath], (err, out, stderr) =>
        err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(out),
      );
    });
    const r = JSON.parse(stdout) as { ok: boolean; chunks: number; n_mel: number; n_len: number };
    const bytes = readFileSync(outPath);
    const all = new Float32Array(
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
    );
    const per = r.n_mel * r.n_len;
    const chunks: Float32Array[] = [];
    for (let c = 0; c < r.chunks; c++) chunks.push(all.slice(c * per, (c + 1) * per));
    return { ok: r.ok, nMel: r.n_mel, nFrames: r.n_len, chunks };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
