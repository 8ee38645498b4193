// The one typed contract of mm.node. Only this package turns its untyped values into typed
// ones; other packages import these types and the wrappers in index.ts.

import type { NativeFusedAddon } from './addon-fused-types.js';
import type { NativeGenAddon } from './addon-gen-types.js';
import type { NativeRpcAddon } from './addon-rpc-types.js';

/** What every asynchronous native operation returns: a promise and a cooperative cancel. */
export interface NativeOperation<T> {
  promise: Promise<T>;
  cancel(): void;
}

export interface DeviceInfo {
  name: string;
  description: string;
  /** 'cpu' | 'gpu' | 'igpu' | 'accel' */
  type: string;
  backend: string;
  memoryTotal: number;
  memoryFree: number;
}

export interface SystemInfo {
  /** The llama.cpp commit mm.node was built from (pinned in native/vendor.lock.json). */
  llamaCommit: string;
  /** ggml backends compiled in, e.g. ['CPU'] or ['CUDA', 'CPU']. */
  backends: string[];
  devices: DeviceInfo[];
  /** CPU features the CPU backend was built with, e.g. { AVX2: '1', ... }. */
  cpuFeatures: Record<string, string>;
  cpuModel: string;
  hardwareThreads: number;
  supportsGpuOffload: boolean;
  supportsMmap: boolean;
  supportsMlock: boolean;
  /** llama.cpp's own one-line summary (llama_print_system_info). */
  llamaSystemInfo: string;
  /** Which ggml CPU backend was loaded at run time, from where, and why. */
  cpuBackend: CpuBackendInfo;
}

/** ggml's CPU backend as mm loaded it (backends are shared libraries beside mm.node). */
export interface CpuBackendInfo {
  /** How the addon was built: `all` (every CPU variant, the prebuilt packages) or `native` (this machine's). */
  build: 'all' | 'native';
  /** The folder the backends were loaded from. */
  dir: string;
  /** The module that loaded them (mm.node). */
  binary: string;
  /** The variant loaded, e.g. `haswell`, `skylakex`, `sapphirerapids`; `cpu` in a native build. */
  chosen: string;
  /** Why it was chosen, in words. */
  reason: string;
  /** `MM_CPU_VARIANT`, when it forced the choice. */
  forced?: string;
  /** Every variant found, with ggml's score for this machine (0: needs instructions it lacks). */
  variants: { name: string; file: string; score: number }[];
  /** GPU/accelerator backend libraries loaded beside it (e.g. libggml-cuda.so). */
  otherBackends: string[];
}

export interface ModelInfo {
  architecture: string;
  description: string;
  chatTemplate: string;
  nParams: number;
  sizeBytes: number;
  nEmbd: number;
  /** Width of the embedding rows decode takes (nEmbd; wider with Qwen3-VL's deepstack). */
  nEmbdInp: number;
  nLayer: number;
  /** Mixture of experts: experts per block (0 for a dense model). */
  nExpert: number;
  /** Experts each token is routed to (top-k; the most of any block); 0 for a dense model. */
  nExpertUsed: number;
  nCtxTrain: number;
  nVocab: number;
  /** 4 for M-RoPE models (Qwen2-VL family), else 1. */
  nPosPerEmbd: number;
  tokenBos: number;
  tokenEos: number;
  tokenEot: number;
  addBos: boolean;
  addEos: boolean;
  hasEncoder: boolean;
  vocabOnly: boolean;
}

export interface NativeSamplingParams {
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  typicalP?: number;
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  penaltyLastN?: number;
  seed?: number;
  grammar?: string;
  grammarRoot?: string;
}

export interface NativeContextParams {
  contextSize?: number;
  batchSize?: number;
  ubatchSize?: number;
  sequences?: number;
  threads?: number;
  /** -1 auto, 0 off, 1 on */
  flashAttention?: number;
  typeK?: string;
  typeV?: string;
  embeddings?: boolean;
  /** Every row's final hidden state kept (llama_get_embeddings_ith), pooling none. */
  hiddenStates?: boolean;
  pooling?: number;
}

