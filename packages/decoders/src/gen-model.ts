import { MmDisposedError, SerialQueue } from '@mm/errors';
import { callNative, runNative } from '@mm/native';
import { type GenAudioFacts, readGenAudioFacts } from './gen-file.js';
import { type GenAudioInfo, type GenPart, genLoader, type NativeGenAudio } from './native.js';
import { type GenLoadOptions, threadsArg } from './options.js';

/**
 * One part (or several) of a speech-generation mmproj, loaded natively: the shared base of
 * OutputProjector, AudioDecoder and SpeakerEncoder. Calls run off the JS thread, one at a time.
 */
export abstract class GenComponent {
  readonly path: string;
  readonly info: Readonly<GenAudioInfo>;
  readonly facts: Readonly<GenAudioFacts>;
  #native: NativeGenAudio | undefined;
  protected readonly serial = new SerialQueue();

  protected constructor(path: string, facts: GenAudioFacts, native: NativeGenAudio) {
    this.path = path;
    this.facts = Object.freeze({ ...facts });
    this.#native = native;
    this.info = Object.freeze(callNative(() => native.info()));
  }

  protected static async loadNative(
    mmproj: string,
    parts: GenPart[],
    options: GenLoadOptions,
  ): Promise<{ facts: GenAudioFacts; native: NativeGenAudio }> {
    options.signal?.throwIfAborted();
    const threads = threadsArg(options.threads);
    const facts = await readGenAudioFacts(mmproj);
    const load = genLoader(facts.pipeline);
    const native = await runNative(() => load(mmproj, { threads, parts }), options.signal);
    if (options.signal?.aborted) {
      native.dispose();
      throw options.signal.reason;
    }
    return { facts, native };
  }

  protected get native(): NativeGenAudio {
    if (!this.#native) throw new MmDisposedError(this.constructor.name);
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  get pipeline(): GenAudioInfo['pipeline'] {
    return this.info.pipeline;
  }

  /** Output PCM rate. */
  get sampleRate(): number {
    return this.info.sampleRate;
  }

  dispose(): void {
    const n = this.#native;
    this.#native = undefined;
    n?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
