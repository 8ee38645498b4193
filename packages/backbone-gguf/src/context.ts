import { readFile, writeFile } from 'node:fs/promises';
import {
  checkSignal,
  ErrorCode,
  fromNative,
  MmDisposedError,
  MmError,
  MmInvalidArgumentError,
  SerialQueue,
} from '@mm/errors';
import {
  callNative,
  type NativeContext,
  type NativeGenerateResult,
  type NativeModel,
  type NativeOperation,
  runNative,
} from '@mm/native';
import { type Backbone, toInt32Array } from './backbone.js';
import { PushStream } from './push-stream.js';
import { type SamplingOptions, toNativeSampling } from './sampling.js';
import { TextStream } from './text-stream.js';

export type KvCacheType =
  | 'f32'
  | 'f16'
  | 'bf16'
  | 'q8_0'
  | 'q4_0'
  | 'q4_1'
  | 'q5_0'
  | 'q5_1'
  | 'iq4_nl';

export interface ContextOptions {
  /** Tokens the KV cache holds; default: the model's training context. */
  contextSize?: number;
  /** Most tokens decoded per llama_decode call (default 512). */
  batchSize?: number;
  ubatchSize?: number;
  /** Independent sequences in this context (default 1). */
  sequences?: number;
  /** CPU threads (default: all hardware threads). */
  threads?: number;
  /** Flash attention: 'auto' (default), true, false. */
  flashAttention?: 'auto' | boolean;
  /** KV cache element type (default f16), for K and V or each. */
  kvCacheType?: KvCacheType | { k: KvCacheType; v: KvCacheType };
  /** Make a context for pooled text embeddings (`embed()`). */
  embeddings?: boolean;
  /**
   * Keep every row's final hidden state (what llama.cpp's TTS tool reads with
   * `llama_get_embeddings_ith`), so `decode({ hidden: true })` can return the last one: the input of
   * an output projector (`@mm/decoders`). Off by default: nothing is kept or copied then.
   */
  hiddenStates?: boolean;
  pooling?: 'none' | 'mean' | 'cls' | 'last' | 'rank';
  signal?: AbortSignal;
}

/** Anything shaped like `@mm/projectors`' Embeddings. */
export interface EmbeddingsLike {
  readonly nTokens: number;
  readonly nEmbd: number;
  toFloat32Array(): Float32Array;
}

export interface DecodeOptions {
  /** Token ids to decode ... */
  tokens?: ArrayLike<number>;
  /** ... or embedding rows [n, nEmbdInp] (a Float32Array or an Embeddings handle; nEmbdInp is nEmbd but for deepstack models). */
  embeddings?: Float32Array | EmbeddingsLike;
  /** Explicit positions: n entries, or 4·n for M-RoPE ([dim][token]). Default: consecutive. */
  positions?: Int32Array;
  /**
   * KV positions an embedding span occupies (default: its row count). An M-RoPE image span of
   * nx × ny rows occupies max(nx, ny) positions (libmtmd), so the text after it starts there.
   */
  nPos?: number;
  /** false lets an embedding span attend to itself in both directions (image spans). Default true. */
  causal?: boolean;
  /** Sequence id (default 0). */
  seq?: number;
  /** First position; default: after what the sequence holds. Anything at or after it is dropped first. */
  pos?: number;
  /** Which logits to return (default 'last'). */
  logits?: 'none' | 'last' | 'all';
  /** Return the last row's hidden state (context made with `hiddenStates: true`). */
  hidden?: boolean;
  /**
   * Sample the last row's logits with the sampler kept in this slot (`setSampler`), in the same
   * native call: the result's `token`. Needs logits 'last'.
   */
  sampleSlot?: number;
  signal?: AbortSignal;
}

export interface DecodeResult {
  /** 'last': nVocab values; 'all': nTokens × nVocab. */
  logits?: Float32Array;
  /** The last row's hidden state [nEmbd], when asked for with `hidden: true`. */
  hidden?: Float32Array;
  /** The token sampled with `sampleSlot`. */
  token?: number;
  nVocab: number;
  /** Positions the sequence now holds. */
  nPast: number;
}

