import { MmInvalidArgumentError } from '@mm/errors';
import {
  type GgufMetadata,
  type GgufTensorInput,
  type GgufWriteSpec,
  getFloat,
  getUint,
  ggufToBuffer,
  gv,
  writeGguf,
} from '@mm/gguf';
import { fixturePath } from './fixtures.js';
import {
  resolveTinyMmprojOptions,
  type TinyMmprojOptions,
  type TinyMmprojPair,
  tinyMmprojFixture,
} from './mmproj.js';
import { Prng } from './prng.js';
import { llamaSpec, resolveTinyLlamaOptions, type TinyLlamaOptions } from './tiny-llama.js';

/**
 * A tiny random mixture-of-experts text model in llama.cpp's Mixtral form: architecture `llama`
 * with `llama.expert_count` / `llama.expert_used_count`, and per block a router
 * `blk.N.ffn_gate_inp.weight` [n_embd, n_expert] and stacked experts
 * `blk.N.ffn_{gate,up}_exps.weight` [n_embd, n_ff, n_expert], `blk.N.ffn_down_exps.weight`
 * [n_ff, n_embd, n_expert] in place of the dense FFN (llama.cpp src/models/llama.cpp: softmax
 * gating, top-k, the k weights renormalized). Everything else (vocabulary, chat template,
 * attention) is the tiny llama's.
 *
 * The router's weights are spread widely (logits of a few units) so that tokens pick their experts
 * decisively and different tokens pick different experts; `routeFirstToken` computes, from the
 * spec's own weights, which experts block 0 picks for a token that starts a sequence.
 */

export interface TinyMoeOptions extends TinyLlamaOptions {
  /** Experts per block. Default 4. */
  nExpert?: number;
  /** Experts each token goes through (top-k). Default 2. */
  nExpertUsed?: number;
  /** Spread of the router logits for a unit-RMS input. Default 4. */
  routerScale?: number;
}

export type ResolvedTinyMoeOptions = Required<TinyMoeOptions>;

export function resolveTinyMoeOptions(options: TinyMoeOptions = {}): ResolvedTinyMoeOptions {
  const seed = options.seed ?? 0;
  const base = resolveTinyLlamaOptions({
    ...options,
    nFf: options.nFf ?? 64,
    name: options.name ?? `tiny-moe-s${seed}`,
  });
  const nExpert = options.nExpert ?? 4;
  const nExpertUsed = options.nExpertUsed ?? 2;
  const routerScale = options.routerScale ?? 4;
  if (!Number.isSafeInteger(nExpert) || nExpert < 2 || nExpert > 64)
    throw new MmInvalidArgumentError('nExpert', `must be an integer in [2, 64], got ${nExpert}`);
  if (!Number.isSafeInteger(nExpertUsed) || nExpertUsed < 1 || nExpertUsed > nExpert) {
    throw new MmInvalidArgumentError(
      'nExpertUsed',
      `must be an integer in [1, nExpert = ${nExpert}], got ${nExpertUsed}`,
    );
  }
  if (!(routerScale > 0)) throw new MmInvalidArgumentError('routerScale', 'must be > 0');
  return { ...base, nExpert, nExpertUsed, routerScale };
}

/** The metadata and tensors of a tiny MoE model, deterministic in the options. */
export function tinyMoeSpec(options: TinyMoeOptions = {}): GgufWriteSpec {
  const o = resolveTinyMoeOptions(options);
  const rng = new Prng(o.seed);
  const weights = (n: number, std: number, mean?: number) => rng.normals(n, std, mean);
  // The dense llama first (its weights drawn first), then the FFN of each block swapped for
  // the router and the experts, drawn after.
  const dense = llamaSpec(o, weights);
  const metadata = new Map(dense.metadata as GgufMetadata);
  metadata.set(
    'general.description',
    gv.string(
      `tiny random llama-architecture mixture-of-experts test model, ${o.nExpert} experts, top ${o.nExpertUsed} (@mm/testing, seed ${o.seed})`,
    ),
  );
  metadata.set('llama.expert_count', gv.uint32(o.nExpert));
  metadata.set('llama.expert_used_count', gv.uint32(o.nExpertUsed));

  const type = o.weightType;
  const experts = (name: string, nIn: number, nOut: number): GgufTensorInput => ({
    name,
    type,
    shape: [nIn, nOut, o.nExpert],
    data: weights(nIn * nOut * o.nExpert, 1 / Math.sqrt(nIn)),
  });
  const tensors: GgufTensorInput[] = [];
  for (const t of dense.tensors ?? []) {
    const m = /^blk\.(\d+)\.ffn_(gate|up|down)\.weight$/.exec(t.name);
    if (!m) {
      tensors.push(t);
      continue;
    }
    if (m[2] !== 'gate') continue;
    const p = `blk.${m[1]}`;
    tensors.push(
      {
        name: `${p}.ffn_gate_inp.weight`,
        type: 'F32',
        shape: [o.nEmbd, o.nExpert],
        data: f32(weights(o.nEmbd * o.nExpert, o.routerScale / Math.sqrt(o.nEmbd))),
      },
      experts(`${p}.ffn_gate_exps.weight`, o.nEmbd, o.nFf),
      experts(`${p}.ffn_up_exps.weight`, o.nEmbd, o.nFf),
      experts(`${p}.ffn_down_exps.weight`, o.nFf, o.nEmbd),
    );
  }
  return { metadata, tensors, alignment: 32 };
}