export type NativeDecodeInput =
  | {
      tokens: Int32Array;
      pos0: number;
      seq: number;
      logits: 'none' | 'last' | 'all';
      hidden?: boolean;
      sampleSlot?: number;
    }
  | {
      embeddings: Float32Array;
      nEmbd: number;
      positions?: Int32Array;
      causal?: boolean;
      pos0: number;
      seq: number;
      logits: 'none' | 'last' | 'all';
      hidden?: boolean;
      sampleSlot?: number;
    };

export interface NativeGenerateResult {
  /** Every sampled token (end-of-generation token excluded). */
  tokens: Int32Array;
  /** How many of `tokens` were decoded into the KV cache (the last sampled one is not). */
  nDecoded: number;
  nPrompt: number;
  stopReason: 'eog' | 'length' | 'abort' | 'context';
  prefillMs: number;
  decodeMs: number;
}

declare const brand: unique symbol;

/** Opaque handle of a loaded model inside mm.node. */
export interface NativeModel {
  readonly [brand]: 'NativeModel';
  info(): ModelInfo;
  tokenize(text: string, addSpecial: boolean, parseSpecial: boolean): Int32Array;
  detokenize(tokens: Int32Array, removeSpecial: boolean, unparseSpecial: boolean): string;
  tokenPiece(token: number, special: boolean): Buffer;
  /** The first token whose piece (special tokens rendered) is exactly `text`; -1 when none. */
  lookupToken(text: string): number;
  /** Input-embedding rows of these tokens, [n][nEmbd]. */
  tokenRows(tokens: Int32Array): Float32Array;
  tokenAttr(token: number): { attr: number; eog: boolean };
  applyChatTemplate(
    messages: { role: string; content: string }[],
    addGenerationPrompt: boolean,
    templateOverride?: string,
    jinja?: boolean,
  ): string;
  createContext(params: NativeContextParams): NativeOperation<NativeContext>;
  dispose(): void;
}

/** Opaque handle of a context (KV cache) inside mm.node. */
export interface NativeContext {
  readonly [brand]: 'NativeContext';
  info(): { contextSize: number; batchSize: number; sequences: number };
  decode(input: NativeDecodeInput): NativeOperation<{
    nVocab: number;
    logits?: Float32Array;
    hidden?: Float32Array;
    token?: number;
  }>;
  setSampler(slot: number, sampling: NativeSamplingParams | null): void;
  generate(
    params: {
      prompt?: Int32Array;
      pos0: number;
      seq: number;
      maxTokens: number;
      ignoreEog?: boolean;
      sampling?: NativeSamplingParams;
    },
    onToken: (token: number, piece: Buffer) => void,
  ): NativeOperation<NativeGenerateResult>;
  embed(tokens: Int32Array): NativeOperation<Float32Array>;
  clear(): void;
  remove(seq: number, p0: number, p1: number): boolean;
  copy(src: number, dst: number, p0: number, p1: number): void;
  posMax(seq: number): number;
  saveState(seq: number): NativeOperation<Buffer>;
  loadState(state: Uint8Array, seq: number): NativeOperation<void>;
  dispose(): void;
}

/** One prompt piece for the scheduler: text tokens, or an embedding span, at explicit positions. */
export type NativeScheduleItem =
  | { tokens: Int32Array; pos0: number }
  | {
      /**
       * The rows: a Float32Array (a view of a native matrix is taken in place, else copied), or
       * a projector's native tensor itself (its rows are shared; no ArrayBuffer is made).
       */
      embeddings: Float32Array | NativeTensor;
      nEmbd: number;
      /** n or 4·n (M-RoPE, [dim][token]) entries; absent: pos0, pos0 + 1, ... */
      positions?: Int32Array;
      causal: boolean;
      pos0: number;
    };

export interface NativeScheduleRequest {
  id: number;
  seq: number;
  /** Cells of `seq` kept (positions [0, keep)); the rest are dropped first. */
  keep: number;
  /** The rest of the prompt; the last item is text. */
  items: NativeScheduleItem[];
  maxTokens: number;
  /** Positions of the sequence: generation stops before it. */
  limit: number;
  ignoreEog?: boolean;
  sampling?: NativeSamplingParams;
}

