import { MmDisposedError, MmInvalidArgumentError } from '@mm/errors';
import { callNative, loadAddon, type NativeBatch, type NativeContext, runNative } from '@mm/native';
import type { Context } from './context.js';
import { type SamplingOptions, toNativeSampling } from './sampling.js';

export interface BatchInput {
  seq: number;
  /** The token to decode (the last prompt token, or the last sampled one). */
  token: number;
  /** Its position in the sequence. */
  pos: number;
}

/**
 * Continuous batching over one Context made with `sequences: N`: every `step()` is ONE native
 * decode that carries the next token of every active sequence, then samples each sequence with
 * its own sampler chain. Sequences `start()` and `finish()` between steps.
 *
 * The caller owns the context while it batches: prefill sequences with `context.decode()`
 * (all but the last prompt token), never while a step runs (the native side refuses), and
 * remove a finished sequence's cells with `context.removeRange(seq, 0)`. Tokens decoded by
 * steps are not in `context.sequenceTokens()`.
 */
export class BatchDecoder {
  readonly context: Context;
  #native: NativeBatch | undefined;

  private constructor(context: Context, native: NativeBatch) {
    this.context = context;
    this.#native = native;
  }

  static create(context: Context): BatchDecoder {
    // The one place outside Context that reaches its native handle.
    const handle = (context as unknown as { native: NativeContext }).native;
    const addon = loadAddon();
    return new BatchDecoder(
      context,
      callNative(() => new addon.AddonBatch(handle)),
    );
  }

  get #batch(): NativeBatch {
    if (!this.#native) throw new MmDisposedError('BatchDecoder');
    return this.#native;
  }

  /** A fresh sampler chain for `seq` (greedy by default). */
  start(seq: number, sampling?: SamplingOptions): void {
    if (!Number.isInteger(seq) || seq < 0 || seq >= this.context.sequences) {
      throw new MmInvalidArgumentError(
        'seq',
        `must be an integer in [0, ${this.context.sequences})`,
      );
    }
    const params = toNativeSampling(sampling, (s) =>
      this.context.backbone.jsonSchemaToGrammar(JSON.parse(s)),
    );
    const batch = this.#batch;
    callNative(() => batch.start(seq, params));
  }

  finish(seq: number): void {
    const batch = this.#batch;
    callNative(() => batch.finish(seq));
  }

  /** One decode for all inputs (distinct, started sequences); the sampled token of each. */
  async step(inputs: readonly BatchInput[], signal?: AbortSignal): Promise<Int32Array> {
    signal?.throwIfAborted();
    if (inputs.length === 0) throw new MmInvalidArgumentError('inputs', 'must not be empty');
    const batch = this.#batch;
    const seqs = Int32Array.from(inputs, (i) => i.seq);
    const tokens = Int32Array.from(inputs, (i) => i.token);
    const positions = Int32Array.from(inputs, (i) => i.pos);
    return runNative(() => batch.step(seqs, tokens, positions), signal);
  }

  dispose(): void {
    const batch = this.#batch;
    this.#native = undefined;
    callNative(() => batch.dispose());
  }
}
