import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './paths.js';

/**
 * Runner of the test-only speech-generation oracle (`native/tools/ref-mtmd-gen.cpp`, built by
 * `node native/scripts/build.mjs --oracle`): libmtmd's mtmd_gen_audio_process (GEN_CODE, GEN_WAV)
 * and its speaker encoder, called as llama.cpp's mtmd-helper-gen.cpp calls them, for any pipeline
 * libmtmd has (Qwen3-TTS, Pocket TTS). All operations of one run share one mtmd context, so the
 * sampler's std::mt19937 (reseeded only when the seed differs from the last call's) carries over.
 */

/** libmtmd's `mtmd_gen_audio_type`. */
export const GEN_AUDIO_TYPE = { none: 0, qwen3tts: 1, pockettts: 2 } as const;

/** GEN_CODE: one frame from the talker's hidden state. */
export interface GenOracleCodeOp {
  op: 'code';
  /** [nEmbd] f32. */
  hidden: Float32Array;
  /** The codebook-0 code the talker sampled (Qwen3-TTS; ignored by Pocket TTS). */
  code0: number;
  topK: number;
  topP: number;
  temp: number;
  /** 0xFFFFFFFF = random (libmtmd's UINT32_MAX). */
  seed: number;
}

/** GEN_WAV: frames (int32 codes or f32 latents, frame-major) to PCM. */
export interface GenOracleWavOp {
  op: 'wav';
  frames: Int32Array | Float32Array;
  /** 'cold': no state; 'carry': the state the previous wav op returned; bytes: this state. */
  state: 'cold' | 'carry' | Uint8Array;
  /**
   * The seed passed along (mtmd-helper-gen.cpp passes the generation's seed, else libmtmd would
   * reseed its sampler). Default 0xFFFFFFFF.
   */
  seed?: number;
}

/** The speaker encoder on mono f32 PCM at the audio encoder's rate. */
export interface GenOracleSpeakerOp {
  op: 'speaker';
  pcm: Float32Array;
}

export interface GenOracleInfoOp {
  op: 'info';
}

export type GenOracleOp = GenOracleInfoOp | GenOracleCodeOp | GenOracleWavOp | GenOracleSpeakerOp;

export interface GenOracleInfo {
  /** GEN_AUDIO_TYPE value. */
  type: number;
  sampleRate: number;
  variant: string;
  /** The mmproj has an audio (speaker) encoder. */
  audioInput: boolean;
  /** Its input rate (-1 when none). */
  audioSampleRate: number;
}

export type GenOracleResult =
  | { op: 'info'; ok: true; info: GenOracleInfo }
  | {
      op: 'code';
      ok: true;
      codes: Int32Array;
      feats: Float32Array;
      embd: Float32Array;
      isEos: boolean;
    }
  | { op: 'wav'; ok: true; pcm: Float32Array; state: Uint8Array }
  | { op: 'speaker'; ok: true; rows: number; embd: Float32Array }
  | { op: GenOracleOp['op']; ok: false };

export interface GenOracleRun {
  nEmbd: number;
  results: GenOracleResult[];
}

