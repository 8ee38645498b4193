import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufMetadata, type GgufTensorInput, type GgufValue, gv } from '@mm/gguf';
import { FIXTURE_GENERATOR_VERSION } from './fixtures.js';
import type { TextVocab } from './text-vocab.js';
import { checkSeed, positiveInt, TensorBuilder } from './weights.js';

/**
 * What the tiny text-model generators paired with the mmproj fixtures share: their options, the
 * header keys llama.cpp reads of every architecture, and the tensors of a llama-style decoder. A
 * file's bytes depend on the order of its keys and tensors: the builders add them in the order each
 * generator always did.
 */

/** The options every tiny text model takes. */
export interface TinyTextModelOptions {
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /** Default 2. */
  nLayers?: number;
  /** Default 64: the width of the tiny mmproj's output. */
  nEmbd?: number;
  /** Default 4. */
  nHead?: number;
  /** Default 2. Must divide nHead. */
  nHeadKv?: number;
  /** Default 160. */
  nFf?: number;
  /** Default 4096. */
  nCtx?: number;
  /** Type of the 2-D weights; norms and biases stay F32. Default F32. */
  weightType?: 'F32' | 'F16';
  /** general.name. */
  name?: string;
}

/** The sizes and name every text model has (long-tail text models are all F32). */
export type ResolvedTextModel = Required<Omit<TinyTextModelOptions, 'weightType'>>;
/** With the weight type. */
export type TypedTextModel = ResolvedTextModel & { weightType: 'F32' | 'F16' };

/** The sizes every text model has, checked, with these defaults where the family's differ. */
export function resolveTextModel(
  opts: TinyTextModelOptions,
  d: { nEmbd?: number; nHeadKv?: number; nFf?: number; name: (seed: number) => string },
): ResolvedTextModel {
  const seed = checkSeed(opts.seed ?? 0);
  const nHead = positiveInt('nHead', opts.nHead ?? 4);
  return {
    seed,
    nLayers: positiveInt('nLayers', opts.nLayers ?? 2),
    nEmbd: positiveInt('nEmbd', opts.nEmbd ?? d.nEmbd ?? 64),
    nHead,
    nHeadKv: positiveInt('nHeadKv', opts.nHeadKv ?? d.nHeadKv ?? Math.min(2, nHead)),
    nFf: positiveInt('nFf', opts.nFf ?? d.nFf ?? 160),
    nCtx: positiveInt('nCtx', opts.nCtx ?? 4096),
    name: opts.name ?? d.name(seed),
  };
}

/** nHeadKv divides nHead; the `positive` values (RoPE bases, norm epsilon) are > 0. */
export function checkTextModel(r: ResolvedTextModel, positive: readonly number[] = []): void {
  if (r.nHead % r.nHeadKv !== 0) {
    throw new MmInvalidArgumentError('nHeadKv', `${r.nHeadKv} does not divide nHead ${r.nHead}`);
  }
  if (positive.some((v) => !(v > 0))) {
    throw new MmInvalidArgumentError('ropeFreqBase/rmsEps', 'must be > 0');
  }
}

/**
 * The keys of architecture `a` up to the KV head count, in llama.cpp's converter order
 * (`general.description`: "tiny random <kind>"), then `more`.
 */
export function textModelMetadata(
  a: string,
  o: TypedTextModel,
  kind: string,
  nVocab: number,
  more: readonly (readonly [string, GgufValue])[],
): GgufMetadata {
  return new Map([
    ['general.architecture', gv.string(a)],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(`tiny random ${kind} (@mm/testing v${FIXTURE_GENERATOR_VERSION})`),
    ],
    ['general.file_type', gv.uint32(o.weightType === 'F16' ? 1 : 0)],
    ['general.alignment', gv.uint32(32)],
    [`${a}.vocab_size`, gv.uint32(nVocab)],
    [`${a}.context_length`, gv.uint32(o.nCtx)],
    [`${a}.embedding_length`, gv.uint32(o.nEmbd)],
    [`${a}.block_count`, gv.uint32(o.nLayers)],
    [`${a}.feed_forward_length`, gv.uint32(o.nFf)],
    [`${a}.attention.head_count`, gv.uint32(o.nHead)],
    [`${a}.attention.head_count_kv`, gv.uint32(o.nHeadKv)],
    ...more,
  ]);
}