export type NativeScheduleEnd =
  | {
      id: number;
      error?: undefined;
      reason: 'eog' | 'length' | 'context' | 'cancel';
      generated: number;
      /** Generated tokens decoded into the KV cache (all but the last, while generating). */
      decoded: number;
      /** Whether the whole prompt reached the KV cache. */
      prefilled: boolean;
      queueMs: number;
      prefillMs: number;
      decodeMs: number;
      /** Compute time of the decode steps that carried its generating row (llama_decode only). */
      decodeComputeMs: number;
    }
  | { id: number; error: Error };

export interface NativeScheduleStats {
  iterations: number;
  tokenSteps: number;
  /** Batches (token or mixed) with at least one generating row. */
  decodeSteps: number;
  decodeRows: number;
  prefillRows: number;
  spans: number;
  /**
   * Batches of generating rows (their tokens as embedding rows) and a chunk of a media span, made
   * while other requests generate (MM_PREFILL_CHUNK rows of the span each).
   */
  mixedSteps: number;
  maxRows: number;
  active: number;
  /**
   * Token batches with generating rows only (no prompt rows), their rows, and their compute time
   * (ms, without the wait for the compute gate): the decode throughput of the batching itself.
   */
  decodeOnlySteps: number;
  decodeOnlyRows: number;
  decodeOnlyMs: number;
  /**
   * Steps that ran between two slices of another graph (an image or audio encode computed in
   * slices of about MM_ENCODE_SLICE_MS lends the compute gate to a waiting step after each).
   */
  lentSteps: number;
}

/**
 * The native batching thread over one context (src/backbone/scheduler.h). It calls `onEvents`
 * (no arguments) when events wait; `drain()` takes them: [id, token] pairs, then ends.
 */
export interface NativeScheduler {
  readonly [brand]: 'NativeScheduler';
  submit(request: NativeScheduleRequest): void;
  cancel(id: number): void;
  drain(): { tokens: Int32Array; ends: NativeScheduleEnd[] };
  stats(): NativeScheduleStats;
  ref(): void;
  unref(): void;
  dispose(): void;
}

export interface NativeAddon
  extends NativeVisionAddon,
    NativeAudioAddon,
    NativeFusedAddon,
    NativeGenAddon,
    NativeRpcAddon,
    NativeTrainAddon {
  AddonScheduler: new (context: NativeContext, onEvents: () => void) => NativeScheduler;
  systemInfo(): SystemInfo;
  probeModel(path: string, options?: { vocabOnly?: boolean }): NativeOperation<ModelInfo>;
  loadModel(
    path: string,
    options: { gpuLayers?: number; mmap?: boolean; vocabOnly?: boolean; rpc?: string[] },
    onProgress?: (progress: number) => void,
  ): NativeOperation<NativeModel>;
  /** GBNF for a JSON schema (llama.cpp's converter). */
  jsonSchemaToGrammar(schemaJson: string): string;
}

// ---- vision: @mm/encoders, @mm/projectors ----------------------------------------------------

/** Decoded 8-bit RGB, row-major, 3 bytes per pixel. */
export interface NativeRgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export type NativeResizeAlgo = 'bilinear' | 'bicubic' | 'lanczos';
export type NativePadStyle = 'none' | 'ceil' | 'nearest';

/**
 * libmtmd's preprocessing of one model: resize (+ pad) to a square of `imageSize`, or, with
 * `align` (dynamic resolution, Qwen-VL), to the picture's aspect ratio with sides that are
 * multiples of `align` and minPixels <= w·h <= maxPixels; then scale and normalise.
 */
export interface NativePreprocessParams {
  imageSize: number;
  align?: number;
  minPixels?: number;
  maxPixels?: number;
  resize: NativeResizeAlgo;
  pad: NativePadStyle;
  padColor: [number, number, number];
  mean: [number, number, number];
  std: [number, number, number];
}

/** Preprocessed encoder input: planar [3][height][width] f32. */
export interface NativePixels {
  width: number;
  height: number;
  data: Float32Array;
}

