import { MmInvalidArgumentError } from '@mm/errors';
import type { NativeSamplingParams } from '@mm/native';

/** How the next token is chosen. `temperature` 0 (the default) is greedy. */
export interface SamplingOptions {
  /** 0: greedy (default). */
  temperature?: number;
  /** Keep the k most likely tokens; 0: off. */
  topK?: number;
  /** Nucleus sampling; 1: off. */
  topP?: number;
  /** Drop tokens below minP × p(best); 0: off. */
  minP?: number;
  /** Locally typical sampling; 1: off. */
  typicalP?: number;
  /** 1: off. */
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** How many recent tokens the penalties look at (default 64). */
  penaltyLastN?: number;
  /** Seed for the random choice (temperature > 0). */
  seed?: number;
  /** A GBNF grammar the output must follow. */
  grammar?: string;
  /** The grammar's start rule (default `root`). */
  grammarRoot?: string;
  /** A JSON schema the output must follow (converted to GBNF by llama.cpp's converter). */
  jsonSchema?: object;
}

function num(name: string, v: unknown, lo: number, hi: number, loOpen = false): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v > hi || (loOpen ? v <= lo : v < lo)) {
    throw new MmInvalidArgumentError(
      `sampling.${name}`,
      `must be a number in ${loOpen ? '(' : '['}${lo}, ${hi}]`,
    );
  }
  return v;
}

function int(name: string, v: unknown, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw new MmInvalidArgumentError(`sampling.${name}`, `must be an integer in [${lo}, ${hi}]`);
  }
  return v;
}

/** Validates sampling options in JS, before anything crosses into C++. */
export function toNativeSampling(
  s: SamplingOptions | undefined,
  schemaToGrammar: (schema: string) => string,
): NativeSamplingParams {
  if (s === undefined) return {};
  if (typeof s !== 'object' || s === null)
    throw new MmInvalidArgumentError('sampling', 'must be an object');
  if (s.grammar !== undefined && s.jsonSchema !== undefined) {
    throw new MmInvalidArgumentError('sampling', 'give either grammar or jsonSchema, not both');
  }
  if (s.grammar !== undefined && typeof s.grammar !== 'string') {
    throw new MmInvalidArgumentError('sampling.grammar', 'must be a GBNF string');
  }
  let grammar = s.grammar;
  if (s.jsonSchema !== undefined) {
    if (typeof s.jsonSchema !== 'object' || s.jsonSchema === null) {
      throw new MmInvalidArgumentError('sampling.jsonSchema', 'must be a JSON schema object');
    }
    grammar = schemaToGrammar(JSON.stringify(s.jsonSchema));
  }
  const out: NativeSamplingParams = {
    temperature: num('temperature', s.temperature, 0, 100),
    topK: int('topK', s.topK, 0, 1 << 30),
    topP: num('topP', s.topP, 0, 1, true),
    minP: num('minP', s.minP, 0, 1),
    typicalP: num('typicalP', s.typicalP, 0, 1, true),
    repeatPenalty: num('repeatPenalty', s.repeatPenalty, 0, 100, true),
    presencePenalty: num('presencePenalty', s.presencePenalty, -100, 100),
    frequencyPenalty: num('frequencyPenalty', s.frequencyPenalty, -100, 100),
    penaltyLastN: int('penaltyLastN', s.penaltyLastN, -1, 1 << 24),
    seed: int('seed', s.seed, 0, 0xffffffff),
    grammar,
    grammarRoot: s.grammarRoot,
  };
  for (const k of Object.keys(out) as (keyof NativeSamplingParams)[]) {
    if (out[k] === undefined) delete out[k];
  }
  return out;
}
