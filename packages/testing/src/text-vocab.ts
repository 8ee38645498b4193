import { TokenType } from './tiny-llama.js';

/**
 * Vocabularies for the tiny Qwen (byte-level BPE, `gpt2` tokenizer) and Gemma (SentencePiece,
 * `llama` tokenizer) text models: the special tokens of each family, every byte, and a few hundred
 * English pieces (each word grown one character at a time from its space-prefixed first letter, so
 * that every piece is the merge of two shorter ones and both tokenizers can reach it).
 */

/** Pieces merged inside words, before the words themselves. */
const SUBWORDS = [
  'he',
  'in',
  'er',
  'an',
  're',
  'on',
  'at',
  'en',
  'nd',
  'or',
  'es',
  'ed',
  'is',
  'it',
  'ar',
  'ou',
  'le',
  'al',
  'ing',
] as const;

/** Words (after a space) whose every prefix becomes a token. */
const WORDS = [
  'the',
  'a',
  'an',
  'is',
  'are',
  'of',
  'and',
  'to',
  'in',
  'on',
  'it',
  'this',
  'that',
  'there',
  'with',
  'image',
  'picture',
  'photo',
  'shows',
  'red',
  'green',
  'blue',
  'yellow',
  'white',
  'black',
  'orange',
  'purple',
  'circle',
  'square',
  'triangle',
  'shape',
  'color',
  'large',
  'small',
  'left',
  'right',
  'top',
  'bottom',
  'center',
  'corner',
  'background',
  'bright',
  'dark',
  'light',
  'one',
  'two',
  'three',
  'many',
  'what',
  'how',
  'where',
  'yes',
  'no',
  'describe',
  'see',
  'near',
  'above',
  'below',
  'next',
  'sky',
  'tree',
  'house',
  'cat',
  'dog',
  'water',
  'road',
  'gradient',
  'noise',
  'disc',
  'round',
] as const;

/** Pieces in merge order: subwords, then every prefix of each space-prefixed word. */
function pieces(space: string): string[] {
  const out: string[] = [...SUBWORDS];
  const seen = new Set(out);
  for (const w of WORDS) {
    for (let k = 1; k <= w.length; k++) {
      const p = space + w.slice(0, k);
      if (!seen.has(p)) {
        seen.add(p);
        out.push(p);
      }
    }
  }
  return out;
}

/** Splits `piece` into two tokens already in `known` (the first split point that works). */
function split(piece: string, known: ReadonlySet<string>): [string, string] {
  const chars = [...piece];
  for (let k = 1; k < chars.length; k++) {
    const a = chars.slice(0, k).join('');
    const b = chars.slice(k).join('');
    if (known.has(a) && known.has(b)) return [a, b];
  }
  throw new Error(`internal: no split of '${piece}' into known tokens`);
}

/** GPT-2's bytes_to_unicode: the printable character that stands for each byte in a BPE token. */
export function byteLevelChars(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCharCode(printable(b) ? b : 256 + n++));
  return out;
}

/** Bytes that read as plain text: printable ASCII and the newline. */
function isTextByte(b: number): boolean {
  return b === 0x0a || (b >= 0x20 && b <= 0x7e);
}

export interface TextVocab {
  tokens: string[];
  tokenTypes: Int32Array;
  /** SentencePiece scores (0 for specials and bytes, decreasing in merge order); null for BPE. */
  scores: Float32Array | null;
  /** BPE merges, `"left right"` in rank order; null for SentencePiece. */
  merges: string[] | null;
  /**
   * Ids that are not plain text (control tokens, non-printable bytes): the tiny models give them
   * near-zero logits, so greedy generation prints readable pieces and never stops early.
   */
  quiet: number[];
}

/**
 * A byte-level BPE vocabulary (`tokenizer.ggml.model = gpt2`): the 256 byte characters, the merged
 * pieces (`Ġ` is the space), then `specials` as CONTROL tokens, Qwen's order.
 */
export function bpeVocab(specials: readonly string[]): TextVocab {
  const bytes = byteLevelChars();
  const tokens = [...bytes];
  const types: number[] = bytes.map(() => TokenType.NORMAL);
  const quiet: number[] = [];
  for (let b = 0; b < 256; b++) if (!isTextByte(b)) quiet.push(b);
  const known = new Set(tokens);
  const merges: string[] = [];
  for (const p of pieces('Ġ')) {
    const [a, b] = split(p, known);
    merges.push(`${a} ${b}`);
    known.add(p);
    tokens.push(p);
    types.push(TokenType.NORMAL);
  }
  for (const s of specials) {
    quiet.push(tokens.length);
    tokens.push(s);
    types.push(TokenType.CONTROL);
  }
  return { tokens, tokenTypes: new Int32Array(types), scores: null, merges, quiet };
}

/**
 * A SentencePiece vocabulary (`tokenizer.ggml.model = llama`): `specials` with their types, the 256
 * byte tokens `<0x00>`..`<0xFF>`, the merged pieces (`▁` is the space), then `▁` and the printable
 * ASCII characters. Scores are 0 for specials and bytes and decrease by 1 per token after them.
 */
export function spmVocab(specials: readonly (readonly [string, number])[]): TextVocab {
  const tokens: string[] = [];
  const types: number[] = [];
  const scores: number[] = [];
  const quiet: number[] = [];
  for (const [text, type] of specials) {
    quiet.push(tokens.length);
    tokens.push(text);
    types.push(type);
    scores.push(0);
  }
  for (let b = 0; b < 256; b++) {
    if (!isTextByte(b)) quiet.push(tokens.length);
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TokenType.BYTE);
    scores.push(0);
  }
  const chars = ['▁'];
  for (let c = 0x21; c <= 0x7e; c++) chars.push(String.fromCharCode(c));
  const known = new Set(chars);
  const merged = pieces('▁');
  for (const p of merged) {
    split(p, known);
    known.add(p);
  }
  [...merged, ...chars].forEach((text, i) => {
    tokens.push(text);
    types.push(TokenType.NORMAL);
    scores.push(-i);
  });
  return {
    tokens,
    tokenTypes: new Int32Array(types),
    scores: new Float32Array(scores),
    merges: null,
    quiet,
  };
}
