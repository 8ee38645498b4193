// The one typed contract of mm.node. Only this package turns its untyped values into typed
// ones; other packages import these types and the wrappers in index.ts.

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
}

export interface ModelInfo {
  architecture: string;
  description: string;
  chatTemplate: string;
  nParams: number;
  sizeBytes: number;
  nEmbd: number;
  nLayer: number;
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
  pooling?: number;
}

export type NativeDecodeInput =
  | { tokens: Int32Array; pos0: number; seq: number; logits: 'none' | 'last' | 'all' }
  | {
      embeddings: Float32Array;
      nEmbd: number;
      positions?: Int32Array;
      causal?: boolean;
      pos0: number;
      seq: number;
      logits: 'none' | 'last' | 'all';
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
  tokenAttr(token: number): { attr: number; eog: boolean };
  applyChatTemplate(
    messages: { role: string; content: string }[],
    addGenerationPrompt: boolean,
    templateOverride?: string,
  ): string;
  createContext(params: NativeContextParams): NativeOperation<NativeContext>;
  dispose(): void;
}

/** Opaque handle of a context (KV cache) inside mm.node. */
export interface NativeContext {
  readonly [brand]: 'NativeContext';
  info(): { contextSize: number; batchSize: number; sequences: number };
  decode(input: NativeDecodeInput): NativeOperation<{ nVocab: number; logits?: Float32Array }>;
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

export interface NativeAddon {
  systemInfo(): SystemInfo;
  probeModel(path: string, options?: { vocabOnly?: boolean }): NativeOperation<ModelInfo>;
  loadModel(
    path: string,
    options: { gpuLayers?: number; mmap?: boolean; vocabOnly?: boolean },
    onProgress?: (progress: number) => void,
  ): NativeOperation<NativeModel>;
  /** GBNF for a JSON schema (llama.cpp's converter). */
  jsonSchemaToGrammar(schemaJson: string): string;
}