export interface GenerateOptions {
  /** The whole prompt text. Its longest prefix already in the KV cache is reused, the rest decoded. */
  prompt?: string;
  /** Or the prompt as token ids. */
  tokens?: ArrayLike<number>;
  /** Continue after what the sequence holds instead of matching a prefix. */
  append?: boolean;
  /** Add BOS when tokenizing `prompt` (default: the model's setting, and only at position 0). */
  addBos?: boolean;
  /** Parse special-token text in `prompt` (default true). */
  parseSpecial?: boolean;
  /** Most tokens to generate (default: until the context is full). */
  maxTokens?: number;
  sampling?: SamplingOptions;
  /** Stop when the text contains one of these (the stop text itself is not returned). */
  stop?: readonly string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEndOfGeneration?: boolean;
  seq?: number;
  signal?: AbortSignal;
}

export interface GeneratedToken {
  /** The token id, or -1 for the last chunk when held-back text is flushed at the end. */
  token: number;
  /** Text this token completes (UTF-8 safe: a multi-byte character split across tokens comes whole). */
  text: string;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  stopReason: 'eog' | 'length' | 'stop' | 'context';
  /** Prompt tokens given, and how many of them were reused from the KV cache. */
  promptTokens: number;
  cachedTokens: number;
  prefillMs: number;
  decodeMs: number;
  timeToFirstTokenMs: number;
}

const POOLING = { none: 0, mean: 1, cls: 2, last: 3, rank: 4 } as const;

/** An embedding span whose KV cells (its rows) outnumber the positions it occupies (M-RoPE). */
interface Span {
  start: number;
  nPos: number;
  cells: number;
}
const STATE_MAGIC = 0x4d4d4b56; // 'MMKV'

function positiveInt(name: string, v: number | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < min)
    throw new MmInvalidArgumentError(name, `must be an integer >= ${min}`);
  return v;
}

/**
 * A KV cache on a Backbone. Operations run one at a time, in call order, off the JS thread.
 * The context remembers which tokens each sequence holds, so a new prompt sharing a prefix
 * with the cached one decodes only the difference.
 */
export class Context {
  readonly backbone: Backbone;
  readonly contextSize: number;
  readonly batchSize: number;
  readonly sequences: number;
  #native: NativeContext | undefined;
  readonly #serial = new SerialQueue();
  /** Per sequence: what each KV position holds (a token id, or -1 for an embedding). */
  readonly #history: number[][];
  /** Per sequence: embedding spans whose cell count differs from their positions (M-RoPE). */
  readonly #spans: Span[][];
  #current: NativeOperation<unknown> | undefined;

  private constructor(backbone: Backbone, native: NativeContext, requested: number | undefined) {
    this.backbone = backbone;
    this.#native = native;
    const info = native.info();
    // llama.cpp rounds the KV cache up (to 256 cells); the size asked for is the limit we keep.
    this.contextSize = requested ? Math.min(requested, info.contextSize) : info.contextSize;
    this.batchSize = info.batchSize;
    this.sequences = info.sequences;
    this.#history = Array.from({ length: info.sequences }, () => []);
    this.#spans = Array.from({ length: info.sequences }, () => []);
  }

  /** @internal use Backbone.createContext */
  static async create(backbone: Backbone, model: NativeModel, o: ContextOptions): Promise<Context> {
    checkSignal(o.signal)?.throwIfAborted();
    const kv = o.kvCacheType ?? 'f16';
    const [typeK, typeV] = typeof kv === 'string' ? [kv, kv] : [kv.k, kv.v];
    if (o.pooling !== undefined && !(o.pooling in POOLING)) {
      throw new MmInvalidArgumentError(
        'pooling',
        `must be one of ${Object.keys(POOLING).join(', ')}`,
      );
    }
    const contextSize = positiveInt('contextSize', o.contextSize, 8);
    if (
      contextSize !== undefined &&
      backbone.contextLength > 0 &&
      contextSize > backbone.contextLength * 64
    ) {
      throw new MmInvalidArgumentError(
        'contextSize',
        `is far beyond the model's ${backbone.contextLength}`,
      );
    }
    const native = await runNative(
      () =>
        model.createContext({
          contextSize: contextSize ?? 0,
          batchSize: positiveInt('batchSize', o.batchSize) ?? 512,
          ubatchSize:
            positiveInt('ubatchSize', o.ubatchSize) ?? positiveInt('batchSize', o.batchSize) ?? 512,
          sequences: positiveInt('sequences', o.sequences) ?? 1,
          threads: positiveInt('threads', o.threads) ?? 0,
          flashAttention:
            o.flashAttention === undefined || o.flashAttention === 'auto'
              ? -1
              : o.flashAttention
                ? 1
                : 0,
          typeK,
          typeV,
          embeddings: o.embeddings ?? false,
          hiddenStates: o.hiddenStates ?? false,
          pooling: o.pooling === undefined ? -1 : POOLING[o.pooling],
        }),
      o.signal,
    );
    if (o.signal?.aborted) {
      native.dispose();
      throw o.signal.reason;
    }
    return new Context(backbone, native, contextSize);
  }

