import { checkSignal, MmDisposedError, MmInvalidArgumentError, SerialQueue } from '@mm/errors';
import {
  callNative,
  loadAddon,
  type NativeProjectorTrainer,
  type NativeTrainSample,
  type NativeTrainStepResult,
  runNative,
} from '@mm/native';

export type TrainSequence = NativeTrainSample;
export type TrainStepResult = NativeTrainStepResult;

export interface ProjectorTrainerOptions {
  /** The frozen LLM: a `llama` text GGUF. */
  model: string;
  projector: 'mlp' | 'linear' | 'ldpv2';
  /** The encoder's feature width (the projector's input). */
  nEmbdV: number;
  /** mm.0's output width (mlp); ignored for linear (the LLM's width). */
  nHidden: number;
  threads?: number;
  signal?: AbortSignal;
}

export interface AdamWStep {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/**
 * The training graph of trainProjector, one step at a time: a projector (its tensors held natively
 * in f32) feeding a frozen `llama` LLM built in ggml, cross-entropy on answer tokens, ggml's
 * backward pass and AdamW op. Lower level than trainProjector: the caller gives encoder features
 * and laid-out sequences (layoutTrainSample), and reads or sets weights and optimiser state.
 * Calls run one at a time, off the JS thread.
 */
export class ProjectorTrainer {
  #native: NativeProjectorTrainer | undefined;
  readonly #serial = new SerialQueue();
  /** The projector's tensors, in the order of getParam / setParam. */
  readonly params: readonly { name: string; ne: readonly number[] }[];
  readonly llm: Readonly<ReturnType<NativeProjectorTrainer['info']>['llm']>;

  private constructor(native: NativeProjectorTrainer) {
    this.#native = native;
    const info = callNative(() => native.info());
    this.params = Object.freeze(
      info.params.map((p) => Object.freeze({ ...p, ne: Object.freeze(p.ne) })),
    );
    this.llm = Object.freeze(info.llm);
  }

  static async create(options: ProjectorTrainerOptions): Promise<ProjectorTrainer> {
    const signal = checkSignal(options.signal);
    const native = await runNative(
      () =>
        loadAddon().createProjectorTrainer({
          model: options.model,
          projector: options.projector,
          nEmbdV: options.nEmbdV,
          nHidden: options.nHidden,
          threads: options.threads ?? 2,
        }),
      signal,
    );
    return new ProjectorTrainer(native);
  }

  private get native(): NativeProjectorTrainer {
    if (!this.#native) throw new MmDisposedError('ProjectorTrainer');
    return this.#native;
  }

  /** Optimiser steps taken in the current AdamW run (bias correction). */
  get steps(): number {
    return callNative(() => this.native.info().steps);
  }

  set steps(n: number) {
    callNative(() => this.native.setSteps(n));
  }

  /** Features of `nImages` pictures (`[nImages][nRows][nEmbdV]`) and the sequences to train on. */
  setData(
    features: Float32Array,
    nImages: number,
    nRows: number,
    samples: readonly TrainSequence[],
  ): void {
    callNative(() => this.native.setData(features, nImages, nRows, [...samples]));
  }

  #index(name: string): number {
    const i = this.params.findIndex((p) => p.name === name);
    if (i < 0) throw new MmInvalidArgumentError('name', `no projector tensor '${name}'`);
    return i;
  }

  getParam(name: string): Float32Array {
    return callNative(() => this.native.getParam(this.#index(name)));
  }

  setParam(name: string, value: Float32Array): void {
    callNative(() => this.native.setParam(this.#index(name), value));
  }

  /** AdamW's first and second moments of a tensor. */
  getMoments(name: string): { m: Float32Array; v: Float32Array } {
    const i = this.#index(name);
    return {
      m: callNative(() => this.native.getMoment(i, false)),
      v: callNative(() => this.native.getMoment(i, true)),
    };
  }

  setMoments(name: string, m: Float32Array, v: Float32Array): void {
    callNative(() => this.native.setMoments(this.#index(name), m, v));
  }

  /** One AdamW step on the samples at `batch` (indices into setData's samples). */
  step(
    batch: ArrayLike<number>,
    hyper: AdamWStep,
    options: { signal?: AbortSignal } = {},
  ): Promise<TrainStepResult> {
    const signal = checkSignal(options.signal);
    const b = Int32Array.from(batch);
    return this.#serial.run(() => runNative(() => this.native.step(b, hyper), signal));
  }

  /** The loss on a batch without updating; with `grads`, each tensor's gradient by name. */
  evaluate(
    batch: ArrayLike<number>,
    options: { grads?: boolean; signal?: AbortSignal } = {},
  ): Promise<TrainStepResult & { grads?: Map<string, Float32Array> }> {
    const signal = checkSignal(options.signal);
    const b = Int32Array.from(batch);
    return this.#serial.run(async () => {
      const r = await runNative(() => this.native.evaluate(b, options.grads ?? false), signal);
      const { grads, ...rest } = r;
      return grads
        ? { ...rest, grads: new Map(this.params.map((p, i) => [p.name, grads[i] as Float32Array])) }
        : rest;
    });
  }

  /** The frozen LLM of the training graph alone: logits `[rows][nVocab]` for embedding rows `[rows][nEmbd]`. */
  llmLogits(
    embeddings: Float32Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<Float32Array> {
    const signal = checkSignal(options.signal);
    return this.#serial.run(() => runNative(() => this.native.logits(embeddings), signal));
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** Frees the native trainer (after the calls already queued). */
  dispose(): void {
    const native = this.native;
    this.#native = undefined;
    void this.#serial.run(() => native.dispose());
  }

  [Symbol.dispose](): void {
    if (this.#native) this.dispose();
  }
}