function f32(v: Float32Array | Uint16Array): Float32Array {
  if (v instanceof Float32Array) return v;
  throw new Error('the router is drawn as f32');
}

/** The tiny MoE model as GGUF bytes. */
export function tinyMoeBuffer(options: TinyMoeOptions = {}): Uint8Array {
  return ggufToBuffer(tinyMoeSpec(options));
}

/** Writes the tiny MoE model to `path`. Same options → byte-identical file. */
export async function writeTinyMoe(path: string, options: TinyMoeOptions = {}): Promise<void> {
  await writeGguf(path, tinyMoeSpec(options));
}

/** File name of a tiny MoE fixture: every resolved option is part of it. */
export function tinyMoeFixtureName(options: TinyMoeOptions = {}): string {
  const o = resolveTinyMoeOptions(options);
  const name = o.name.replace(/[^A-Za-z0-9_-]/g, '_');
  return (
    `tiny-moe-s${o.seed}-x${o.nExpert}-k${o.nExpertUsed}-rs${o.routerScale}-l${o.nLayers}` +
    `-e${o.nEmbd}-h${o.nHead}-kv${o.nHeadKv}-ff${o.nFf}-c${o.nCtx}-r${o.ropeFreqBase}` +
    `-eps${o.rmsEps}-${o.weightType.toLowerCase()}-${name}.gguf`
  );
}

/** A cached tiny MoE model with these options (see writeTinyMoe). */
export function tinyMoeFixture(options: TinyMoeOptions = {}): Promise<string> {
  return fixturePath(tinyMoeFixtureName(options), (path) => writeTinyMoe(path, options));
}

export interface TinyMoePair extends TinyMmprojPair {
  nExpert: number;
  nExpertUsed: number;
}

/**
 * A cached tiny mmproj (default: the `mlp` CLIP one, LLaVA-style) and a tiny MoE text model whose
 * n_embd is the mmproj's projection width: a MoE-LLaVA-shaped pair.
 */
export async function tinyMoePair(
  options: { mmproj?: TinyMmprojOptions; moe?: Omit<TinyMoeOptions, 'nEmbd'> } = {},
): Promise<TinyMoePair> {
  const mmprojOptions = options.mmproj ?? { family: 'mlp' };
  const nEmbd = resolveTinyMmprojOptions(mmprojOptions).projectionDim;
  const moe = resolveTinyMoeOptions({ ...options.moe, nEmbd });
  const [mmproj, llm] = await Promise.all([
    tinyMmprojFixture(mmprojOptions),
    tinyMoeFixture({ ...options.moe, nEmbd }),
  ]);
  return { mmproj, llm, nEmbd, nExpert: moe.nExpert, nExpertUsed: moe.nExpertUsed };
}

/**
 * The experts block 0 routes `token` to when it is the first token of a sequence (position 0:
 * attention then sees only the token itself, so the block is exact without RoPE), best first:
 * rmsnorm → V → O → residual → rmsnorm → router → top-k, computed in f64 from the spec's
 * weights. Needs an F32 spec.
 */
export function routeFirstToken(spec: GgufWriteSpec, token: number): number[] {
  const md = spec.metadata as GgufMetadata;
  const u = (k: string) => getUint(md, k);
  const nEmbd = u('llama.embedding_length');
  const nHead = u('llama.attention.head_count');
  const nHeadKv = u('llama.attention.head_count_kv');
  const nExpert = u('llama.expert_count');
  const k = u('llama.expert_used_count');
  const eps = getFloat(md, 'llama.attention.layer_norm_rms_epsilon');
  const t = (name: string): Float32Array => {
    const found = (spec.tensors ?? []).find((x) => x.name === name);
    if (!found || !(found.data instanceof Float32Array))
      throw new Error(`${name}: missing or not f32`);
    return found.data;
  };
  const headDim = nEmbd / nHead;
  const nKv = headDim * nHeadKv;
  const matvec = (w: Float32Array, x: Float64Array, nIn: number, nOut: number) => {
    const y = new Float64Array(nOut);
    for (let o = 0; o < nOut; o++) {
      let s = 0;
      for (let i = 0; i < nIn; i++) s += w[o * nIn + i]! * x[i]!;
      y[o] = s;
    }
    return y;
  };
  const rmsnorm = (x: Float64Array, w: Float32Array) => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const r = 1 / Math.sqrt(ss / x.length + eps);
    return x.map((v, i) => v * r * w[i]!);
  };
  const x = Float64Array.from(t('token_embd.weight').subarray(token * nEmbd, (token + 1) * nEmbd));
  const v = matvec(t('blk.0.attn_v.weight'), rmsnorm(x, t('blk.0.attn_norm.weight')), nEmbd, nKv);
  // one key: each query head's output is its KV head's value
  const heads = new Float64Array(nEmbd);
  const group = nHead / nHeadKv;
  for (let h = 0; h < nHead; h++) {
    const kv = Math.floor(h / group);
    for (let d = 0; d < headDim; d++) heads[h * headDim + d] = v[kv * headDim + d]!;
  }
  const attn = matvec(t('blk.0.attn_output.weight'), heads, nEmbd, nEmbd);
  const ffnIn = x.map((a, i) => a + attn[i]!);
  const logits = matvec(
    t('blk.0.ffn_gate_inp.weight'),
    rmsnorm(ffnIn, t('blk.0.ffn_norm.weight')),
    nEmbd,
    nExpert,
  );
  return Array.from(logits, (l, e) => [l, e] as const)
    .sort((a, b) => b[0] - a[0])
    .slice(0, k)
    .map(([, e]) => e);
}
