import { MmGgufFormatError } from './errors.js';
import { getBool, getString, getUint } from './metadata.js';
import {
  GGML_TYPES,
  type GgmlTypeName,
  type GgufFile,
  type GgufValue,
  LLAMA_FILE_TYPES,
} from './types.js';

export interface GgufTypeSummary {
  type: GgmlTypeName;
  tensors: number;
  elements: number;
  bytes: number;
}

export interface GgufTextModelSummary {
  contextLength: number | null;
  embeddingLength: number | null;
  blockCount: number | null;
  feedForwardLength: number | null;
  /** Per-layer arrays are reported as their maximum. */
  headCount: number | null;
  headCountKv: number | null;
  /** Length of tokenizer.ggml.tokens, else `<arch>.vocab_size`. */
  vocabSize: number | null;
  tokenizerModel: string | null;
  hasChatTemplate: boolean;
  /** Mixture of experts (only when `<arch>.expert_count` is there): experts per block. */
  expertCount?: number;
  /** Experts each token goes through (top-k; the most of any block), null when absent. */
  expertUsedCount?: number | null;
}

export interface GgufMmprojSummary {
  hasVisionEncoder: boolean;
  hasAudioEncoder: boolean;
  /** clip.projector_type, else the vision or audio one. */
  projectorType: string | null;
  visionProjectorType: string | null;
  audioProjectorType: string | null;
  imageSize: number | null;
  patchSize: number | null;
  visionEmbeddingLength: number | null;
  visionBlockCount: number | null;
  visionHeadCount: number | null;
  visionFeedForwardLength: number | null;
  /** clip.vision.projection_dim, else clip.audio.projection_dim. */
  projectionDim: number | null;
  audioEmbeddingLength: number | null;
  audioBlockCount: number | null;
}

export interface GgufSummary {
  version: number;
  /** `general.architecture`, e.g. `llama`, `clip`. */
  architecture: string | null;
  name: string | null;
  /** `general.file_type` and its llama.cpp name (without LLAMA_FTYPE_). */
  fileType: number | null;
  fileTypeName: string | null;
  /** Sum of the tensors' element counts. */
  parameterCount: number;
  tensorCount: number;
  tensorBytes: number;
  metadataCount: number;
  alignment: number;
  dataOffset: number;
  fileSize: number;
  /** One entry per ggml type present, in ggml type id order. */
  types: GgufTypeSummary[];
  kind: 'text' | 'mmproj' | 'other';
  text: GgufTextModelSummary | null;
  mmproj: GgufMmprojSummary | null;
}

function optString(file: GgufFile, key: string): string | null {
  return getString(file, key, null);
}

function optUint(file: GgufFile, key: string): number | null {
  return getUint(file, key, null);
}

/** A count that may be stored per layer (array): the maximum. */
function optUintOrMax(file: GgufFile, key: string): number | null {
  const v: GgufValue | undefined = file.metadata.get(key);
  if (v?.type === 'array') {
    if (v.itemType === 'array' || v.itemType === 'string' || v.itemType === 'bool') {
      throw new MmGgufFormatError(
        `key '${key}' is an array of ${v.itemType}, expected integers`,
        file.metadataOffsets.get(key) ?? -1,
      );
    }
    let max: number | null = null;
    for (const x of v.value) {
      const n = Number(x);
      if (max === null || n > max) max = n;
    }
    return max;
  }
  return optUint(file, key);
}

function textSummary(file: GgufFile, arch: string): GgufTextModelSummary {
  const tokens = file.metadata.get('tokenizer.ggml.tokens');
  let vocabSize = optUint(file, `${arch}.vocab_size`);
  if (tokens?.type === 'array') vocabSize = tokens.value.length;
  return {
    contextLength: optUint(file, `${arch}.context_length`),
    embeddingLength: optUint(file, `${arch}.embedding_length`),
    blockCount: optUint(file, `${arch}.block_count`),
    feedForwardLength: optUintOrMax(file, `${arch}.feed_forward_length`),
    headCount: optUintOrMax(file, `${arch}.attention.head_count`),
    headCountKv: optUintOrMax(file, `${arch}.attention.head_count_kv`),
    vocabSize,
    tokenizerModel: optString(file, 'tokenizer.ggml.model'),
    hasChatTemplate: file.metadata.has('tokenizer.chat_template'),
    ...moeSummary(file, arch),
  };
}

