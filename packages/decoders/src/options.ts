import { MmInvalidArgumentError } from '@mm/errors';

export interface GenLoadOptions {
  /** CPU threads (default: all hardware threads). */
  threads?: number;
  signal?: AbortSignal;
}

export function threadsArg(threads: number | undefined): number | undefined {
  if (threads === undefined) return undefined;
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw new MmInvalidArgumentError('threads', 'must be an integer in [1, 1024]');
  }
  return threads;
}

/** Sampling of the output projector's own draws (Qwen3-TTS's codebooks 1..15, Pocket TTS's noise). */
export interface GenSampling {
  /** Default: the pipeline's (50). */
  topK?: number;
  /** Default: the pipeline's (1.0). */
  topP?: number;
  /** Qwen3-TTS: unused by libmtmd's graph; Pocket TTS: the flow's noise variance (default: the pack's). */
  temperature?: number;
  /** Seed of the projector's generator; the same seed over the same calls gives the same frames. Default: random. */
  seed?: number;
}

export const RANDOM_SEED = 0xffffffff;

export function samplingArgs(
  s: GenSampling | undefined,
  defaults: { topK: number; topP: number; temp: number },
): { topK: number; topP: number; temp: number; seed: number } {
  const topK = s?.topK ?? defaults.topK;
  const topP = s?.topP ?? defaults.topP;
  const temp = s?.temperature ?? defaults.temp;
  const seed = s?.seed ?? RANDOM_SEED;
  if (!Number.isInteger(topK) || topK < 1)
    throw new MmInvalidArgumentError('topK', 'must be an integer >= 1');
  if (!(topP > 0 && topP <= 1)) throw new MmInvalidArgumentError('topP', 'must be in (0, 1]');
  if (!(temp >= 0 && Number.isFinite(temp)))
    throw new MmInvalidArgumentError('temperature', 'must be >= 0');
  if (!Number.isInteger(seed) || seed < 0 || seed > RANDOM_SEED) {
    throw new MmInvalidArgumentError('seed', 'must be an integer in [0, 2^32 - 1]');
  }
  return { topK, topP, temp, seed };
}