/** A byte-level BPE vocabulary's keys (`gpt2` tokenizer) with pre-tokenizer `pre`. */
export function bpeTokenizerKeys(pre: string, vocab: TextVocab): [string, GgufValue][] {
  return [
    ['tokenizer.ggml.model', gv.string('gpt2')],
    ['tokenizer.ggml.pre', gv.string(pre)],
    ['tokenizer.ggml.tokens', gv.array('string', vocab.tokens)],
    ['tokenizer.ggml.token_type', gv.array('int32', vocab.tokenTypes)],
    ['tokenizer.ggml.merges', gv.array('string', vocab.merges ?? [])],
  ];
}

/** Qwen's special ids (`<|im_end|>` ends a turn, `<|endoftext|>` pads, no BOS added) and `template`. */
export function qwenChatKeys(vocab: TextVocab, template: string): [string, GgufValue][] {
  const id = (t: string) => vocab.tokens.indexOf(t);
  return [
    ['tokenizer.ggml.eos_token_id', gv.uint32(id('<|im_end|>'))],
    ['tokenizer.ggml.padding_token_id', gv.uint32(id('<|endoftext|>'))],
    ['tokenizer.ggml.bos_token_id', gv.uint32(id('<|endoftext|>'))],
    ['tokenizer.ggml.add_bos_token', gv.bool(false)],
    ['tokenizer.chat_template', gv.string(template)],
  ];
}

export interface DecoderLayout {
  /** Spread of token_embd's entries. */
  tokenEmbdStd: number;
  /** No `output.weight`: the logits use token_embd. Default false. */
  tied?: boolean;
  /** Biases on q, k and v (Qwen2). Default false. */
  qkvBias?: boolean;
  /** Width of q (nHead * head dimension). Default nEmbd. */
  qDim?: number;
  /** Width of k and v (nHeadKv * head dimension). */
  kvDim: number;
  /** Per-head q/k norms of this width (Gemma 3, Qwen3). Default 0: none. */
  qkNorm?: number;
  /** Gemma's norms after attention and after the FFN. Default false. */
  postNorms?: boolean;
}

/**
 * The tensors of a llama-style decoder with a SwiGLU FFN, deterministic in the seed: logits with
 * a spread of a few units (greedy decoding is neither uniform nor stuck), those of the vocabulary's
 * quiet ids (control tokens, non-text bytes) near zero.
 */
export function decoderTensors(
  o: TypedTextModel,
  vocab: TextVocab,
  l: DecoderLayout,
): GgufTensorInput[] {
  const w = o.weightType;
  const E = o.nEmbd;
  const nVocab = vocab.tokens.length;
  const qDim = l.qDim ?? E;
  const b = new TensorBuilder(o.seed);
  const proj = (name: string, nOut: number) =>
    l.qkvBias ? b.linear(name, w, E, nOut) : b.matrix(`${name}.weight`, w, E, nOut);
  b.add('token_embd.weight', w, [E, nVocab], l.tokenEmbdStd);
  for (let il = 0; il < o.nLayers; il++) {
    const p = `blk.${il}`;
    b.norm(`${p}.attn_norm`, E, false);
    proj(`${p}.attn_q`, qDim);
    proj(`${p}.attn_k`, l.kvDim);
    proj(`${p}.attn_v`, l.kvDim);
    if (l.qkNorm) {
      b.norm(`${p}.attn_q_norm`, l.qkNorm, false);
      b.norm(`${p}.attn_k_norm`, l.qkNorm, false);
    }
    b.matrix(`${p}.attn_output.weight`, w, qDim, E);
    if (l.postNorms) b.norm(`${p}.post_attention_norm`, E, false);
    b.norm(`${p}.ffn_norm`, E, false);
    b.matrix(`${p}.ffn_gate.weight`, w, E, o.nFf);
    b.matrix(`${p}.ffn_up.weight`, w, E, o.nFf);
    b.matrix(`${p}.ffn_down.weight`, w, o.nFf, E);
    if (l.postNorms) b.norm(`${p}.post_ffw_norm`, E, false);
  }
  b.norm('output_norm', E, false);
  if (!l.tied) b.matrix('output.weight', w, E, nVocab, 2);
  b.scaleRows(l.tied ? 'token_embd.weight' : 'output.weight', vocab.quiet, 0.01);
  return b.tensors;
}
