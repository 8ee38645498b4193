import { MmError } from '@mm/errors';
import { inspectFused, inspectMmproj, type MmprojInfo, projectorTypes } from '@mm/projectors';

/**
 * The vision families mm runs with its own graphs, as `mm info` lists them: the encoder, how a
 * picture is sized, the markers libmtmd puts around each image and whether the LLM attends to the
 * image span causally. (`mm inspect <mmproj>` reads the same facts from a file; a test checks this
 * table against it.)
 */
export interface VisionFamily {
  family: string;
  encoder: string;
  resolution: string;
  imageBegin: string;
  imageEnd: string;
  causal: boolean;
}

export const VISION_FAMILIES: readonly VisionFamily[] = [
  ...(['mlp', 'mlp_norm', 'ldp', 'ldpv2'] as const).map((family) => ({
    family,
    encoder: 'clip',
    resolution:
      'fixed (image_size square); with clip.vision.image_grid_pinpoints tiled (LLaVA-1.6 anyres: image_size slices of the best pinpoint, then the overview)',
    imageBegin: '',
    imageEnd: '',
    causal: true,
  })),
  ...(['qwen2vl_merger', 'qwen2.5vl_merger'] as const).map((family) => ({
    family,
    encoder: 'qwen2vl',
    resolution: `dynamic (8-4096 tokens of 2x2 patches, M-RoPE${family === 'qwen2.5vl_merger' ? ', 112-px windows' : ''})`,
    imageBegin: '<|vision_start|>',
    imageEnd: '<|vision_end|>',
    causal: true,
  })),
  {
    family: 'gemma3',
    encoder: 'siglip',
    resolution: 'fixed (image_size square, pooled)',
    imageBegin: '<start_of_image>',
    imageEnd: '<end_of_image>',
    causal: false,
  },
  {
    family: 'idefics3',
    encoder: 'siglip',
    resolution:
      'tiled (image_size tiles of a longest-edge resize, then the global image; pixel shuffle)',
    imageBegin: '',
    imageEnd: '',
    causal: true,
  },
  {
    family: 'resampler',
    encoder: 'minicpmv',
    resolution:
      'dynamic slices (MiniCPM-V: an overview and up to 9 slices of about image_size^2 pixels in the aspect ratio; learned queries give each the same tokens)',
    imageBegin: '',
    imageEnd: '',
    causal: true,
  },
];

/** The audio families mm runs with its own graphs (the Whisper-style tower + its projector). */
export interface AudioFamily {
  family: string;
  encoder: string;
  rows: string;
  audioBegin: string;
  audioEnd: string;
}

export const AUDIO_FAMILIES: readonly AudioFamily[] = [
  {
    family: 'ultravox',
    encoder: 'whisper',
    rows: '30 s chunks; 1500 rows stacked by clip.audio.projector.stack_factor (187 for 8)',
    audioBegin: '',
    audioEnd: '',
  },
  {
    family: 'qwen2a',
    encoder: 'whisper',
    rows: '30 s chunks; 750 rows (pooled pairs); also the audio of qwen2.5o files',
    audioBegin: '<|audio_bos|>',
    audioEnd: '<|audio_eos|>',
  },
];

/** The audio projector types mm hands to libmtmd's fused path (no own graph). */
export function fusedAudioProjectorTypes(): string[] {
  // qwen2.5o files: both towers run in mm's own graphs (qwen2.5vl_merger + qwen2a)
  const mine = new Set([...AUDIO_FAMILIES.map((f) => f.family), 'qwen2.5o']);
  return projectorTypes().fusedAudio.filter((t) => !mine.has(t));
}

/** What mm makes of an mmproj's audio tower, for `mm inspect` (header only). */
export interface AudioPath {
  path: string;
  error?: { code: string; message: string };
  family?: string;
  sampleRate?: number;
  nMel?: number;
  stackFactor?: number;
  tokensPerChunk?: number;
  audioBegin?: string;
  audioEnd?: string;
  nEmbdOut?: number;
}

