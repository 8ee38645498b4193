import type { Backbone } from '@mm/backbone-gguf';
import type { DecoderStream, Voice } from '@mm/decoders';
import { ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import type { PcmChunk, SpeakOptions, SpeechParts, TalkerSampling } from './types.js';

/** --tts-lang codes → the language names of Qwen3-TTS's `<|codec_language_*|>` tokens (llama.cpp's table). */
export const QWEN3TTS_LANGUAGES: Readonly<Record<string, string>> = {
  zh: 'chinese',
  en: 'english',
  de: 'german',
  it: 'italian',
  pt: 'portuguese',
  es: 'spanish',
  ja: 'japanese',
  ko: 'korean',
  fr: 'french',
  ru: 'russian',
};

interface Specials {
  codec0: number;
  codecBos: number;
  codecEos: number;
  codecPad: number;
  think: number;
  thinkBos: number;
  thinkEos: number;
  ttsPad: number;
  ttsBos: number;
  ttsEos: number;
}

const SPECIAL_TEXT: Record<keyof Specials, string> = {
  codec0: '<|codec_0|>',
  codecBos: '<|codec_bos|>',
  codecEos: '<|codec_eos_token|>',
  codecPad: '<|codec_pad|>',
  think: '<|codec_think|>',
  thinkBos: '<|codec_think_bos|>',
  thinkEos: '<|codec_think_eos|>',
  ttsPad: '<tts_pad>',
  ttsBos: '<tts_text_bos>',
  ttsEos: '<tts_text_eod>',
};

/** The talker's special tokens, or MM_MODEL_MISMATCH naming the first one it lacks. */
export function qwen3ttsSpecials(backbone: Backbone): Specials {
  const out = {} as Specials;
  for (const [k, text] of Object.entries(SPECIAL_TEXT) as [keyof Specials, string][]) {
    const t = backbone.lookupToken(text);
    if (t === undefined) {
      throw new MmError(
        ErrorCode.MM_MODEL_MISMATCH,
        `${backbone.path} is not a Qwen3-TTS talker: its vocabulary has no ${text}`,
      );
    }
    out[k] = t;
  }
  return out;
}

/**
 * The talker's prompt, row by row, as llama.cpp's TTS helper lays it out: the chat role (3
 * tokens), four text-pad + codec-think rows with the language, the voice row, the text rows each
 * summed with the codec pad, then text-end and codec-BOS.
 */
export function qwen3ttsPrompt(
  backbone: Backbone,
  sp: Specials,
  text: string,
  language: string,
  voice: Voice | undefined,
): Float32Array {
  const lang = QWEN3TTS_LANGUAGES[language] ?? language;
  const cLang = backbone.lookupToken(`<|codec_language_${lang}|>`);
  if (cLang === undefined) {
    const known = Object.keys(QWEN3TTS_LANGUAGES).filter(
      (k) => backbone.lookupToken(`<|codec_language_${QWEN3TTS_LANGUAGES[k]}|>`) !== undefined,
    );
    throw new MmInvalidArgumentError(
      'language',
      `unknown language '${language}' (this talker knows: ${known.join(', ')})`,
    );
  }
  const full = `<|im_start|>assistant\n${text}<|im_end|>\n<|im_start|>assistant\n`;
  const ids = backbone.tokenize(full, { addBos: false, parseSpecial: true });
  if (ids.length < 8) throw new MmInvalidArgumentError('text', 'tokenization gave too few tokens');
  const n = backbone.nEmbd;
  const pairs: [number, number | Float32Array | null][] = [];
  for (let i = 0; i < 3; i++) pairs.push([ids[i] as number, null]);
  pairs.push(
    [sp.ttsPad, sp.think],
    [sp.ttsPad, sp.thinkBos],
    [sp.ttsPad, cLang],
    [sp.ttsPad, sp.thinkEos],
  );
  if (voice) pairs.push([sp.ttsPad, voice.embedding.subarray(0, n)]);
  pairs.push([sp.ttsBos, sp.codecPad]);
  for (let i = 3; i < ids.length - 5; i++) pairs.push([ids[i] as number, sp.codecPad]);
  pairs.push([sp.ttsEos, sp.codecPad], [sp.ttsPad, sp.codecBos]);

  const firsts = backbone.tokenEmbeddings(pairs.map((p) => p[0]));
  const seconds = pairs.map((p) => p[1]);
  const tokenIds = seconds.filter((s): s is number => typeof s === 'number');
  const secondRows = backbone.tokenEmbeddings(tokenIds);
  let k = 0;
  for (let r = 0; r < pairs.length; r++) {
    const s = seconds[r];
    if (s === null || s === undefined) continue;
    const row = firsts.subarray(r * n, (r + 1) * n);
    const add = typeof s === 'number' ? secondRows.subarray(k * n, (k++ + 1) * n) : s;
    for (let i = 0; i < n; i++) row[i] = (row[i] as number) + (add[i] as number);
  }
  return firsts;
}

function mropePositions(pos0: number, n: number, nPos: number): Int32Array | undefined {
  if (nPos !== 4) return undefined;
  const p = new Int32Array(4 * n);
  for (let d = 0; d < 4; d++) for (let i = 0; i < n; i++) p[d * n + i] = pos0 + i;
  return p;
}

/**
 * Qwen3-TTS: the talker samples codebook 0, the code predictor gives the other 15 codebooks and
 * the next input row, and code2wav turns each window of frames into PCM, streamed.
 */
export async function* speakQwen3Tts(
  parts: SpeechParts,
  text: string,
  voice: Voice | undefined,
  o: SpeakOptions,
  talker: TalkerSampling,
  talkerSlot: number,
  t0: number,
): AsyncGenerator<PcmChunk> {
  const { backbone, context, projector, decoder } = parts;
  const sp = qwen3ttsSpecials(backbone);
  const prompt = qwen3ttsPrompt(backbone, sp, text, o.language ?? 'english', voice);
  const n = backbone.nEmbd;
  const nPos = backbone.info.nPosPerEmbd;
  const nRows = prompt.length / n;
  const signal = o.signal;
  const batch = o.batchSize ?? 2048;
  context.clear();
  let r: Awaited<ReturnType<typeof context.decode>> | undefined;
  for (let s = 0; s < nRows; s += batch) {
    const m = Math.min(batch, nRows - s);
    const last = s + m === nRows;
    r = await context.decode({
      embeddings: prompt.subarray(s * n, (s + m) * n),
      positions: mropePositions(s, m, nPos),
      pos: s,
      logits: last ? 'last' : 'none',
      hidden: last,
      sampleSlot: last ? talkerSlot : undefined,
      signal,
    });
  }
  let pos = nRows;
  const overlay = backbone.tokenEmbeddings([sp.ttsPad]);
  const window = decoder.info.windowFrames;
  const width = decoder.frameWidth;
  const stream: DecoderStream = decoder.stream();
  const maxFrames = o.maxFrames ?? 512;
  // llama.cpp's helper hands the code predictor the talker's top-k, top-p and seed
  const projSampling = {
    topK: talker.topK,
    topP: talker.topP,
    ...o.projectorSampling,
    seed: o.projectorSampling?.seed ?? talker.seed,
  };
  let codes: number[] = [];
  let frames = 0;
  let hidden = r?.hidden as Float32Array;
  let token = r?.token as number;
  const flush = async (): Promise<PcmChunk | undefined> => {
    if (codes.length === 0) return undefined;
    const f = codes.length / width;
    const pcm = await stream.decode(Int32Array.from(codes), { signal });
    codes = [];
    return {
      pcm,
      sampleRate: decoder.sampleRate,
      frames: f,
      totalFrames: frames,
      elapsedMs: performance.now() - t0,
    };
  };
  while (frames < maxFrames) {
    if (token === sp.codecEos || backbone.isEndOfGeneration(token)) break;
    const code0 = token - sp.codec0;
    const frame = await projector.step(hidden, { code0, sampling: projSampling, signal });
    for (const c of frame.codes) codes.push(c);
    if (codes.length / width >= window) {
      frames++;
      const chunk = await flush();
      if (chunk) yield chunk;
    } else {
      frames++;
    }
    const row = frame.embedding;
    for (let i = 0; i < n; i++) row[i] = (row[i] as number) + (overlay[i] as number);
    r = await context.decode({
      embeddings: row,
      positions: mropePositions(pos, 1, nPos),
      pos,
      hidden: true,
      sampleSlot: talkerSlot,
      signal,
    });
    pos++;
    hidden = r.hidden as Float32Array;
    token = r.token as number;
    o.onFrame?.(frames);
  }
  const tail = await flush();
  if (tail) yield tail;
}
