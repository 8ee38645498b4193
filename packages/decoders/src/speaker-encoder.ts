import { Audio } from '@mm/encoders';
import { ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import { runNative } from '@mm/native';
import { GenComponent } from './gen-model.js';
import type { GenLoadOptions } from './options.js';

/** A voice: the speaker encoder's rows, ready for the talker's prompt. */
export interface Voice {
  /** Rows of nEmbd values (Qwen3-TTS: one x-vector; Pocket TTS: one row per 12.5 Hz frame). */
  rows: number;
  nEmbd: number;
  embedding: Float32Array;
}

/**
 * The speaker encoder of a speech-generation mmproj: a reference recording → the rows the talker's
 * prompt carries as the voice. Audio files are decoded as libmtmd decodes them (miniaudio,
 * resampled to the encoder's rate).
 */
export class SpeakerEncoder extends GenComponent {
  static async load(mmproj: string, options: GenLoadOptions = {}): Promise<SpeakerEncoder> {
    const { facts, native } = await GenComponent.loadNative(mmproj, ['speaker'], options);
    if (!facts.hasSpeakerEncoder) {
      native.dispose();
      throw new MmError(ErrorCode.MM_MODALITY_UNSUPPORTED, `${mmproj} has no speaker encoder`);
    }
    return new SpeakerEncoder(mmproj, facts, native);
  }

  /** Rate the reference audio is taken at. */
  get inputSampleRate(): number {
    return this.info.speakerSampleRate;
  }

  /** Decodes a reference file (wav, mp3, flac; a path or its bytes) at the encoder's rate. */
  async decodeReference(source: string | Uint8Array): Promise<Audio> {
    const sampleRate = this.inputSampleRate;
    return typeof source === 'string'
      ? Audio.fromFile(source, { sampleRate })
      : Audio.fromBuffer(source, { sampleRate });
  }

  async encode(
    reference: Audio | Float32Array | string | Uint8Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<Voice> {
    options.signal?.throwIfAborted();
    let pcm: Float32Array;
    if (reference instanceof Float32Array) {
      pcm = reference;
    } else if (reference instanceof Audio) {
      if (reference.sampleRate !== this.inputSampleRate) {
        throw new MmInvalidArgumentError(
          'reference',
          `audio at ${reference.sampleRate} Hz given to a speaker encoder that takes ${this.inputSampleRate} Hz (decode it with decodeReference)`,
        );
      }
      pcm = reference.samples;
    } else {
      pcm = (await this.decodeReference(reference)).samples;
    }
    if (pcm.length === 0) throw new MmInvalidArgumentError('reference', 'is empty');
    return this.serial.run(async () => {
      const native = this.native;
      const r = await runNative(() => native.encodeSpeaker(pcm), options.signal);
      return { rows: r.rows, nEmbd: this.info.nEmbd, embedding: r.embd };
    });
  }
}