function moeSummary(
  file: GgufFile,
  arch: string,
): Pick<GgufTextModelSummary, 'expertCount' | 'expertUsedCount'> {
  const expertCount = optUint(file, `${arch}.expert_count`);
  if (expertCount === null) return {};
  return { expertCount, expertUsedCount: optUintOrMax(file, `${arch}.expert_used_count`) };
}

function mmprojSummary(file: GgufFile): GgufMmprojSummary {
  const names = file.tensors.map((t) => t.name);
  const hasVision =
    getBool(file, 'clip.has_vision_encoder', null) ?? names.some((n) => n.startsWith('v.'));
  const hasAudio =
    getBool(file, 'clip.has_audio_encoder', null) ?? names.some((n) => n.startsWith('a.'));
  const visionProjectorType = optString(file, 'clip.vision.projector_type');
  const audioProjectorType = optString(file, 'clip.audio.projector_type');
  return {
    hasVisionEncoder: hasVision,
    hasAudioEncoder: hasAudio,
    projectorType:
      optString(file, 'clip.projector_type') ?? visionProjectorType ?? audioProjectorType,
    visionProjectorType,
    audioProjectorType,
    imageSize: optUint(file, 'clip.vision.image_size'),
    patchSize: optUint(file, 'clip.vision.patch_size'),
    visionEmbeddingLength: optUint(file, 'clip.vision.embedding_length'),
    visionBlockCount: optUint(file, 'clip.vision.block_count'),
    visionHeadCount: optUint(file, 'clip.vision.attention.head_count'),
    visionFeedForwardLength: optUint(file, 'clip.vision.feed_forward_length'),
    projectionDim:
      optUint(file, 'clip.vision.projection_dim') ?? optUint(file, 'clip.audio.projection_dim'),
    audioEmbeddingLength: optUint(file, 'clip.audio.embedding_length'),
    audioBlockCount: optUint(file, 'clip.audio.block_count'),
  };
}

/**
 * What `mm inspect` shows about a file: identity, size, per-type tensor totals and the
 * architecture's main hyperparameters (text model or mmproj). Keys of the wrong type throw
 * MmGgufFormatError; missing keys are null.
 */
export function summarizeGguf(file: GgufFile): GgufSummary {
  const architecture = optString(file, 'general.architecture');
  const fileType = optUint(file, 'general.file_type');
  const byType = new Map<GgmlTypeName, GgufTypeSummary>();
  let parameterCount = 0;
  let tensorBytes = 0;
  for (const t of file.tensors) {
    parameterCount += t.nElements;
    tensorBytes += t.byteSize;
    let s = byType.get(t.type);
    if (s === undefined) {
      s = { type: t.type, tensors: 0, elements: 0, bytes: 0 };
      byType.set(t.type, s);
    }
    s.tensors++;
    s.elements += t.nElements;
    s.bytes += t.byteSize;
  }
  const types = [...byType.values()].sort((a, b) => GGML_TYPES[a.type].id - GGML_TYPES[b.type].id);
  const isMmproj = architecture === 'clip';
  const isText =
    !isMmproj &&
    architecture !== null &&
    (file.metadata.has(`${architecture}.block_count`) || file.metadata.has('tokenizer.ggml.model'));
  return {
    version: file.version,
    architecture,
    name: optString(file, 'general.name'),
    fileType,
    fileTypeName: fileType === null ? null : (LLAMA_FILE_TYPES[fileType] ?? null),
    parameterCount,
    tensorCount: file.tensors.length,
    tensorBytes,
    metadataCount: file.metadata.size,
    alignment: file.alignment,
    dataOffset: file.dataOffset,
    fileSize: file.fileSize,
    types,
    kind: isMmproj ? 'mmproj' : isText ? 'text' : 'other',
    text: isText && architecture !== null ? textSummary(file, architecture) : null,
    mmproj: isMmproj ? mmprojSummary(file) : null,
  };
}
