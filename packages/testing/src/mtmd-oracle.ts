import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RgbImage } from './images.js';
import { repoRoot } from './paths.js';

/**
 * Runner of the test-only libmtmd oracle (`native/tools/ref-mtmd-embed.cpp`, built by
 * `node native/scripts/build.mjs --oracle`): libmtmd's own preprocessing, vision tower and
 * projector for (mmproj, image), with nothing of mm in between (`runMtmdOracle`), the same for audio
 * files, chunk by chunk (`runMtmdAudioOracle`), and the whole prompt layout mtmd_tokenize makes, chunk
 * by chunk, with positions and embeddings (`runMtmdLayout`; images and audio).
 */

export interface MtmdOracleResult {
  image: string;
  width: number;
  height: number;
  nTokens: number;
  nEmbd: number;
  /** The projector output, [nTokens][nEmbd]. */
  embd: Float32Array;
  /**
   * The vision tower output handed to the projector, [featuresShape[0]][featuresShape[1]] (or the
   * tensor named by `featuresTensor`, flattened to [rows][ne0]). Empty when nothing was captured.
   */
  features: Float32Array;
  featuresShape: [number, number];
  /** ggml's ne[0..3] of the captured features tensor (ne[0] varies fastest). */
  featuresNe: [number, number, number, number];
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
  /**
   * Capture the first ggml tensor with this name in each encode as `features`, instead of the rows
   * gathered right before the projector (e.g. an encoder stage of a family whose projector libmtmd
   * fuses into its graph: Qwen2-VL's post-layernorm output is `norm_b-<n_layer>`, Qwen2.5-VL's
   * `norm_w-<n_layer>`; names are those of libmtmd's graph, `<name>-<layer>`). The run fails
   * (MtmdOracleError, exit code 4) when no tensor has that name or it is not a contiguous f32/f16.
   */
  featuresTensor?: string;
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

function oracleOrThrow(): string {
  const bin = mtmdOracleBinary();
  if (bin === undefined) {
    throw new Error(
      'the libmtmd oracle is not built: run `node native/scripts/build.mjs --oracle`',
    );
  }
  return bin;
}

/** Writes raw images into `dir` and returns the oracle's media arguments, in input order. */
function mediaSpecs(dir: string, media: readonly (string | RgbImage)[]): string[] {
  return media.map((img, i) => {
    if (typeof img === 'string') return img;
    const p = join(dir, `in${i}.rgb`);
    writeFileSync(p, img.data);
    return `raw:${img.width}x${img.height}:${p}`;
  });
}

function commonArgs(options: Omit<MtmdOracleOptions, 'images'>, dir: string): string[] {
  const args = ['--mmproj', options.mmproj, '-t', String(options.threads ?? 2), '--out-dir', dir];
  if (options.textModel) args.push('--text-model', options.textModel);
  if (options.flashAttn) args.push('--fa', options.flashAttn);
  if (options.featuresTensor !== undefined) args.push('--features-tensor', options.featuresTensor);
  return args;
}

/** Runs the oracle; its stdout, or MtmdOracleError with its exit code and stderr. */
function execOracle(bin: string, args: string[]): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    execFile(bin, args, { maxBuffer: 256 * 1024 * 1024 }, (error, out, err) => {
      if (error) {
        reject(new MtmdOracleError(typeof error.code === 'number' ? error.code : -1, String(err)));
      } else {
        resolve(String(out));
      }
    });
  });
}

