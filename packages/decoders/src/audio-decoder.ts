import { MmInvalidArgumentError } from '@mm/errors';
import { runNative } from '@mm/native';
import { GenComponent } from './gen-model.js';
import type { GenLoadOptions } from './options.js';

/**
 * The modality decoder of a speech-generation mmproj (survey: Modality Decoder): frames → PCM f32
 * at `sampleRate`. Qwen3-TTS: codes (16 per frame) through its code-to-waveform network; Pocket
 * TTS: latents through the Mimi/SEANet decoder. Decoding streams: `stream()` keeps the network's
 * state (attention window, convolution tails) between calls, so audio can be produced while the
 * talker still generates. Streams are independent; one loaded decoder serves many.
 */
export class AudioDecoder extends GenComponent {
  static async load(mmproj: string, options: GenLoadOptions = {}): Promise<AudioDecoder> {
    const { facts, native } = await GenComponent.loadNative(mmproj, ['wav'], options);
    return new AudioDecoder(mmproj, facts, native);
  }

  /** Values one frame holds: codes (Qwen3-TTS) or latent width (Pocket TTS). */
  get frameWidth(): number {
    return this.info.nCodebooks > 0 ? this.info.nCodebooks : this.info.latentDim;
  }

  /** A new streaming decode (cold state). */
  stream(): DecoderStream {
    return new DecoderStream(this);
  }

  /** Decodes whole frames at once from a cold state, in the window llama.cpp's helper uses. */
  async decodeAll(
    frames: Int32Array | Float32Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<Float32Array> {
    const s = this.stream();
    const w = this.info.windowFrames * this.frameWidth;
    const parts: Float32Array[] = [];
    for (let i = 0; i < frames.length; i += w) {
      parts.push(await s.decode(frames.subarray(i, i + w), options));
    }
    return concat(parts);
  }

  /** @internal one native decode call with explicit state. */
  _decode(
    frames: Int32Array | Float32Array,
    state: Uint8Array | null,
    signal: AbortSignal | undefined,
  ): Promise<{ pcm: Float32Array; state: Uint8Array }> {
    signal?.throwIfAborted();
    const codes = this.info.nCodebooks > 0;
    if (codes ? !(frames instanceof Int32Array) : !(frames instanceof Float32Array)) {
      throw new MmInvalidArgumentError(
        'frames',
        codes
          ? 'must be an Int32Array of codes (16 per frame)'
          : 'must be a Float32Array of latents',
      );
    }
    if (frames.length === 0 || frames.length % this.frameWidth !== 0) {
      throw new MmInvalidArgumentError(
        'frames',
        `must hold whole frames of ${this.frameWidth} values`,
      );
    }
    return this.serial.run(async () => {
      const native = this.native;
      return runNative(() => native.genWav(frames, state), signal);
    });
  }
}

/** A streaming decode: each `decode(frames)` returns the PCM of those frames, continuing the last call. */
export class DecoderStream {
  readonly decoder: AudioDecoder;
  #state: Uint8Array | null = null;
  #frames = 0;

  constructor(decoder: AudioDecoder) {
    this.decoder = decoder;
  }

  /** Frames decoded so far. */
  get frames(): number {
    return this.#frames;
  }

  async decode(
    frames: Int32Array | Float32Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<Float32Array> {
    const r = await this.decoder._decode(frames, this.#state, options.signal);
    this.#state = r.state;
    this.#frames += frames.length / this.decoder.frameWidth;
    return r.pcm;
  }

  /** Forget the state: the next call starts cold (a new utterance). */
  reset(): void {
    this.#state = null;
  }
}

export function concat(parts: readonly Float32Array[]): Float32Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Float32Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
