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

export interface MtmdAudioDecodeResult {
  /** libmtmd's sniffing (is_audio_file) accepted the bytes. */
  isAudio: boolean;
  /** decode_audio_from_buf returned true. */
  ok: boolean;
  /** What libmtmd hands to mtmd: the announced length, zero-filled past `framesRead`. */
  samples: Float32Array;
  framesRead: number;
}

/** Path of the audio decode oracle, or undefined when it has not been built. */
export function audioDecodeOracleBinary(): string | undefined {
  const p = join(repoRoot(), 'native', 'build', 'bin', 'mm-ref-mtmd-audio-decode');
  return existsSync(p) ? p : undefined;
}

/**
 * libmtmd's decoding of an audio file (`native/tools/ref-mtmd-audio-decode.cpp`: mtmd-helper.cpp's
 * decode_audio_from_buf with miniaudio compiled as mtmd-helper compiles it) to mono f32 at `rate`.
 */
export async function runMtmdAudioDecode(
  bytes: Uint8Array,
  rate: number,
): Promise<MtmdAudioDecodeResult> {
  const bin = audioDecodeOracleBinary();
  if (bin === undefined) {
    throw new Error(
      'the audio decode oracle is not built: run `node native/scripts/build.mjs --oracle`',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'mm-audio-'));
  try {
    const inPath = join(dir, 'in.audio');
    const outPath = join(dir, 'out.f32');
    writeFileSync(inPath, bytes);
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(bin, ['--rate', String(rate), inPath, outPath], (err, out, stderr) =>
        err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(out),
      );
    });
    const r = JSON.parse(stdout) as {
      is_audio: boolean;
      ok: boolean;
      frames: number;
      frames_read: number;
    };
    const b = readFileSync(outPath);
    const samples = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    return { isAudio: r.is_audio, ok: r.ok, samples, framesRead: r.frames_read };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