/** Runs libmtmd on every image in one process; results in input order. */
export async function runMtmdOracle(options: MtmdOracleOptions): Promise<MtmdOracleResult[]> {
  const bin = oracleOrThrow();
  const dir = mkdtempSync(join(tmpdir(), 'mm-oracle-'));
  try {
    const args = [...commonArgs(options, dir), ...mediaSpecs(dir, options.images)];
    const json = JSON.parse(await execOracle(bin, args)) as {
      images: (Omit<MtmdOracleResult, 'embd' | 'features' | 'pixels'> & {
        type: 'image' | 'audio';
        embd: string;
        features: string;
        pixels: string;
      })[];
    };
    return json.images.map(({ type, ...r }) => {
      if (type !== 'image') {
        throw new Error(`${r.image ?? 'an input'} is audio: use runMtmdAudioOracle`);
      }
      return { ...r, embd: f32(r.embd), features: f32(r.features), pixels: f32(r.pixels) };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One audio chunk (30 s of mel frames) of an audio file, as libmtmd encodes it. */
export interface MtmdAudioChunkResult {
  /** Rows of embeddings (clip_n_output_tokens of the chunk). */
  nTokens: number;
  /** KV positions taken (mtmd_input_chunk_get_n_pos: nTokens for audio). */
  nPos: number;
  /** Width of each row: the projection width. */
  nEmbd: number;
  /** The projector output, [nTokens][nEmbd]. */
  embd: Float32Array;
  /** The log-mel fed to the encoder, [melShape[0] = n_mel][melShape[1] = frames (3000)]. */
  mel: Float32Array;
  melShape: [number, number];
  /**
   * The encoder output handed to the projector (libmtmd's graph tensor `after_transformer`: after
   * `a.post_ln`, and after the average pooling of qwen2a / voxtral; or the tensor named by
   * `featuresTensor`), [featuresShape[0]][featuresShape[1]]; null when not captured.
   */
  features: Float32Array | null;
  featuresShape: [number, number] | null;
  featuresNe: [number, number, number, number] | null;
  /** Wall time of mtmd_encode_chunk (with the eval callback attached: not a benchmark). */
  encodeMs: number;
}

export interface MtmdAudioOracleResult {
  audio: string;
  /** Samples after libmtmd's decoding (mono, resampled to sampleRate). */
  nSamples: number;
  /** The model's sample rate (mtmd_get_audio_sample_rate). */
  sampleRate: number;
  /** In order. */
  chunks: MtmdAudioChunkResult[];
}

export interface MtmdAudioOracleOptions extends Omit<MtmdOracleOptions, 'images' | 'textModel'> {
  /** Audio files (WAV, MP3, FLAC), decoded by libmtmd's helper (mtmd_helper_bitmap_init_from_file). */
  audio: readonly string[];
  /**
   * The text model. Required when the projector puts markers around audio (qwen2a, qwen2.5o,
   * voxtral: mtmd_tokenize needs the vocabulary); libmtmd then also checks its n_embd.
   */
  textModel?: string;
}

type RawAudioChunk = Omit<MtmdAudioChunkResult, 'embd' | 'mel' | 'features'> & {
  embd: string;
  mel: string;
  features: string | null;
};

/**
 * Runs libmtmd on every audio file in one process (each alone, no text): every audio chunk it cuts
 * the file into, encoded with mtmd_encode_chunk; results in input order.
 */
export async function runMtmdAudioOracle(
  options: MtmdAudioOracleOptions,
): Promise<MtmdAudioOracleResult[]> {
  const bin = oracleOrThrow();
  const dir = mkdtempSync(join(tmpdir(), 'mm-oracle-'));
  try {
    const args = [...commonArgs(options, dir), ...options.audio];
    const json = JSON.parse(await execOracle(bin, args)) as {
      images: (
        | { type: 'image'; image: string }
        | (Omit<MtmdAudioOracleResult, 'chunks'> & {
            type: 'audio';
            chunks: RawAudioChunk[];
          })
      )[];
    };
    return json.images.map((r) => {
      if (r.type !== 'audio') throw new Error(`${r.image} is an image: use runMtmdOracle`);
      return {
        audio: r.audio,
        nSamples: r.nSamples,
        sampleRate: r.sampleRate,
        chunks: r.chunks.map((c) => ({
          ...c,
          embd: f32(c.embd),
          mel: f32(c.mel),
          features: c.features === null ? null : f32(c.features),
        })),
      };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One row's position as mtmd_helper_eval_chunks puts it in the batch (M-RoPE sections in order). */
export interface MtmdDecoderPos {
  t: number;
  y: number;
  x: number;
  z: number;
}

/** A run of text tokens, as mtmd_tokenize made it (BOS is in the first chunk only). */
export interface MtmdTextChunk {
  type: 'text';
  tokens: number[];
  nTokens: number;
  /** KV positions taken: nTokens. */
  nPos: number;
  /** The running n_past at the chunk's start. */
  pos0: number;
}

/** One image or audio chunk of the layout, with libmtmd's embeddings for it. */
export interface MtmdMediaChunk {
  type: 'image' | 'audio';
  /** Rows of embeddings the backbone receives. */
  nTokens: number;
  /** KV positions taken (mtmd_input_chunk_get_n_pos): max(nx, ny) with M-RoPE, else nTokens. */
  nPos: number;
  /** The token grid libmtmd recorded (M-RoPE: merged patches across/down; else nTokens × 1); null for audio. */
  nx: number | null;
  ny: number | null;
  /** libmtmd's chunk id (the bitmap id: a hash for files, empty for raw pixels). */
  id: string;
  /** Attention inside the chunk is bidirectional (mtmd_decode_use_non_causal). */
  nonCausal: boolean;
  /** The running n_past at the chunk's start. */
  pos0: number;
  /** One per row. */
  positions: MtmdDecoderPos[];
  /** libmtmd's output, [nTokens][nEmbd]. */
  embd: Float32Array;
  /** The captured features (see MtmdOracleOptions.featuresTensor), when any. */
  features?: Float32Array;
  featuresShape?: [number, number];
  featuresNe?: [number, number, number, number];
  /** The preprocessed pixels of an image chunk, planar [3][H][W], when captured. */
  pixels?: Float32Array;
  pixelsShape?: [number, number, number];
  /** The log-mel of an audio chunk, [n_mel][frames], when captured. */
  mel?: Float32Array;
  melShape?: [number, number];
  encodeMs: number;
}

export type MtmdLayoutChunk = MtmdTextChunk | MtmdMediaChunk;

export interface MtmdLayoutResult {
  chunks: MtmdLayoutChunk[];
  /** Whether the text model takes M-RoPE positions (4 per row). */
  useMrope: boolean;
  /** Width of every embedding row (llama_model_n_embd_inp). */
  nEmbd: number;
  /** Sum of the chunks' nTokens (mtmd_helper_get_n_tokens). */
  nTokensTotal: number;
  /** Sum of the chunks' nPos (mtmd_helper_get_n_pos). */
  nPosTotal: number;
  /** n_past after the prompt, advanced as mtmd_helper_eval_chunks does (equals nPosTotal). */
  nPast: number;
  /** The media marker the prompt uses (mtmd_default_marker()). */
  marker: string;
}

export interface MtmdLayoutOptions extends Omit<MtmdOracleOptions, 'textModel'> {
  /** Required: mtmd_tokenize needs the vocabulary. */
  textModel: string;
  /**
   * Text with one marker (`<__media__>`) per entry of `images`. Entries of `images` may be audio
   * files too (WAV, MP3, FLAC): each gives libmtmd's audio markers around one audio chunk per 30 s.
   */
  prompt: string;
}

type RawMediaChunk = Omit<MtmdMediaChunk, 'embd' | 'features' | 'pixels' | 'mel'> & {
  embdFile: string;
  featuresFile: string | null;
  featuresShape: [number, number] | null;
  featuresNe: [number, number, number, number] | null;
  pixelsFile: string | null;
  pixelsShape: [number, number, number] | null;
  melFile: string | null;
  melShape: [number, number] | null;
};

/**
 * The whole prompt layout libmtmd makes (mtmd_tokenize with add_special and parse_special), chunk by
 * chunk in its order, with each media chunk's positions and embeddings (mtmd_encode_chunk).
 */
export async function runMtmdLayout(options: MtmdLayoutOptions): Promise<MtmdLayoutResult> {
  const bin = oracleOrThrow();
  const dir = mkdtempSync(join(tmpdir(), 'mm-oracle-'));
  try {
    const args = [...commonArgs(options, dir), '--prompt', options.prompt];
    args.push(...mediaSpecs(dir, options.images));
    const json = JSON.parse(await execOracle(bin, args)) as Omit<MtmdLayoutResult, 'chunks'> & {
      chunks: (MtmdTextChunk | RawMediaChunk)[];
    };
    const chunks = json.chunks.map((c): MtmdLayoutChunk => {
      if (c.type === 'text') return c;
      const {
        embdFile,
        featuresFile,
        featuresShape,
        featuresNe,
        pixelsFile,
        pixelsShape,
        melFile,
        melShape,
        ...rest
      } = c;
      const out: MtmdMediaChunk = { ...rest, embd: f32(embdFile) };
      if (featuresFile !== null && featuresShape !== null && featuresNe !== null) {
        Object.assign(out, { features: f32(featuresFile), featuresShape, featuresNe });
      }
      if (pixelsFile !== null && pixelsShape !== null) {
        Object.assign(out, { pixels: f32(pixelsFile), pixelsShape });
      }
      if (melFile !== null && melShape !== null) {
        Object.assign(out, { mel: f32(melFile), melShape });
      }
      return out;
    });
    return {
      chunks,
      useMrope: json.useMrope,
      nEmbd: json.nEmbd,
      nTokensTotal: json.nTokensTotal,
      nPosTotal: json.nPosTotal,
      nPast: json.nPast,
      marker: json.marker,
    };
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
