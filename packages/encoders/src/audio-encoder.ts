import { checkSignal, MmDisposedError, MmInvalidArgumentError, SerialQueue } from '@mm/errors';
import {
  callNative,
  loadAddon,
  type NativeAudioEncoder,
  type NativeAudioEncoderInfo,
  runNative,
} from '@mm/native';
import { Audio } from './audio.js';
import { Features } from './features.js';
import { type ComputeOptions, encoderLoadArgs } from './options.js';

export interface AudioEncoderLoadOptions extends ComputeOptions {
  /** Flash attention: 'auto' (default) uses it when the backend runs it, as libmtmd does. */
  flashAttn?: 'auto' | 'on' | 'off';
  signal?: AbortSignal;
}

export type AudioEncoderInfo = NativeAudioEncoderInfo;

/**
 * The audio encoder of an mmproj (llama.cpp's `a.*` tensors, `clip.audio.*` keys) over ggml: the
 * Whisper-style tower of the `ultravox` and `qwen2a` projector types (and of Qwen2.5-Omni's files,
 * which hold a vision tower too). Audio becomes libmtmd's log-mel chunks of 30 s (3000 frames;
 * the tail is padded with silence), each encoded on its own: one `Features` per chunk, in order,
 * for a `Projector` loaded with `{ audio: true }` (@mm/projectors). Calls run off the JS thread,
 * one at a time per encoder.
 */
export class AudioEncoder {
  readonly path: string;
  readonly info: Readonly<AudioEncoderInfo>;
  #native: NativeAudioEncoder | undefined;
  readonly #serial = new SerialQueue();

  private constructor(path: string, native: NativeAudioEncoder) {
    this.path = path;
    this.#native = native;
    this.info = Object.freeze(callNative(() => native.info()));
  }

  /**
   * Loads the audio tower of an mmproj. The header is validated before any weight is read: a
   * hostile file is MM_GGUF_INVALID, a file without an audio encoder MM_MODALITY_UNSUPPORTED, an
   * audio type mm has no own graph for MM_UNSUPPORTED_FAMILY.
   */
  static async load(mmproj: string, options: AudioEncoderLoadOptions = {}): Promise<AudioEncoder> {
    const { signal, args: opts } = encoderLoadArgs(mmproj, options);
    const native = await runNative(() => loadAddon().loadAudioEncoder(mmproj, opts), signal);
    if (signal?.aborted) {
      native.dispose();
      throw signal.reason;
    }
    return new AudioEncoder(mmproj, native);
  }

  private get native(): NativeAudioEncoder {
    if (!this.#native) throw new MmDisposedError('AudioEncoder');
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** The audio projector type ('ultravox', 'qwen2a'). */
  get projectorType(): string {
    return this.info.projectorType;
  }

  /** The rate the encoder takes audio at (Audio.fromFile(path, { sampleRate }) decodes to it). */
  get sampleRate(): number {
    return this.info.audio.sampleRate;
  }

  /** Mel bins of the input. */
  get nMel(): number {
    return this.info.audio.nMel;
  }

  /** Rows of one chunk's features. */
  get nTokens(): number {
    return this.info.nPatches;
  }

  /** Width of the features. */
  get nEmbd(): number {
    return this.info.nEmbdFeatures;
  }

  /**
   * Encodes audio (an `Audio` at this encoder's rate, or mono f32 PCM at that rate): one
   * `Features` per 30 s chunk, in order.
   */
  async encode(
    audio: Audio | Float32Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<Features[]> {
    let pcm: Float32Array;
    if (audio instanceof Audio) {
      if (audio.sampleRate !== this.sampleRate) {
        throw new MmInvalidArgumentError(
          'audio',
          `is at ${audio.sampleRate} Hz; this encoder takes ${this.sampleRate} Hz (decode with { sampleRate: ${this.sampleRate} })`,
        );
      }
      pcm = audio.samples;
    } else if (audio instanceof Float32Array) {
      pcm = audio;
    } else {
      throw new MmInvalidArgumentError(
        'audio',
        'must be an Audio or a Float32Array of mono samples',
      );
    }
    if (pcm.length === 0) throw new MmInvalidArgumentError('audio', 'has no samples');
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const native = this.native;
    return this.#serial.run(async () => {
      const r = await runNative(() => native.encode(pcm), signal);
      const timings = { preprocessMs: r.melMs, encodeMs: r.encodeMs };
      const features = r.features.map((t) => new Features(t, timings));
      if (signal?.aborted) {
        for (const f of features) f.dispose();
        throw signal.reason;
      }
      return features;
    });
  }

  /**
   * Frees the encoder: later calls are MM_DISPOSED (a second dispose too); encodes already called
   * still complete, and the native memory is released after them.
   */
  dispose(): void {
    const n = this.native;
    this.#native = undefined;
    void this.#serial.run(async () => n.dispose());
  }

  [Symbol.dispose](): void {
    if (!this.disposed) this.dispose();
  }
}