export async function audioPath(path: string): Promise<AudioPath> {
  try {
    const info = await inspectMmproj(path, { audio: true });
    return {
      path: 'own graph',
      family: info.family,
      sampleRate: info.audio?.sampleRate,
      nMel: info.audio?.nMel,
      stackFactor: info.audio?.stackFactor,
      tokensPerChunk: info.nTokensOut,
      audioBegin: info.audioBegin ?? '',
      audioEnd: info.audioEnd ?? '',
      nEmbdOut: info.nEmbdOut,
    };
  } catch (e) {
    if (!MmError.isInstance(e)) throw e;
    if (e.code === 'MM_UNSUPPORTED_FAMILY') {
      try {
        const f = await inspectFused(path);
        if (f.hasAudio) return { path: 'libmtmd (fused)', family: f.projectorType };
      } catch (e2) {
        if (!MmError.isInstance(e2)) throw e2;
        return { path: 'refused', error: { code: e2.code, message: e2.message } };
      }
    }
    return { path: 'refused', error: { code: e.code, message: e.message } };
  }
}

/** `mm inspect` rows for an mmproj's audio path through mm. */
export function audioRows(a: AudioPath, row: (k: string, v: unknown) => string): string[] {
  if (a.error) return [row('mm (audio)', `${a.path}: ${a.error.code}: ${a.error.message}`)];
  if (a.path === 'libmtmd (fused)') {
    return [
      row('mm (audio)', `libmtmd (fused): ${a.family} (libmtmd's encoder + projector, one stage)`),
    ];
  }
  return [
    row('mm (audio)', `${a.path}: ${a.family} (encoder whisper)`),
    row('audio input', `${a.sampleRate} Hz mono, ${a.nMel} mel bins, 30 s chunks`),
    row(
      'audio tokens',
      `${a.tokensPerChunk} per chunk${a.stackFactor ? ` (frames stacked by ${a.stackFactor})` : ''}`,
    ),
    row('audio markers', markers(a.audioBegin ?? '', a.audioEnd ?? '')),
    row('audio width', `${a.nEmbdOut} (the text model's n_embd)`),
  ];
}

/**
 * The projector types mm runs through libmtmd's fused encoder + projector (the long tail): every
 * vision type the vendored libmtmd sets up that has no own graph above. Their markers, tiles and
 * positions are libmtmd's own.
 */
export function fusedProjectorTypes(): string[] {
  const { own, fused } = projectorTypes();
  // qwen2.5o files: both towers run in mm's own graphs (qwen2.5vl_merger + qwen2a)
  const mine = new Set([...own, ...VISION_FAMILIES.map((f) => f.family), 'qwen2.5o']);
  return fused.filter((t) => !mine.has(t));
}

export function markers(begin: string, end: string): string {
  return begin || end ? `${begin || '-'} ... ${end || '-'}` : 'none';
}

/** What mm makes of an mmproj, for `mm inspect` (header only, no weights). */
export interface MmprojPath {
  /**
   * 'own graph' when mm's own encoder and projector run the file, 'libmtmd (fused)' when libmtmd's
   * fused encoder + projector does (a projector type without an own graph), else why not.
   */
  path: string;
  error?: { code: string; message: string };
  family?: string;
  encoderFamily?: string;
  dynamicResolution?: boolean;
  /** A picture may make several chunks (slices or tiles and an overview), each inputSize square. */
  tiled?: boolean;
  /** Fixed-size families: the square input side. */
  inputSize?: number;
  /** Dynamic resolution: sides are multiples of `align` px, minPixels..maxPixels in all. */
  align?: number;
  minPixels?: number;
  maxPixels?: number;
  minTokens?: number;
  maxTokens?: number;
  /** Image tokens of a fixed-size picture (dynamic: of the typical one). */
  imageTokens?: number;
  resize?: string;
  /** Qwen2.5-VL: every n-th block attends fully, the others within 112-px windows (0: none). */
  windowPattern?: number;
  imageBegin?: string;
  imageEnd?: string;
  causal?: boolean;
  /** The projection width: the text model's n_embd. */
  nEmbdOut?: number;
  /** The fused path: the vision tower as the header gives it (libmtmd decides the rest). */
  patchSize?: number;
  visionWidth?: number;
  visionBlocks?: number;
  projectionDim?: number;
}

