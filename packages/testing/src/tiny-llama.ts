import { MmInvalidArgumentError } from '@mm/errors';
import {
  f16ToF32,
  type GgufMetadata,
  type GgufTensorInput,
  type GgufWriteSpec,
  ggufToBuffer,
  gv,
  writeGguf,
} from '@mm/gguf';
import { Prng } from './prng.js';

/**
 * A tiny random llama-architecture text model that llama.cpp (pinned 80fb11ac) loads. Its
 * metadata mirrors the bundled apps/demo/models/tiny-shapes/tiny-shapes-llm.gguf, a file llama.cpp
 * is known to load: same keys, types, tokenizer layout and tensor names (plus `general.alignment`).
 */

/** The ChatML template of tiny-shapes (MODEL.md). */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** llama.cpp token types (`enum llama_token_type`). */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export interface TinyLlamaOptions {
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /** Default 2. */
  nLayers?: number;
  /** Default 64. */
  nEmbd?: number;
  /** Default 4. */
  nHead?: number;
  /** Default nHead. Must divide nHead. */
  nHeadKv?: number;
  /** Default 128. */
  nFf?: number;
  /** Default 256. */
  nCtx?: number;
  /** Default 10000. */
  ropeFreqBase?: number;
  /** Default 1e-5. */
  rmsEps?: number;
  /**
   * Type of the 2-D weights; norms stay F32 (llama.cpp's MOSTLY_F16, MOSTLY_Q8_0). Q8_0 needs nEmbd
   * and nFf to be multiples of 32. Default F32.
   */
  weightType?: 'F32' | 'F16' | 'Q8_0';
  /** general.name. Default `tiny-llama-s<seed>`. */
  name?: string;
}

export type ResolvedTinyLlamaOptions = Required<TinyLlamaOptions>;

/** Tokens after the specials and bytes: merges first (best score first), then single characters. */
const MERGES = [
  '▁t',
  'he',
  '▁the',
  '▁a',
  'in',
  'er',
  '▁s',
  'on',
  'an',
  're',
  '▁i',
  'is',
  '▁is',
  'at',
  '▁o',
  'or',
  'en',
  '▁w',
  'ha',
  '▁c',
  'it',
  '▁it',
  'ed',
  'es',
  '▁h',
  'ou',
  '▁b',
  'll',
  '▁f',
  '▁in',
  '▁on',
  '▁an',
  'nd',
  '▁and',
  '▁of',
  '▁to',
  'ing',
  '▁wh',
  '▁what',
] as const;

const SPECIALS = [
  ['<unk>', TokenType.UNKNOWN],
  ['<s>', TokenType.CONTROL],
  ['</s>', TokenType.CONTROL],
  ['<|im_start|>', TokenType.CONTROL],
  ['<|im_end|>', TokenType.CONTROL],
] as const;

export const TINY_LLAMA_SPECIAL_IDS = {
  unk: 0,
  bos: 1,
  eos: 4,
  eot: 4,
  imStart: 3,
  imEnd: 4,
} as const;

export interface TinyLlamaVocab {
  tokens: string[];
  scores: Float32Array;
  tokenTypes: Int32Array;
}

/**
 * The SentencePiece-style ("llama") vocabulary: <unk> <s> </s> <|im_start|> <|im_end|>, the 256
 * byte tokens <0x00>..<0xFF>, merges, then `▁` and the printable ASCII characters. Scores are
 * 0 for specials and bytes and decrease by 1 per token from the first merge on (merge order).
 */
export function tinyLlamaVocab(): TinyLlamaVocab {
  const tokens: string[] = [];
  const types: number[] = [];
  const scores: number[] = [];
  for (const [text, type] of SPECIALS) {
    tokens.push(text);
    types.push(type);
    scores.push(0);
  }
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TokenType.BYTE);
    scores.push(0);
  }
  const normal = [...MERGES, '▁'];
  for (let c = 0x21; c <= 0x7e; c++) normal.push(String.fromCharCode(c));
  normal.forEach((text, i) => {
    tokens.push(text);
    types.push(TokenType.NORMAL);
    scores.push(-i);
  });
  return { tokens, scores: new Float32Array(scores), tokenTypes: new Int32Array(types) };
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0)
    throw new MmInvalidArgumentError(name, `must be a positive integer, got ${v}`);
  return v;
}

