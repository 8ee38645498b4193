import type { NativeModel, NativeOperation } from './addon-types.js';

// ---- the long tail: libmtmd's fused encoder + projector (napi/addon_fused.cpp) ----------------

/** What an mmproj's header says, validated as libmtmd will read it (no weights read). */
export interface NativeFusedInfo {
  /** clip.projector_type as written in the file (else the vision, else the audio one). */
  projectorType: string;
  /** The projector type libmtmd reads for the vision encoder ('' without one). */
  visionProjectorType: string;
  /** The projector type libmtmd reads for the audio encoder ('' without one). */
  audioProjectorType: string;
  hasVision: boolean;
  /** Vision (0 without a vision encoder). */
  imageSize: number;
  patchSize: number;
  nEmbdVision: number;
  nLayer: number;
  /** As written (libmtmd's rows may be wider, e.g. Qwen3-VL's deepstack features). */
  projectionDim: number;
  hasAudio: boolean;
  /** The mono PCM rate the audio encoder takes, Hz (0 without an audio encoder). */
  audioSampleRate: number;
  nMelBins: number;
  nEmbdAudio: number;
  nLayerAudio: number;
}

/** One item of a picture's or a sound's layout, in libmtmd's order. */
export type NativeFusedItem =
  | { kind: 'text'; tokens: Int32Array }
  | {
      kind: 'media';
      /** An image chunk, or an audio chunk (causal, one position per row: M-RoPE 1-D). */
      modality: 'image' | 'audio';
      /** [nTokens][nEmbd] rows in the text model's input space. */
      rows: Float32Array;
      nTokens: number;
      nEmbd: number;
      /** The token grid (M-RoPE: merged patches across and down; else nTokens x 1). */
      nx: number;
      ny: number;
      causal: boolean;
      /** KV positions the chunk takes (mtmd_input_chunk_get_n_pos). */
      nPos: number;
    };

export interface NativeFusedMedia {
  info(): NativeFusedInfo & { nEmbd: number; mrope: boolean; nThreads: number };
  /** The layout of one picture (mtmd_tokenize of the media marker alone) with each chunk encoded. */
  embed(
    rgb: Uint8Array,
    width: number,
    height: number,
  ): NativeOperation<{ items: NativeFusedItem[]; encodeMs: number; totalMs: number }>;
  /** The layout of one sound (mono f32 PCM at audioSampleRate), each audio chunk encoded. */
  embedAudio(
    pcm: Float32Array,
  ): NativeOperation<{ items: NativeFusedItem[]; encodeMs: number; totalMs: number }>;
  dispose(): void;
}

export interface NativeFusedAddon {
  /** Validates an mmproj's header for libmtmd (types of every key it reads, bounds, shapes). */
  inspectFused(path: string): NativeOperation<NativeFusedInfo>;
  /** The projector types mm runs with its own graphs, and those it hands to libmtmd. */
  fusedProjectorTypes(): { own: string[]; fused: string[]; fusedAudio: string[] };
  /** libmtmd's mtmd_context for the mmproj and a loaded text model (which it keeps loaded). */
  loadFusedMedia(
    path: string,
    model: NativeModel,
    options: { threads?: number; gpu?: boolean },
  ): NativeOperation<NativeFusedMedia>;
}