export async function mmprojPath(path: string): Promise<MmprojPath> {
  let info: MmprojInfo;
  try {
    info = await inspectMmproj(path);
  } catch (e) {
    if (!MmError.isInstance(e)) throw e;
    if (e.code === 'MM_UNSUPPORTED_FAMILY') return fusedPath(path);
    return { path: 'refused', error: { code: e.code, message: e.message } };
  }
  const p = info.preprocess;
  const out: MmprojPath = {
    path: 'own graph',
    family: info.family,
    encoderFamily: info.encoderFamily,
    dynamicResolution: info.dynamicResolution,
    ...(info.tiled ? { tiled: true } : {}),
  };
  if (info.dynamicResolution && p.align && p.minPixels && p.maxPixels) {
    const unit = p.align * p.align;
    Object.assign(out, {
      align: p.align,
      minPixels: p.minPixels,
      maxPixels: p.maxPixels,
      minTokens: Math.floor(p.minPixels / unit),
      maxTokens: Math.floor(p.maxPixels / unit),
    });
  } else {
    out.inputSize = p.imageSize;
  }
  return Object.assign(out, {
    imageTokens: info.nTokensOut,
    resize: `${p.resize}, pad ${p.pad}`,
    windowPattern: info.windowPattern,
    imageBegin: info.imageBegin,
    imageEnd: info.imageEnd,
    causal: info.causal,
    nEmbdOut: info.nEmbdOut,
  });
}

/** A projector type without an own graph: libmtmd's fused path when libmtmd runs it. */
async function fusedPath(path: string): Promise<MmprojPath> {
  try {
    const f = await inspectFused(path);
    return {
      path: 'libmtmd (fused)',
      family: f.projectorType,
      inputSize: f.imageSize,
      patchSize: f.patchSize,
      visionWidth: f.nEmbdVision,
      visionBlocks: f.nLayer,
      projectionDim: f.projectionDim,
    };
  } catch (e) {
    if (!MmError.isInstance(e)) throw e;
    return {
      path: e.code === 'MM_UNSUPPORTED_FAMILY' ? 'not supported by mm' : 'refused',
      error: { code: e.code, message: e.message },
    };
  }
}

/** `mm inspect` rows for an mmproj's path through mm. */
export function mmprojRows(m: MmprojPath, row: (k: string, v: unknown) => string): string[] {
  if (m.error) return [row('mm', `${m.path}: ${m.error.code}: ${m.error.message}`)];
  if (m.path === 'libmtmd (fused)') {
    return [
      row('mm', `libmtmd (fused): ${m.family} (libmtmd's encoder + projector, one stage)`),
      row('layout', "libmtmd's: its markers, tiles and positions, as mtmd_tokenize makes them"),
    ];
  }
  const rows = [row('mm', `${m.path}: ${m.family} (encoder ${m.encoderFamily})`)];
  if (m.dynamicResolution && m.tiled) {
    rows.push(
      row(
        'resolution',
        `dynamic slices: an overview and slices of about ${m.inputSize}x${m.inputSize} pixels in the picture's aspect ratio (as libmtmd cuts it), ${m.resize}`,
      ),
      row('image tokens', `${m.imageTokens} per chunk`),
    );
  } else if (m.dynamicResolution) {
    rows.push(
      row(
        'resolution',
        `dynamic: sides multiples of ${m.align} px, ${m.minPixels}-${m.maxPixels} pixels (${m.minTokens}-${m.maxTokens} tokens), ${m.resize}`,
      ),
    );
  } else if (m.tiled) {
    rows.push(
      row(
        'resolution',
        `tiled: ${m.inputSize}x${m.inputSize} chunks (slices or tiles, and an overview, as libmtmd cuts the picture)`,
      ),
      row('image tokens', `${m.imageTokens} per chunk`),
    );
  } else {
    rows.push(
      row('resolution', `fixed: ${m.inputSize}x${m.inputSize}, ${m.resize}`),
      row('image tokens', m.imageTokens),
    );
  }
  if (m.windowPattern) {
    rows.push(row('attention', `112-px windows, full every ${m.windowPattern} blocks`));
  }
  rows.push(
    row('image markers', markers(m.imageBegin ?? '', m.imageEnd ?? '')),
    row('image span', m.causal ? 'causal' : 'non-causal (attends both ways)'),
    row('output width', `${m.nEmbdOut} (the text model's n_embd)`),
  );
  return rows;
}