export function resolveTinyLlamaOptions(opts: TinyLlamaOptions = {}): ResolvedTinyLlamaOptions {
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new MmInvalidArgumentError('seed', `must be an integer in [0, 2^32), got ${seed}`);
  }
  const r: ResolvedTinyLlamaOptions = {
    seed,
    nLayers: positiveInt('nLayers', opts.nLayers ?? 2),
    nEmbd: positiveInt('nEmbd', opts.nEmbd ?? 64),
    nHead: positiveInt('nHead', opts.nHead ?? 4),
    nHeadKv: positiveInt('nHeadKv', opts.nHeadKv ?? opts.nHead ?? 4),
    nFf: positiveInt('nFf', opts.nFf ?? 128),
    nCtx: positiveInt('nCtx', opts.nCtx ?? 256),
    ropeFreqBase: opts.ropeFreqBase ?? 10000,
    rmsEps: opts.rmsEps ?? 1e-5,
    weightType: opts.weightType ?? 'F32',
    name: opts.name ?? `tiny-llama-s${seed}`,
  };
  if (r.nEmbd % r.nHead !== 0)
    throw new MmInvalidArgumentError('nHead', `${r.nHead} does not divide nEmbd ${r.nEmbd}`);
  if ((r.nEmbd / r.nHead) % 2 !== 0)
    throw new MmInvalidArgumentError('nHead', 'the head dimension must be even (RoPE)');
  if (r.nHead % r.nHeadKv !== 0)
    throw new MmInvalidArgumentError('nHeadKv', `${r.nHeadKv} does not divide nHead ${r.nHead}`);
  if (r.weightType !== 'F32' && r.weightType !== 'F16' && r.weightType !== 'Q8_0') {
    throw new MmInvalidArgumentError(
      'weightType',
      `must be 'F32', 'F16' or 'Q8_0', got ${String(r.weightType)}`,
    );
  }
  if (r.weightType === 'Q8_0' && (r.nEmbd % 32 !== 0 || r.nFf % 32 !== 0)) {
    throw new MmInvalidArgumentError(
      'weightType',
      `Q8_0 rows are whole 32-weight blocks: nEmbd ${r.nEmbd} and nFf ${r.nFf} must be multiples of 32`,
    );
  }
  if (!(r.ropeFreqBase > 0) || !(r.rmsEps > 0))
    throw new MmInvalidArgumentError('ropeFreqBase/rmsEps', 'must be > 0');
  return r;
}

/** The metadata and tensors of a tiny llama model, deterministic in the options. */
export function tinyLlamaSpec(options: TinyLlamaOptions = {}): GgufWriteSpec {
  const o = resolveTinyLlamaOptions(options);
  // Weights in a fixed order from one PRNG stream, so the file depends only on the options.
  const rng = new Prng(o.seed);
  return llamaSpec(o, (n, std, mean) => rng.normals(n, std, mean));
}

/** Weight values: `n` numbers around `mean` with spread `std` (F32 values, or F16 bits). */
export type WeightSource = (n: number, std: number, mean?: number) => Float32Array | Uint16Array;