  private get native(): NativeContext {
    if (!this.#native) throw new MmDisposedError('Context');
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** Positions sequence `seq` holds: where the next token goes. */
  nPast(seq = 0): number {
    return this.#seqHistory(seq).length;
  }

  /**
   * KV cells sequence `seq` uses: nPast plus what M-RoPE image spans hold beyond their positions
   * (a 16 × 12 span uses 192 cells and 16 positions). The context size bounds cells.
   */
  nCells(seq = 0): number {
    const h = this.#seqHistory(seq);
    let extra = 0;
    for (const sp of this.#spans[seq] as Span[]) extra += sp.cells - sp.nPos;
    return h.length + extra;
  }

  /** Drops positions >= p of a sequence's bookkeeping; a span cut in the middle goes whole. */
  #truncate(seq: number, p: number): number {
    const spans = this.#spans[seq] as Span[];
    for (const sp of spans) if (sp.start < p && p < sp.start + sp.nPos) p = sp.start;
    const h = this.#seqHistory(seq);
    if (p < h.length) h.length = p;
    this.#spans[seq] = spans.filter((sp) => sp.start < p);
    return p;
  }

  /** The tokens sequence `seq` holds (-1 where an embedding was decoded). */
  sequenceTokens(seq = 0): readonly number[] {
    return [...this.#seqHistory(seq)];
  }

  #seqHistory(seq: number): number[] {
    const h = this.#history[seq];
    if (!Number.isInteger(seq) || h === undefined) {
      throw new MmInvalidArgumentError('seq', `must be an integer in [0, ${this.sequences})`);
    }
    return h;
  }

  async #run<T>(
    start: (native: NativeContext) => NativeOperation<T>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const native = this.native;
    return runNative(() => {
      const op = start(native);
      this.#current = op as NativeOperation<unknown>;
      return op;
    }, signal).finally(() => {
      this.#current = undefined;
    });
  }

  /** Decodes tokens or embeddings into a sequence; returns the logits asked for. */
  decode(options: DecodeOptions): Promise<DecodeResult> {
    checkSignal(options.signal)?.throwIfAborted();
    return this.#serial.run(async () => {
      const native = this.native;
      const seq = options.seq ?? 0;
      const hist = this.#seqHistory(seq);
      const pos = options.pos ?? hist.length;
      if (!Number.isInteger(pos) || pos < 0 || pos > hist.length) {
        throw new MmInvalidArgumentError('pos', `must be an integer in [0, ${hist.length}]`);
      }
      const logits = options.logits ?? 'last';
      let tokens: Int32Array | undefined;
      let embd: Float32Array | undefined;
      let nEmbd = 0;
      if (options.tokens !== undefined) {
        if (options.embeddings !== undefined) {
          throw new MmInvalidArgumentError('decode', 'give tokens or embeddings, not both');
        }
        tokens = toInt32Array(options.tokens, 'tokens');
      } else if (options.embeddings instanceof Float32Array) {
        embd = options.embeddings;
        nEmbd = this.backbone.nEmbdInp;
      } else if (options.embeddings !== undefined) {
        embd = options.embeddings.toFloat32Array();
        nEmbd = options.embeddings.nEmbd;
      } else {
        throw new MmInvalidArgumentError('decode', 'give tokens or embeddings');
      }
      const n = tokens ? tokens.length : Math.floor((embd?.length ?? 0) / Math.max(nEmbd, 1));
      if (n === 0) throw new MmInvalidArgumentError('decode', 'nothing to decode');
      const nPos = tokens ? n : (options.nPos ?? n);
      if (!Number.isInteger(nPos) || nPos < 1 || nPos > n) {
        throw new MmInvalidArgumentError('nPos', `must be an integer in [1, ${n}]`);
      }
      if (embd && nEmbd !== this.backbone.nEmbdInp) {
        throw new MmError(
          ErrorCode.MM_MODEL_MISMATCH,
          `embeddings have width ${nEmbd} but the model's is ${this.backbone.nEmbdInp}`,
        );
      }
      let start = pos;
      if (start < hist.length) {
        start = this.#truncate(seq, start);
        callNative(() => native.remove(seq, start, -1));
      }
      const cells = this.nCells(seq);
      if (cells + n > this.contextSize) {
        throw new MmError(
          ErrorCode.MM_OUT_OF_CONTEXT,
          `${n} ${tokens ? 'tokens' : 'embeddings'} at position ${start} need ${cells + n} positions (KV cells); the context holds ${this.contextSize}`,
          { details: { needed: cells + n, contextSize: this.contextSize } },
        );
      }
      const r = await this.#run(
        (c) =>
          tokens
            ? c.decode({
                tokens,
                pos0: start,
                seq,
                logits,
                hidden: options.hidden ?? false,
                sampleSlot: options.sampleSlot ?? -1,
              })
            : c.decode({
                embeddings: embd as Float32Array,
                nEmbd,
                positions: options.positions,
                causal: options.causal ?? true,
                pos0: start,
                seq,
                logits,
                hidden: options.hidden ?? false,
                sampleSlot: options.sampleSlot ?? -1,
              }),
        options.signal,
      ).catch((e) => {
        // A failed or aborted decode may have written part of the batch: drop it.
        if (!this.disposed) this.native.remove(seq, start, -1);
        throw e;
      });
      if (tokens) hist.push(...tokens);
      else {
        for (let i = 0; i < nPos; i++) hist.push(-1);
        if (nPos !== n) (this.#spans[seq] as Span[]).push({ start, nPos, cells: n });
      }
      return {
        logits: r.logits,
        hidden: r.hidden,
        token: r.token,
        nVocab: r.nVocab,
        nPast: hist.length,
      };
    });
  }

  /**
   * Keeps a sampler (llama.cpp's chain, with its own generator state) in `slot` (0..15) for
   * `decode({ sampleSlot })`, for callers that decode rows themselves and sample each step (a
   * talker). `null` removes it.
   */
  setSampler(slot: number, sampling: SamplingOptions | null): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= 16) {
      throw new MmInvalidArgumentError('slot', 'must be an integer in [0, 16)');
    }
    const native = this.native;
    const params =
      sampling === null
        ? null
        : toNativeSampling(sampling, (s) => this.backbone.jsonSchemaToGrammar(JSON.parse(s)));
    callNative(() => native.setSampler(slot, params));
  }

  /**
   * Generates tokens. Iterate the result for `{ token, text }` as they come (the event loop
   * stays free: tokens arrive through a thread-safe function), or await `.result`.
   * Aborting through `signal` stops within one token and rejects with `signal.reason`; the
   * context stays usable.
   */
  generate(options: GenerateOptions): Generation {
    checkSignal(options.signal)?.throwIfAborted();
    if (
      options.stop !== undefined &&
      (!Array.isArray(options.stop) || options.stop.some((s) => typeof s !== 'string' || s === ''))
    ) {
      throw new MmInvalidArgumentError('stop', 'must be an array of non-empty strings');
    }
    if (
      options.maxTokens !== undefined &&
      (!Number.isInteger(options.maxTokens) || options.maxTokens < 0)
    ) {
      throw new MmInvalidArgumentError('maxTokens', 'must be an integer >= 0');
    }
    if ((options.prompt === undefined) === (options.tokens === undefined)) {
      throw new MmInvalidArgumentError('generate', 'give exactly one of prompt or tokens');
    }
    if (options.prompt !== undefined && typeof options.prompt !== 'string') {
      throw new MmInvalidArgumentError('prompt', 'must be a string');
    }
    const sampling = toNativeSampling(options.sampling, (s) =>
      this.backbone.jsonSchemaToGrammar(JSON.parse(s)),
    );
    this.native; // use-after-dispose fails here, synchronously
    const g = new Generation((gen) => this.#generate(options, sampling, gen));
    g.watch(options.signal);
    return g;
  }

  async #generate(
    o: GenerateOptions,
    sampling: ReturnType<typeof toNativeSampling>,
    g: Generation,
  ): Promise<GenerationResult> {
    const release = await this.#serial.acquire();
    const started = performance.now();
    let firstTokenAt = 0;
    const signal = o.signal;
    try {
      signal?.throwIfAborted();
      const native = this.native;
      const seq = o.seq ?? 0;
      const hist = this.#seqHistory(seq);
      const append = o.append ?? false;
      const all =
        o.prompt !== undefined
          ? this.backbone.tokenize(o.prompt, {
              addBos: (o.addBos ?? this.backbone.info.addBos) && (!append || hist.length === 0),
              parseSpecial: o.parseSpecial ?? true,
            })
          : toInt32Array(o.tokens as ArrayLike<number>, 'tokens');
      let keep: number;
      if (append) {
        keep = hist.length;
      } else {
        keep = 0;
        const limit = Math.min(hist.length, all.length);
        while (keep < limit && hist[keep] === all[keep]) keep++;
        if (keep === all.length) keep--; // something must be decoded to get fresh logits
      }
      if ((append ? all.length : all.length - keep) === 0) {
        throw new MmInvalidArgumentError('generate', 'the prompt is empty');
      }
      if (keep < hist.length) {
        keep = this.#truncate(seq, keep);
        callNative(() => native.remove(seq, keep, -1));
      }
      const todo = append ? all : all.subarray(keep);
      const pos0 = keep;
      const cells = this.nCells(seq);
      if (cells + todo.length > this.contextSize) {
        throw new MmError(
          ErrorCode.MM_OUT_OF_CONTEXT,
          `the prompt needs ${cells + todo.length} positions; the context holds ${this.contextSize}`,
          { details: { needed: cells + todo.length, contextSize: this.contextSize } },
        );
      }
      const room = this.contextSize - (cells + todo.length);
      const maxTokens = Math.min(o.maxTokens ?? room + 1, room + 1);
      const stream = new TextStream(o.stop ?? []);
      let op: NativeOperation<NativeGenerateResult> | undefined;
      const onToken = (token: number, piece: Buffer) => {
        if (stream.done) return;
        if (firstTokenAt === 0) firstTokenAt = performance.now();
        const text = stream.push(piece);
        g.push({ token, text });
        if (stream.done) op?.cancel();
      };
      let res: NativeGenerateResult;
      try {
        res = await this.#run((c) => {
          op = c.generate(
            {
              prompt: todo,
              pos0,
              seq,
              maxTokens,
              ignoreEog: o.ignoreEndOfGeneration ?? false,
              sampling,
            },
            onToken,
          );
          const running = op;
          g.onStop(() => running.cancel());
          return op;
        }, signal);
      } catch (e) {
        // Whatever was decoded before the failure is dropped, so the history stays exact.
        if (!this.disposed) this.native.remove(seq, pos0, -1);
        throw e;
      }
      hist.push(...todo);
      for (let i = 0; i < res.nDecoded; i++) hist.push(res.tokens[i] as number);
      if (signal?.aborted && !stream.done) throw signal.reason;
      const rest = stream.end();
      if (rest) g.push({ token: -1, text: rest });
      return {
        text: stream.text,
        tokens: Array.from(res.tokens),
        stopReason: stream.done ? 'stop' : res.stopReason === 'abort' ? 'stop' : res.stopReason,
        promptTokens: all.length,
        cachedTokens: append ? 0 : keep,
        prefillMs: res.prefillMs,
        decodeMs: res.decodeMs,
        timeToFirstTokenMs: (firstTokenAt || performance.now()) - started,
      };
    } finally {
      release();
    }
  }

  /** Pooled embedding of a text (context made with `embeddings: true`). */
  embed(text: string, options: { signal?: AbortSignal } = {}): Promise<Float32Array> {
    checkSignal(options.signal)?.throwIfAborted();
    const tokens = this.backbone.tokenize(text, { addBos: true });
    return this.#serial.run(() => this.#run((c) => c.embed(tokens), options.signal));
  }

  /** Empties the KV cache of every sequence. */
  clear(): void {
    const native = this.native;
    callNative(() => native.clear());
    for (const h of this.#history) h.length = 0;
    this.#spans.forEach((_, i) => {
      this.#spans[i] = [];
    });
  }

  /** Removes positions [p0, p1) of a sequence (p1 undefined: to the end). */
  removeRange(seq: number, p0: number, p1?: number): void {
    const h = this.#seqHistory(seq);
    const native = this.native;
    const end = p1 ?? h.length;
    if (!Number.isInteger(p0) || !Number.isInteger(end) || p0 < 0 || end < p0) {
      throw new MmInvalidArgumentError('removeRange', 'needs integers 0 <= p0 <= p1');
    }
    if (end < h.length) {
      throw new MmInvalidArgumentError(
        'removeRange',
        'only the tail of a sequence can be removed (positions would leave a gap)',
      );
    }
    const start = this.#truncate(seq, p0);
    callNative(() => native.remove(seq, start, -1));
  }

  /** Copies a sequence's KV cells (all, or [p0, p1)) into another sequence, which is cleared first. */
  copySequence(src: number, dst: number): void {
    const from = this.#seqHistory(src);
    const to = this.#seqHistory(dst);
    const native = this.native;
    if (src === dst) return;
    callNative(() => {
      native.remove(dst, -1, -1);
      native.copy(src, dst, -1, -1);
    });
    to.length = 0;
    to.push(...from);
    this.#spans[dst] = (this.#spans[src] as Span[]).map((sp) => ({ ...sp }));
  }

  /** Saves the KV cache (one sequence, or everything) with the token history, as a Buffer. */
  saveState(options: { seq?: number; signal?: AbortSignal } = {}): Promise<Buffer> {
    checkSignal(options.signal)?.throwIfAborted();
    return this.#serial.run(async () => {
      const seq = options.seq ?? -1;
      const history = seq < 0 ? this.#history : [this.#seqHistory(seq)];
      const spans = seq < 0 ? this.#spans : [this.#spans[seq]];
      const data = await this.#run((c) => c.saveState(seq), options.signal);
      const header = Buffer.from(JSON.stringify({ seq, history, spans }), 'utf8');
      const head = Buffer.alloc(12);
      head.writeUInt32LE(STATE_MAGIC, 0);
      head.writeUInt32LE(1, 4);
      head.writeUInt32LE(header.length, 8);
      return Buffer.concat([head, header, data]);
    });
  }

  /** Restores a state from saveState() (into `seq`, or the sequence it was saved from). */
  loadState(
    state: Uint8Array,
    options: { seq?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    checkSignal(options.signal)?.throwIfAborted();
    return this.#serial.run(async () => {
      const buf = Buffer.from(state.buffer, state.byteOffset, state.byteLength);
      if (buf.length < 12 || buf.readUInt32LE(0) !== STATE_MAGIC || buf.readUInt32LE(4) !== 1) {
        throw new MmInvalidArgumentError('state', 'is not a state saved by Context.saveState');
      }
      const len = buf.readUInt32LE(8);
      if (12 + len > buf.length) throw new MmInvalidArgumentError('state', 'is truncated');
      let header: { seq: number; history: number[][]; spans?: Span[][] };
      try {
        header = JSON.parse(buf.subarray(12, 12 + len).toString('utf8'));
      } catch (cause) {
        throw new MmError(ErrorCode.MM_INVALID_ARGUMENT, 'state: the header is corrupt', { cause });
      }
      const whole = header.seq < 0;
      if (whole && header.history.length !== this.sequences) {
        throw new MmInvalidArgumentError(
          'state',
          `holds ${header.history.length} sequences, this context ${this.sequences}`,
        );
      }
      const seq = whole ? -1 : (options.seq ?? header.seq);
      if (!whole) this.#seqHistory(seq);
      await this.#run((c) => c.loadState(buf.subarray(12 + len), seq), options.signal);
      const spansOf = (i: number): Span[] =>
        (header.spans?.[i] ?? []).filter(
          (sp) =>
            Number.isInteger(sp?.start) &&
            Number.isInteger(sp?.nPos) &&
            Number.isInteger(sp?.cells),
        );
      if (whole) {
        header.history.forEach((h, i) => {
          this.#history[i]?.splice(0, Infinity, ...h);
          this.#spans[i] = spansOf(i);
        });
      } else {
        this.#history[seq]?.splice(0, Infinity, ...(header.history[0] ?? []));
        this.#spans[seq] = spansOf(0);
      }
    });
  }

  async saveStateToFile(
    path: string,
    options: { seq?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    await writeFile(path, await this.saveState(options));
  }

  async loadStateFromFile(
    path: string,
    options: { seq?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (cause) {
      throw new MmError(ErrorCode.MM_FILE_NOT_FOUND, `cannot read state file ${path}`, { cause });
    }
    await this.loadState(data, options);
  }

  /** Frees the KV cache; a running operation is cancelled. A second call is MM_DISPOSED. */
  dispose(): void {
    const n = this.native;
    this.#current?.cancel();
    this.#native = undefined;
    n.dispose();
  }

  [Symbol.dispose](): void {
    if (!this.disposed) this.dispose();
  }
}

/** A running generation: async-iterable tokens, and the final result. */
export class Generation extends PushStream<GeneratedToken, GenerationResult> {
  /** @internal */
  constructor(run: (g: Generation) => Promise<GenerationResult>) {
    super(
      (stream) => run(stream as Generation),
      (e) =>
        e instanceof Error && !MmError.isInstance(e) && (e as { code?: unknown }).code
          ? fromNative(e)
          : e,
    );
  }

  /** Stops generating after the current token (the result then ends with stopReason 'stop'). */
  cancel(): void {
    this.stop();
  }
}