export class GenOracleError extends Error {
  readonly exitCode: number;
  readonly stderr: string;
  constructor(exitCode: number, stderr: string) {
    super(`mm-ref-mtmd-gen exited with ${exitCode}: ${stderr.trim().slice(-2000)}`);
    this.name = 'GenOracleError';
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Path of the oracle binary, or undefined when it has not been built. */
export function genOracleBinary(): string | undefined {
  const p = join(repoRoot(), 'native', 'build', 'bin', 'mm-ref-mtmd-gen');
  return existsSync(p) ? p : undefined;
}

function bytes(a: Float32Array | Int32Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function readAs<T>(path: string, make: (b: ArrayBuffer) => T): T {
  const b = readFileSync(path);
  const copy = new ArrayBuffer(b.length);
  new Uint8Array(copy).set(b);
  return make(copy);
}

/** libmtmd's largest GEN_WAV call (Qwen3-TTS's window): more frames abort inside libmtmd. */
const MAX_WAV_FRAMES_QWEN3TTS = 72;

/**
 * Runs `ops` in order through libmtmd in one process. A call libmtmd refuses gives `{ ok: false }`
 * (and the run goes on); a malformed script or a load failure rejects with GenOracleError.
 */
export async function runGenOracle(options: {
  model: string;
  mmproj: string;
  ops: readonly GenOracleOp[];
  threads?: number;
}): Promise<GenOracleRun> {
  const bin = genOracleBinary();
  if (bin === undefined) {
    throw new Error('the gen oracle is not built: run `node native/scripts/build.mjs --oracle`');
  }
  const dir = mkdtempSync(join(tmpdir(), 'mm-gen-oracle-'));
  try {
    const lines: string[] = [];
    options.ops.forEach((o, i) => {
      const f = (ext: string) => join(dir, `in${i}.${ext}`);
      switch (o.op) {
        case 'info':
          lines.push('info');
          break;
        case 'code':
          writeFileSync(f('hidden'), bytes(o.hidden));
          lines.push(
            `code ${f('hidden')} ${o.code0 | 0} ${o.topK | 0} ${o.topP} ${o.temp} ${o.seed >>> 0}`,
          );
          break;
        case 'wav': {
          const kind = o.frames instanceof Int32Array ? 'codes' : 'feats';
          if (kind === 'codes' && o.frames.length > MAX_WAV_FRAMES_QWEN3TTS * 16) {
            throw new Error(`wav op ${i}: more than one window of frames would abort libmtmd`);
          }
          writeFileSync(f('frames'), bytes(o.frames));
          let state: string = typeof o.state === 'string' ? o.state : f('state');
          if (o.state instanceof Uint8Array) writeFileSync(state, o.state);
          if (o.state instanceof Uint8Array && o.state.length === 0) state = 'cold';
          lines.push(`wav ${kind} ${f('frames')} ${state} ${(o.seed ?? 0xffffffff) >>> 0}`);
          break;
        }
        case 'speaker':
          writeFileSync(f('pcm'), bytes(o.pcm));
          lines.push(`speaker ${f('pcm')}`);
          break;
      }
    });
    const script = join(dir, 'script.txt');
    writeFileSync(script, `${lines.join('\n')}\n`);
    const args = ['--model', options.model, '--mmproj', options.mmproj, '--script', script];
    args.push('--out', dir, '--threads', String(options.threads ?? 2));
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(bin, args, { maxBuffer: 64 << 20 }, (error, out, err) => {
        if (error) {
          reject(new GenOracleError(typeof error.code === 'number' ? error.code : -1, String(err)));
        } else {
          resolve(String(out));
        }
      });
    });
    const json = JSON.parse(stdout) as {
      nEmbd: number;
      ops: ({ ok: boolean } & Record<string, unknown>)[];
    };
    const results = json.ops.map((r, i): GenOracleResult => {
      const op = (options.ops[i] as GenOracleOp).op;
      if (!r.ok) return { op, ok: false };
      const out = (ext: string) => join(dir, `${i}.${ext}`);
      switch (op) {
        case 'info':
          return { op, ok: true, info: r as unknown as GenOracleInfo };
        case 'code':
          return {
            op,
            ok: true,
            codes: readAs(out('codes.i32'), (b) => new Int32Array(b)),
            feats: readAs(out('feats.f32'), (b) => new Float32Array(b)),
            embd: readAs(out('embd.f32'), (b) => new Float32Array(b)),
            isEos: r['isEos'] === true,
          };
        case 'wav':
          return {
            op,
            ok: true,
            pcm: readAs(out('pcm.f32'), (b) => new Float32Array(b)),
            state: readAs(out('state.bin'), (b) => new Uint8Array(b)),
          };
        default:
          return {
            op: 'speaker',
            ok: true,
            rows: r['rows'] as number,
            embd: readAs(out('spk.f32'), (b) => new Float32Array(b)),
          };
      }
    });
    return { nEmbd: json.nEmbd, results };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Max |a[i] - b[i]| (Infinity when the lengths differ). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}