/** A llama-architecture spec with the tiny vocabulary, any size, weights from `weights`. */
export function llamaSpec(o: ResolvedTinyLlamaOptions, weights: WeightSource): GgufWriteSpec {
  const vocab = tinyLlamaVocab();
  const nVocab = vocab.tokens.length;
  const headDim = o.nEmbd / o.nHead;
  const nEmbdKv = headDim * o.nHeadKv;

  const metadata: GgufMetadata = new Map([
    ['general.architecture', gv.string('llama')],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(`tiny random llama-architecture test model (@mm/testing, seed ${o.seed})`),
    ],
    ['general.file_type', gv.uint32({ F32: 0, F16: 1, Q8_0: 7 }[o.weightType])],
    ['general.alignment', gv.uint32(32)],
    ['llama.vocab_size', gv.uint32(nVocab)],
    ['llama.context_length', gv.uint32(o.nCtx)],
    ['llama.embedding_length', gv.uint32(o.nEmbd)],
    ['llama.block_count', gv.uint32(o.nLayers)],
    ['llama.feed_forward_length', gv.uint32(o.nFf)],
    ['llama.attention.head_count', gv.uint32(o.nHead)],
    ['llama.attention.head_count_kv', gv.uint32(o.nHeadKv)],
    ['llama.rope.dimension_count', gv.uint32(headDim)],
    ['llama.rope.freq_base', gv.float32(o.ropeFreqBase)],
    ['llama.attention.layer_norm_rms_epsilon', gv.float32(o.rmsEps)],
    ['tokenizer.ggml.model', gv.string('llama')],
    ['tokenizer.ggml.pre', gv.string('default')],
    ['tokenizer.ggml.tokens', gv.array('string', vocab.tokens)],
    ['tokenizer.ggml.scores', gv.array('float32', vocab.scores)],
    ['tokenizer.ggml.token_type', gv.array('int32', vocab.tokenTypes)],
    ['tokenizer.ggml.bos_token_id', gv.uint32(TINY_LLAMA_SPECIAL_IDS.bos)],
    ['tokenizer.ggml.eos_token_id', gv.uint32(TINY_LLAMA_SPECIAL_IDS.eos)],
    ['tokenizer.ggml.eot_token_id', gv.uint32(TINY_LLAMA_SPECIAL_IDS.eot)],
    ['tokenizer.ggml.unknown_token_id', gv.uint32(TINY_LLAMA_SPECIAL_IDS.unk)],
    ['tokenizer.ggml.add_bos_token', gv.bool(true)],
    ['tokenizer.ggml.add_eos_token', gv.bool(false)],
    ['tokenizer.ggml.add_space_prefix', gv.bool(true)],
    ['tokenizer.chat_template', gv.string(CHATML_TEMPLATE)],
  ]);

  const tensors: GgufTensorInput[] = [];
  // the writer quantizes F32 values to Q8_0 (F16 bits from the source are widened first)
  const data = (v: Float32Array | Uint16Array) => (o.weightType === 'Q8_0' ? f32(v) : v);
  /** A matrix with ggml shape [nIn, nOut]: N(0, 1/nIn), so activations keep their scale. */
  const matrix = (name: string, nIn: number, nOut: number): void => {
    tensors.push({
      name,
      type: o.weightType,
      shape: [nIn, nOut],
      data: data(weights(nIn * nOut, 1 / Math.sqrt(nIn))),
    });
  };
  /** A norm weight: around 1. */
  const norm = (name: string): void => {
    tensors.push({ name, type: 'F32', shape: [o.nEmbd], data: f32(weights(o.nEmbd, 0.1, 1)) });
  };

  tensors.push({
    name: 'token_embd.weight',
    type: o.weightType,
    shape: [o.nEmbd, nVocab],
    data: data(weights(o.nEmbd * nVocab, 1)),
  });
  for (let l = 0; l < o.nLayers; l++) {
    const p = `blk.${l}`;
    norm(`${p}.attn_norm.weight`);
    matrix(`${p}.attn_q.weight`, o.nEmbd, o.nEmbd);
    matrix(`${p}.attn_k.weight`, o.nEmbd, nEmbdKv);
    matrix(`${p}.attn_v.weight`, o.nEmbd, nEmbdKv);
    matrix(`${p}.attn_output.weight`, o.nEmbd, o.nEmbd);
    norm(`${p}.ffn_norm.weight`);
    matrix(`${p}.ffn_gate.weight`, o.nEmbd, o.nFf);
    matrix(`${p}.ffn_up.weight`, o.nEmbd, o.nFf);
    matrix(`${p}.ffn_down.weight`, o.nFf, o.nEmbd);
  }
  norm('output_norm.weight');
  // Logits with a spread of a few units: sampling is neither uniform nor one-hot.
  tensors.push({
    name: 'output.weight',
    type: o.weightType,
    shape: [o.nEmbd, nVocab],
    data: data(weights(o.nEmbd * nVocab, 2 / Math.sqrt(o.nEmbd))),
  });

  return { metadata, tensors, alignment: 32 };
}

function f32(v: Float32Array | Uint16Array): Float32Array {
  return v instanceof Float32Array ? v : f16ToF32(v);
}

/** The tiny model as GGUF bytes. */
export function tinyLlamaBuffer(options: TinyLlamaOptions = {}): Uint8Array {
  return ggufToBuffer(tinyLlamaSpec(options));
}

/** Writes the tiny model to `path`. Same options → byte-identical file. */
export async function writeTinyLlama(path: string, options: TinyLlamaOptions = {}): Promise<void> {
  await writeGguf(path, tinyLlamaSpec(options));
}