/** Facts of an mmproj's vision tower. */
export interface NativeVisionFacts {
  /** clip.projector_type as written in the file. */
  projectorType: string;
  imageSize: number;
  patchSize: number;
  gridSize: number;
  nPatches: number;
  nEmbdVision: number;
  nHead: number;
  nLayer: number;
  /** Blocks the graph runs (libmtmd: block_count - 1 without clip.vision.feature_layer). */
  nBlocksRun: number;
  featureLayers: number[];
  /** Width of the features handed to the projector. */
  nEmbdFeatures: number;
  hasClassEmbd: boolean;
  ffnOp: 'gelu' | 'gelu_quick' | 'silu' | 'gelu_erf';
  normOp: 'layer' | 'rms';
  /** The input size follows the picture (Qwen-VL); imageSize/nPatches are then typical values. */
  dynamicResolution: boolean;
  /** A picture may be cut into several chunks (LLaVA-1.6 anyres, MiniCPM-V slices, Idefics3 tiles). */
  tiled: boolean;
  /** Patches merged per side by the projector (Qwen-VL 2, Gemma 3's pool kernel). */
  nMerge: number;
  /** Qwen2.5-VL: every n-th block attends fully, the others within windows (0: none). */
  windowPattern: number;
  preprocess: NativePreprocessParams;
  /** Audio towers only (Whisper-style `a.*`): the mel input and how rows are grouped. */
  audio?: NativeAudioTowerFacts;
}

/** The audio tower's input (libmtmd's whisper preprocessor) and its row grouping. */
export interface NativeAudioTowerFacts {
  nMel: number;
  /** Mel frames of one chunk (3000: 30 s). */
  nFrames: number;
  sampleRate: number;
  nFft: number;
  windowLen: number;
  hopLen: number;
  /** Frames stacked per embedding row by the projector (ultravox; 0 when none). */
  stackFactor: number;
  /** Pairs of rows averaged before the post-norm (qwen2a). */
  avgPool: boolean;
}

export interface NativeMmprojInfo extends NativeVisionFacts {
  /** Projector family (a file saying `mlp` with mm.3.weight is `mlp_norm`). */
  family: string;
  encoderFamily: string;
  /** The projection width: the text model's n_embd. */
  nEmbdOut: number;
  /** Embedding rows of a typical picture (dynamic-resolution families vary). */
  nTokensOut: number;
  /** Whether the LLM attends causally inside the image span (Gemma 3: false). */
  causal: boolean;
  /** Text libmtmd puts before / after each image chunk ('' for none), special tokens parsed. */
  imageBegin: string;
  imageEnd: string;
  /** Audio projectors: the text libmtmd puts before / after an audio part's chunks ('' for none). */
  audioBegin?: string;
  audioEnd?: string;
  /** How libmtmd lays out the chunks of a tiled picture (see NativeSliceTemplate). */
  slices: NativeSliceTemplate;
}

/**
 * libmtmd's slice template (mtmd.cpp): the text around the overview, the slices and each row of
 * a tiled picture. The string lists are token texts, each naming one token of the LLM's
 * vocabulary (libmtmd's lookup_token); `sliceStartFormat` (`%d` twice: row + 1, col + 1) is
 * tokenized with special tokens parsed and used when `sliceStart` is empty.
 */
export interface NativeSliceTemplate {
  overviewStart: string[];
  overviewEnd: string[];
  slicesStart: string[];
  slicesEnd: string[];
  sliceStart: string[];
  sliceEnd: string[];
  sliceMid: string[];
  rowEnd: string[];
  sliceStartFormat: string;
  rowEndTrail: boolean;
  overviewFirst: boolean;
}

/**
 * How a tiling family cut a picture: the chunks are the overview first (when there is one), then
 * gridY rows of gridX slices, row-major. All zero / false for a picture that makes one chunk.
 */
export interface NativeSliceLayout {
  gridX: number;
  gridY: number;
  hasOverview: boolean;
}

export interface NativeVisionEncoderInfo extends NativeVisionFacts {
  family: string;
  flashAttn: boolean;
  backend: string;
  nThreads: number;
  /** Threads the graph runs on: nThreads, fewer for graphs too small to gain from them. */
  graphThreads: number;
  weightsBytes: number;
}

export interface NativeProjectorInfo extends NativeMmprojInfo {
  nEmbdIn: number;
  nTokensIn: number;
  backend: string;
  nThreads: number;
  graphThreads: number;
  weightsBytes: number;
}

