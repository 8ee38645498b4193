import type { Backbone } from '@mm/backbone-gguf';
import type { Voice } from '@mm/decoders';
import { ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import type { PcmChunk, SpeakOptions, SpeechParts } from './types.js';

/** Settings that live only in each Pocket TTS pack's yaml (llama.cpp's table; 0 = the model default). */
export const POCKETTTS_PACKS: Readonly<
  Record<string, { temp: number; framesAfterEos: number; padShortText: boolean }>
> = {
  english: { temp: 0.3, framesAfterEos: 0, padShortText: false },
  'english_2026-01': { temp: 0.7, framesAfterEos: 0, padShortText: true },
  'english_2026-04': { temp: 0.3, framesAfterEos: 0, padShortText: false },
  french_24l: { temp: 0.7, framesAfterEos: 8, padShortText: false },
};

/** Tokens per chunk (MAX_TOKEN_PER_CHUNK of the reference): longer texts restart from the voice. */
const MAX_CHUNK_TOKENS = 50;
const FRAME_RATE = 12.5;
/** Latent frames per decoder call in llama.cpp's helper. */
const WINDOW_FRAMES = 8;

function countWords(s: string): number {
  let n = 0;
  let inWord = false;
  for (const c of s) {
    if (c === ' ') inWord = false;
    else if (!inWord) {
      inWord = true;
      n++;
    }
  }
  return n;
}

/** The reference's prepare_text_prompt(): one line, ';' → ',', capitalised, ended with a period. */
export function pocketttsPrepareText(input: string, padShort: boolean): string {
  let s = input.replace(/[\n\r]/g, ' ').replace(/;/g, ',');
  s = s.replace(/^ +| +$/g, '');
  if (s === '') return '';
  const c0 = s.charCodeAt(0);
  if (c0 >= 97 && c0 <= 122) s = String.fromCharCode(c0 - 32) + s.slice(1);
  const last = s.charCodeAt(s.length - 1);
  const alnum =
    (last >= 48 && last <= 57) || (last >= 65 && last <= 90) || (last >= 97 && last <= 122);
  if (alnum) s += '.';
  if (padShort && countWords(s) < 5) s = ' '.repeat(8) + s;
  return s;
}

function punctIds(backbone: Backbone, s: string): number[] {
  const ids = backbone.tokenize(s, { addBos: false, parseSpecial: false });
  return ids.length <= 1 ? [] : [...ids.subarray(1)];
}

function splitOn(ids: readonly number[], boundary: readonly number[]): number[][] {
  const out: number[][] = [];
  let start = 0;
  let prev = false;
  for (let i = 0; i < ids.length; i++) {
    const b = boundary.includes(ids[i] as number);
    if (!b && prev) {
      out.push(ids.slice(start, i));
      start = i;
    }
    prev = b;
  }
  out.push(ids.slice(start));
  return out;
}

/** split_into_best_sentences(): sentences, oversized ones split on weaker punctuation, packed to the budget. */
export function pocketttsChunks(backbone: Backbone, ids: readonly number[]): number[][] {
  if (ids.length <= MAX_CHUNK_TOKENS) return [[...ids]];
  const eos = punctIds(backbone, '.!...?');
  const mid = punctIds(backbone, ',;:');
  const segments: number[][] = [];
  for (const seg of splitOn(ids, eos)) {
    if (seg.length <= MAX_CHUNK_TOKENS) {
      segments.push(seg);
      continue;
    }
    const sub = splitOn(seg, mid);
    if (sub.length > 1) segments.push(...sub);
    else segments.push(seg);
  }
  const out: number[][] = [];
  for (const seg of segments) {
    if (seg.length === 0) continue;
    const last = out[out.length - 1];
    if (last && last.length + seg.length <= MAX_CHUNK_TOKENS) last.push(...seg);
    else out.push(seg);
  }
  if (out.length === 0) out.push([...ids]);
  return out;
}

/**
 * Pocket TTS: the talker emits no token; the flow head turns each hidden state into a latent
 * (its end-of-speech head ends a chunk a few frames later) and the Mimi decoder turns windows of
 * latents into PCM. Long texts go in chunks of ≤ 50 tokens, each re-prompted after the voice.
 */
export async function* speakPocketTts(
  parts: SpeechParts,
  text: string,
  voice: Voice | undefined,
  o: SpeakOptions,
  t0: number,
): AsyncGenerator<PcmChunk> {
  const { backbone, context, projector, decoder } = parts;
  const audioBos = backbone.lookupToken('<|audio_bos|>');
  if (audioBos === undefined) {
    throw new MmError(
      ErrorCode.MM_MODEL_MISMATCH,
      `${backbone.path} is not a Pocket TTS talker: its vocabulary has no <|audio_bos|>`,
    );
  }
  const bosBeforeVoice = backbone.lookupToken('<|bos_before_voice|>');
  const pack = POCKETTTS_PACKS[projector.facts.variant] ?? {
    temp: 0,
    framesAfterEos: 0,
    padShortText: false,
  };
  const prepared = pocketttsPrepareText(text, pack.padShortText);
  if (prepared === '')
    throw new MmInvalidArgumentError('text', 'is empty: there is nothing to speak');
  const ids = [...backbone.tokenize(prepared, { addBos: false, parseSpecial: false })];
  if (ids.length === 0) throw new MmInvalidArgumentError('text', 'tokenization gave no tokens');
  const chunks = pocketttsChunks(backbone, ids);
  const n = backbone.nEmbd;
  const signal = o.signal;
  const batch = o.batchSize ?? 2048;

  const voiceRows: Float32Array[] = [];
  if (voice) {
    if (bosBeforeVoice !== undefined) voiceRows.push(backbone.tokenEmbeddings([bosBeforeVoice]));
    voiceRows.push(voice.embedding.subarray(0, voice.rows * n));
  }
  const nVoicePos = voiceRows.reduce((a, r) => a + r.length / n, 0);

  context.clear();
  let pos = 0;
  // decodes rows at pos, in batches; returns the last row's hidden state
  const prompt = async (rows: Float32Array): Promise<Float32Array> => {
    const nRows = rows.length / n;
    let hidden: Float32Array | undefined;
    for (let s = 0; s < nRows; s += batch) {
      const m = Math.min(batch, nRows - s);
      const last = s + m === nRows;
      const r = await context.decode({
        embeddings: rows.subarray(s * n, (s + m) * n),
        pos,
        logits: last ? 'last' : 'none',
        hidden: last,
        signal,
      });
      pos += m;
      hidden = r.hidden;
    }
    return hidden as Float32Array;
  };
  const chunkRows = (c: readonly number[]): Float32Array =>
    backbone.tokenEmbeddings([...c, audioBos]);

  const first = chunkRows(chunks[0] as number[]);
  const all = new Float32Array(nVoicePos * n + first.length);
  let off = 0;
  for (const r of voiceRows) {
    all.set(r, off);
    off += r.length;
  }
  all.set(first, off);
  let hidden = await prompt(all);

  const temp = pack.temp > 0 ? pack.temp : undefined;
  const seed = o.projectorSampling?.seed ?? o.sampling?.seed;
  const sampling = {
    ...o.projectorSampling,
    seed,
    temperature: o.projectorSampling?.temperature ?? temp,
  };
  const latentDim = decoder.frameWidth;
  const maxFrames = o.maxFrames ?? 512;
  let stream = decoder.stream();
  let feats: Float32Array[] = [];
  let steps = 0; // llama-tts's n_frames: every step that hands back a hidden state
  let generated = 0;
  let chunkIdx = 0;
  const arm = (i: number) => {
    const nTok = (chunks[i] as number[]).length;
    return {
      budget: Math.ceil((nTok / 3.0 + 2.0) * FRAME_RATE),
      framesAfterEos: pack.framesAfterEos > 0 ? pack.framesAfterEos : nTok <= 6 ? 5 : 3,
      step: 0,
      eosStep: -1,
    };
  };
  let ch = arm(0);
  const flush = async (): Promise<PcmChunk | undefined> => {
    if (feats.length === 0) return undefined;
    const f = feats.length;
    const flat = new Float32Array(f * latentDim);
    for (let i = 0; i < f; i++) flat.set(feats[i] as Float32Array, i * latentDim);
    feats = [];
    const pcm = await stream.decode(flat, { signal });
    return {
      pcm,
      sampleRate: decoder.sampleRate,
      frames: f,
      totalFrames: generated,
      elapsedMs: performance.now() - t0,
    };
  };

  while (steps < maxFrames) {
    const frame = await projector.step(hidden, { sampling, signal });
    if (frame.endOfSpeech && ch.eosStep < 0) ch.eosStep = ch.step;
    const done =
      (ch.eosStep >= 0 && ch.step >= ch.eosStep + ch.framesAfterEos) || ch.step >= ch.budget;
    if (done) {
      const tail = await flush();
      if (tail) yield tail;
      stream = decoder.stream(); // the next chunk's audio is not continuous with this one
      if (chunkIdx + 1 >= chunks.length) break;
      chunkIdx++;
      // drop this chunk's text and audio, keep the voice conditioning
      context.removeRange(0, nVoicePos);
      pos = nVoicePos;
      ch = arm(chunkIdx);
      hidden = await prompt(chunkRows(chunks[chunkIdx] as number[]));
      steps++;
      o.onFrame?.(steps);
      continue;
    }
    feats.push(frame.latent as Float32Array);
    ch.step++;
    generated++;
    if (feats.length >= WINDOW_FRAMES) {
      const c = await flush();
      if (c) yield c;
    }
    const r = await context.decode({ embeddings: frame.embedding, pos, hidden: true, signal });
    pos++;
    hidden = r.hidden as Float32Array;
    steps++;
    o.onFrame?.(steps);
  }
  const tail = await flush();
  if (tail) yield tail;
}
