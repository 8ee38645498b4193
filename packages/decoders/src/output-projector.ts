import { MmInvalidArgumentError } from '@mm/errors';
import { callNative, runNative } from '@mm/native';
import { GenComponent } from './gen-model.js';
import { type GenLoadOptions, type GenSampling, samplingArgs } from './options.js';

/** One generated frame. */
export interface OutputFrame {
  /** Qwen3-TTS: the frame's 16 codes (codebook 0 = the talker's token, then 15 predicted). Empty for Pocket TTS. */
  codes: Int32Array;
  /** Pocket TTS: the frame's continuous latent. null for Qwen3-TTS. */
  latent: Float32Array | null;
  /** The row the talker decodes next (its input embedding for the following step). */
  embedding: Float32Array;
  /** The pipeline's own end-of-speech head fired (Pocket TTS). */
  endOfSpeech: boolean;
}

export interface OutputStepOptions {
  /** Qwen3-TTS: the codebook-0 code the talker sampled (its token minus `<|codec_0|>`). */
  code0?: number;
  sampling?: GenSampling;
  signal?: AbortSignal;
}

/** Sampling defaults of each pipeline, as libmtmd's mtmd_gen_inp_default sets them. */
export const PIPELINE_SAMPLING = {
  qwen3tts: { topK: 50, topP: 1.0, temp: 0.9 },
  pockettts: { topK: 50, topP: 1.0, temp: 0.7 },
} as const;

/**
 * The output projector of a speech-generation mmproj (survey: Output Projector): the talker's
 * hidden state → one frame of codes (Qwen3-TTS's code predictor: hidden state + codebook-0 code →
 * the 15 other codebooks, sampled top-k/top-p in the graph) or of latents (Pocket TTS's
 * flow-matching head, with its end-of-speech head), plus the embedding the talker decodes next.
 * Its own random generator is seeded like libmtmd's (reseeded only when the seed changes), so a
 * seeded sequence of steps gives libmtmd's frames.
 */
export class OutputProjector extends GenComponent {
  static async load(mmproj: string, options: GenLoadOptions = {}): Promise<OutputProjector> {
    const { facts, native } = await GenComponent.loadNative(mmproj, ['code'], options);
    return new OutputProjector(mmproj, facts, native);
  }

  /** Width of the hidden state a step takes (the talker's n_embd). */
  get nEmbd(): number {
    return this.info.nEmbd;
  }

  /**
   * The next step reseeds its generator with its seed even if it is the seed of the last step
   * (libmtmd reseeds only on a change, so a second utterance with the same seed would go on from
   * where the first stopped): call it before each utterance that must repeat a seeded one.
   */
  restartSeed(): Promise<void> {
    return this.serial.run(() => {
      const native = this.native;
      callNative(() => native.forgetSeed());
    });
  }

  step(hidden: Float32Array, options: OutputStepOptions = {}): Promise<OutputFrame> {
    options.signal?.throwIfAborted();
    if (!(hidden instanceof Float32Array) || hidden.length !== this.info.nEmbd) {
      throw new MmInvalidArgumentError(
        'hidden',
        `must be a Float32Array of ${this.info.nEmbd} values`,
      );
    }
    const code0 = options.code0 ?? 0;
    if (this.info.pipeline === 'qwen3tts' && options.code0 === undefined) {
      throw new MmInvalidArgumentError(
        'code0',
        'Qwen3-TTS needs the codebook-0 code the talker sampled',
      );
    }
    const args = samplingArgs(options.sampling, PIPELINE_SAMPLING[this.info.pipeline]);
    return this.serial.run(async () => {
      const native = this.native;
      const r = await runNative(() => native.genCode(hidden, code0, args), options.signal);
      return { codes: r.codes, latent: r.feats, embedding: r.embd, endOfSpeech: r.isEos };
    });
  }
}