/** A [nTokens, nEmbd] f32 matrix owned by native code (Features, Embeddings). */
export interface NativeTensor {
  readonly __brand: 'NativeTensor';
  /** nx·ny: the rows as a row-major grid (0 when none); causal: see NativeMmprojInfo. */
  info(): { nTokens: number; nEmbd: number; nx: number; ny: number; causal: boolean };
  /** A copy, row-major. */
  toFloat32Array(): Float32Array;
  /** A second call throws MM_DISPOSED. */
  dispose(): void;
}

export interface NativeVisionEncoder {
  info(): NativeVisionEncoderInfo;
  /** One input per chunk, in the layout's order. */
  preprocess(
    rgb: Uint8Array,
    width: number,
    height: number,
  ): NativeOperation<{ inputs: NativePixels[]; layout: NativeSliceLayout }>;
  /** One Features per chunk, in the layout's order. */
  encode(
    rgb: Uint8Array,
    width: number,
    height: number,
  ): NativeOperation<{
    features: NativeTensor[];
    layout: NativeSliceLayout;
    preprocessMs: number;
    encodeMs: number;
  }>;
  encodePixels(
    pixels: Float32Array,
    width?: number,
    height?: number,
  ): NativeOperation<{ features: NativeTensor[]; preprocessMs: number; encodeMs: number }>;
  /** Many pictures of one feature shape in one call: their rows concatenated. */
  encodeMany(
    images: { data: Uint8Array; width: number; height: number }[],
  ): NativeOperation<{ rows: Float32Array; nTokens: number; nEmbd: number; encodeMs: number }>;
  dispose(): void;
}

export interface NativeAudioEncoderInfo extends NativeVisionFacts {
  family: string;
  audio: NativeAudioTowerFacts;
  flashAttn: boolean;
  backend: string;
  nThreads: number;
  weightsBytes: number;
}

export interface NativeAudioEncoder {
  info(): NativeAudioEncoderInfo;
  /** Mono PCM at info().audio.sampleRate → one Features per 30 s mel chunk. */
  encode(pcm: Float32Array): NativeOperation<{
    features: NativeTensor[];
    melMs: number;
    encodeMs: number;
  }>;
  dispose(): void;
}

export interface NativeProjector {
  info(): NativeProjectorInfo;
  project(features: NativeTensor): NativeOperation<{ embeddings: NativeTensor; projectMs: number }>;
  /** A picture through `encoder` and this projector in one worker: one Embeddings per chunk. */
  encodeProject(
    encoder: NativeVisionEncoder,
    rgb: Uint8Array,
    width: number,
    height: number,
  ): NativeOperation<{
    embeddings: NativeTensor[];
    layout: NativeSliceLayout;
    preprocessMs: number;
    encodeMs: number;
    projectMs: number;
  }>;
  dispose(): void;
}

export interface NativeVisionAddon {
  decodeImage(bytes: Uint8Array, maxPixels: number): NativeOperation<NativeRgbImage>;
  /** The same decode on the calling thread (for small pictures). */
  decodeImageSync(bytes: Uint8Array, maxPixels: number): NativeRgbImage;
  /** Format and size from the header only (synchronous). */
  probeImage(bytes: Uint8Array): { width: number; height: number; format: string };
  resizeImage(
    rgb: Uint8Array,
    width: number,
    height: number,
    targetWidth: number,
    targetHeight: number,
    options: {
      resize?: NativeResizeAlgo;
      pad?: NativePadStyle;
      padColor?: [number, number, number];
    },
  ): NativeOperation<NativeRgbImage>;
  preprocessImage(
    rgb: Uint8Array,
    width: number,
    height: number,
    params: NativePreprocessParams,
  ): NativeOperation<NativePixels>;
  /** `rpc`: a ggml RPC worker ('host:port') whose first device runs the graphs (see rpc.ts). */
  loadVisionEncoder(
    path: string,
    options: { threads?: number; gpu?: boolean; rpc?: string; flashAttn?: 'auto' | 'on' | 'off' },
  ): NativeOperation<NativeVisionEncoder>;
  loadAudioEncoder(
    path: string,
    options: { threads?: number; gpu?: boolean; rpc?: string; flashAttn?: 'auto' | 'on' | 'off' },
  ): NativeOperation<NativeAudioEncoder>;
  /** `audio`: the audio tower's projector (`mm.a.*`) instead of the vision one. */
  loadProjector(
    path: string,
    options: { threads?: number; gpu?: boolean; rpc?: string; audio?: boolean },
  ): NativeOperation<NativeProjector>;
  /**
   * Validates an mmproj's header (keys, tensor shapes and types) without reading weights; `audio`:
   * the audio tower and its projector.
   */
  inspectMmproj(path: string, options?: { audio?: boolean }): NativeOperation<NativeMmprojInfo>;
  tensorFromFloat32(
    data: Float32Array,
    nTokens: number,
    nEmbd: number,
    layout?: { nx?: number; ny?: number; causal?: boolean },
  ): NativeTensor;
}

