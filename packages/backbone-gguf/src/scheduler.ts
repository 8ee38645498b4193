import { fromNative, MmDisposedError, MmInvalidArgumentError } from '@mm/errors';
import {
  callNative,
  loadAddon,
  type NativeContext,
  type NativeScheduleItem,
  type NativeScheduler,
  type NativeScheduleStats,
} from '@mm/native';
import type { Context } from './context.js';
import { type SamplingOptions, toNativeSampling } from './sampling.js';

/** A piece of a prompt: text tokens, or an embedding span, at explicit positions. */
export type ScheduleItem = NativeScheduleItem;

export interface ScheduleRequest {
  /** The sequence of the context this request decodes into (one running request per sequence). */
  seq: number;
  /** Cells of `seq` to keep (positions [0, keep)): a prefix the previous request left there. */
  keep: number;
  /** The rest of the prompt, from position `keep` on; the last item is text. */
  items: ScheduleItem[];
  /** At least 1. */
  maxTokens: number;
  /** Positions the sequence may use: generation stops before it ('context'). */
  limit: number;
  ignoreEndOfGeneration?: boolean;
  sampling?: SamplingOptions;
  /** Each sampled token, on the JS thread, in order (batched: several may come in one tick). */
  onToken?: (token: number) => void;
}

export interface ScheduleResult {
  /** 'cancel': `cancel()` was called (or the caller's signal fired). */
  stopReason: 'eog' | 'length' | 'context' | 'cancel';
  /** Every sampled token (end-of-generation excluded), also any sampled after a cancel was asked. */
  tokens: Int32Array;
  /** How many of `tokens` are in the KV cache (the last sampled one never is). */
  decoded: number;
  /** Whether the whole prompt is in the KV cache (false: the sequence was emptied). */
  prefilled: boolean;
  /** Submit → first prompt row decoded; → first token; → end (native clock). */
  queueMs: number;
  prefillMs: number;
  decodeMs: number;
  /**
   * The compute time (llama_decode) of the decode steps that carried its generating row, without
   * sampling and the hand-over to JS, as llama.cpp's eval timer counts. Shared steps count whole.
   */
  decodeComputeMs: number;
}

export interface ScheduledRequest {
  readonly id: number;
  readonly result: Promise<ScheduleResult>;
  /** Ends the request at the scheduler's next iteration (result: stopReason 'cancel'). */
  cancel(): void;
}

export type SchedulerStats = NativeScheduleStats;

interface Pending {
  tokens: number[];
  onToken: ((token: number) => void) | undefined;
  resolve: (r: ScheduleResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Continuous batching on a native thread over one Context made with `sequences: N` (as
 * llama-server's loop): requests join and leave a running batch, each step is ONE decode that
 * carries the next token of every generating request plus prompt rows of requests in prefill,
 * and embedding spans (pictures, sounds) are decoded alone between steps. Tokens reach JS in
 * batches (one wake-up for whatever is ready), so the loop never waits for JS.
 *
 * While the scheduler lives it owns the context: nothing else may decode on it (the native
 * side refuses). Each request's cells stay in its sequence when it ends, so the next request on
 * that sequence can keep a common prefix (`keep`).
 */
export class Scheduler {
  readonly context: Context;
  #native: NativeScheduler | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  private constructor(context: Context) {
    this.context = context;
  }

  static create(context: Context): Scheduler {
    const s = new Scheduler(context);
    // The one place outside Context that reaches its native handle.
    const handle = (context as unknown as { native: NativeContext }).native;
    const addon = loadAddon();
    s.#native = callNative(() => new addon.AddonScheduler(handle, () => s.#drain()));
    return s;
  }

  get #sched(): NativeScheduler {
    if (!this.#native) throw new MmDisposedError('Scheduler');
    return this.#native;
  }

  submit(r: ScheduleRequest): ScheduledRequest {
    const native = this.#sched;
    const seqs = this.context.sequences;
    if (!Number.isInteger(r.seq) || r.seq < 0 || r.seq >= seqs)
      throw new MmInvalidArgumentError('seq', `must be an integer in [0, ${seqs})`);
    if (!Number.isInteger(r.maxTokens) || r.maxTokens < 1)
      throw new MmInvalidArgumentError('maxTokens', 'must be an integer >= 1');
    const sampling = toNativeSampling(r.sampling, (s) =>
      this.context.backbone.jsonSchemaToGrammar(JSON.parse(s)),
    );
    const id = this.#nextId;
    this.#nextId = (this.#nextId % 0x7fffffff) + 1;
    callNative(() =>
      native.submit({
        id,
        seq: r.seq,
        keep: r.keep,
        items: r.items,
        maxTokens: r.maxTokens,
        limit: r.limit,
        ignoreEog: r.ignoreEndOfGeneration ?? false,
        sampling,
      }),
    );
    const result = new Promise<ScheduleResult>((resolve, reject) => {
      if (this.#pending.size === 0) native.ref();
      this.#pending.set(id, { tokens: [], onToken: r.onToken, resolve, reject });
    });
    return {
      id,
      result,
      cancel: () => {
        if (this.#native && this.#pending.has(id)) this.#native.cancel(id);
      },
    };
  }

  stats(): SchedulerStats {
    const native = this.#sched;
    return callNative(() => native.stats());
  }

  #drain(): void {
    const native = this.#native;
    if (!native) return;
    const { tokens, ends } = native.drain();
    for (let i = 0; i < tokens.length; i += 2) {
      const p = this.#pending.get(tokens[i] as number);
      if (!p) continue;
      const t = tokens[i + 1] as number;
      p.tokens.push(t);
      try {
        p.onToken?.(t);
      } catch {
        // a throwing listener does not stop the loop; the request goes on
      }
    }
    for (const e of ends) {
      const p = this.#pending.get(e.id);
      if (!p) continue;
      this.#pending.delete(e.id);
      if (e.error) p.reject(fromNative(e.error));
      else
        p.resolve({
          stopReason: e.reason,
          tokens: Int32Array.from(p.tokens),
          decoded: e.decoded,
          prefilled: e.prefilled,
          queueMs: e.queueMs,
          prefillMs: e.prefillMs,
          decodeMs: e.decodeMs,
          decodeComputeMs: e.decodeComputeMs,
        });
    }
    if (this.#pending.size === 0 && ends.length > 0) native.unref();
  }

  /** Stops the thread; requests still running reject with MM_DISPOSED. The context stays (dispose it after). */
  dispose(): void {
    const native = this.#native;
    if (!native) return;
    this.#native = undefined;
    callNative(() => native.dispose());
    const err = new MmDisposedError('Scheduler');
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}