// ---- audio: @mm/encoders ---------------------------------------------------------------------

/** The STFT and chunking of a Whisper-style log-mel (libmtmd's hparams for the model). */
export interface NativeMelParams {
  nMel: number;
  nFft: number;
  windowLen: number;
  hopLen: number;
  sampleRate: number;
  framesPerChunk: number;
}

export interface NativeMelChunks {
  nMel: number;
  /** Frames per chunk. */
  nFrames: number;
  /** One `[nMel][nFrames]` row-major matrix per chunk. */
  chunks: Float32Array[];
}

export interface NativePcm {
  sampleRate: number;
  /** Mono f32. */
  samples: Float32Array;
}

export interface NativeAudioAddon {
  /** A WAV, MP3 or FLAC file to mono f32 at `sampleRate`, as libmtmd's helper decodes it. */
  decodeAudio(
    bytes: Uint8Array,
    sampleRate: number,
    maxSamples: number,
  ): NativeOperation<NativePcm>;
  /** Interleaved f32 PCM to mono at `targetRate`, through the same decoder (an f32 WAV). */
  convertPcm(
    samples: Float32Array,
    channels: number,
    sampleRate: number,
    targetRate: number,
    maxSamples: number,
  ): NativeOperation<NativePcm>;
  /** libmtmd's Whisper log-mel of mono PCM at `params.sampleRate`, split into chunks. */
  logMelSpectrogram(pcm: Float32Array, params: NativeMelParams): NativeOperation<NativeMelChunks>;
}

// ---- projector training: @mm/projectors ------------------------------------------------------

export interface NativeTrainStepResult {
  /** Mean cross-entropy over the batch's answer tokens. */
  loss: number;
  /** Answer tokens whose argmax is the label, of nTargets. */
  nCorrect: number;
  nTargets: number;
}

export interface NativeTrainSample {
  image: number;
  /** Where the picture's rows go in `tokens`. */
  imagePos: number;
  tokens: Int32Array;
  /** Positions (in the sequence with the picture's rows) of the answer tokens. */
  targets: Int32Array;
}

export interface NativeProjectorTrainer {
  info(): {
    params: { name: string; ne: number[] }[];
    steps: number;
    nSamples: number;
    llm: {
      nEmbd: number;
      nLayer: number;
      nHead: number;
      nHeadKv: number;
      nFf: number;
      nVocab: number;
      nCtxTrain: number;
    };
  };
  setData(
    features: Float32Array,
    nImages: number,
    nPatches: number,
    samples: NativeTrainSample[],
  ): void;
  setParam(index: number, data: Float32Array): void;
  getParam(index: number): Float32Array;
  setMoments(index: number, m: Float32Array, v: Float32Array): void;
  getMoment(index: number, second: boolean): Float32Array;
  setSteps(steps: number): void;
  step(
    batch: Int32Array,
    hyper: { lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number },
  ): NativeOperation<NativeTrainStepResult>;
  evaluate(
    batch: Int32Array,
    grads: boolean,
  ): NativeOperation<NativeTrainStepResult & { grads?: Float32Array[] }>;
  /** The frozen LLM alone on T rows of input embeddings: logits [T * nVocab]. */
  logits(embeddings: Float32Array): NativeOperation<Float32Array>;
  dispose(): void;
}

export interface NativeTrainAddon {
  createProjectorTrainer(options: {
    model: string;
    projector: 'mlp' | 'linear' | 'ldpv2';
    nEmbdV: number;
    nHidden: number;
    threads?: number;
  }): NativeOperation<NativeProjectorTrainer>;
}
