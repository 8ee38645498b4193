import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { checkSignal, ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';

/**
 * LLaVA-style training data (one JSON object per line: `image`, `conversations` of alternating
 * `human` / `gpt` turns, the first human turn holding one `<image>` marker), read for projector
 * training: what can be trained on, and, per line with its number, what cannot — training goes on
 * with the rest.
 */

/** One trainable line: the picture and its question / answer turns (the marker removed). */
export interface TrainSample {
  /** 1-based line number in the file. */
  line: number;
  /** Absolute path of the picture (a relative `image` is relative to the file's folder). */
  image: string;
  turns: { question: string; answer: string }[];
}

export type DataProblemKind =
  | 'bad_json'
  | 'bad_record'
  | 'missing_image'
  | 'no_marker'
  | 'several_markers'
  | 'empty_answer'
  | 'answer_too_long';

/** A line that is skipped, and why. */
export interface DataProblem {
  line: number;
  kind: DataProblemKind;
  message: string;
}

export interface ReadTrainDataOptions {
  /** Check that every picture exists (default true). */
  checkImages?: boolean;
  /**
   * With `countTokens`: the context a sample must fit (its question and answer tokens), else
   * `answer_too_long`.
   */
  maxTokens?: number;
  countTokens?: (text: string) => number;
  signal?: AbortSignal;
}

const MARKER = '<image>';

function problem(line: number, kind: DataProblemKind, message: string): DataProblem {
  return { line, kind, message: `line ${line}: ${message}` };
}

/** Reads a LLaVA-style JSONL file; MM_FILE_NOT_FOUND when it cannot be read. */
export async function readTrainData(
  path: string,
  options: ReadTrainDataOptions = {},
): Promise<{ samples: TrainSample[]; problems: DataProblem[] }> {
  if (typeof path !== 'string' || path === '') {
    throw new MmInvalidArgumentError('path', 'must be the path of a JSONL file');
  }
  const signal = checkSignal(options.signal);
  if (
    options.maxTokens !== undefined &&
    (!Number.isSafeInteger(options.maxTokens) || options.maxTokens < 1)
  ) {
    throw new MmInvalidArgumentError('maxTokens', 'must be an integer >= 1');
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new MmError(ErrorCode.MM_FILE_NOT_FOUND, `cannot read '${path}'`, { cause });
  }
  const base = dirname(resolve(path));
  const samples: TrainSample[] = [];
  const problems: DataProblem[] = [];
  const checked = new Map<string, boolean>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    signal?.throwIfAborted();
    const line = i + 1;
    const raw = (lines[i] as string).trim();
    if (raw === '') continue;
    let rec: unknown;
    try {
      rec = JSON.parse(raw);
    } catch (e) {
      problems.push(problem(line, 'bad_json', `not JSON (${(e as Error).message})`));
      continue;
    }
    const r = rec as { image?: unknown; conversations?: unknown };
    if (
      typeof r !== 'object' ||
      r === null ||
      typeof r.image !== 'string' ||
      r.image === '' ||
      !Array.isArray(r.conversations)
    ) {
      problems.push(
        problem(line, 'bad_record', 'needs a string `image` and a `conversations` array'),
      );
      continue;
    }
    const conv = r.conversations as { from?: unknown; value?: unknown }[];
    const wellFormed =
      conv.length >= 2 &&
      conv.length % 2 === 0 &&
      conv.every(
        (t, k) =>
          typeof t === 'object' &&
          t !== null &&
          t.from === (k % 2 === 0 ? 'human' : 'gpt') &&
          typeof t.value === 'string',
      );
    if (!wellFormed) {
      problems.push(
        problem(
          line,
          'bad_record',
          '`conversations` must alternate human / gpt turns with string values, human first',
        ),
      );
      continue;
    }
    const values = conv.map((t) => t.value as string);
    const markers = values.reduce((n, v) => n + v.split(MARKER).length - 1, 0);
    if (markers === 0 || !values[0]!.includes(MARKER)) {
      problems.push(problem(line, 'no_marker', `the first human turn has no ${MARKER} marker`));
      continue;
    }
    if (markers > 1) {
      problems.push(
        problem(line, 'several_markers', `${markers} ${MARKER} markers (one picture per line)`),
      );
      continue;
    }
    const turns: TrainSample['turns'] = [];
    for (let k = 0; k < values.length; k += 2) {
      turns.push({
        question: values[k]!.replace(MARKER, '').trim(),
        answer: values[k + 1]!.trim(),
      });
    }
    if (turns.some((t) => t.answer === '')) {
      problems.push(problem(line, 'empty_answer', 'an answer is empty'));
      continue;
    }
    const image = isAbsolute(r.image) ? r.image : resolve(base, r.image);
    if (options.checkImages ?? true) {
      let ok = checked.get(image);
      if (ok === undefined) {
        ok = await stat(image).then(
          (s) => s.isFile(),
          () => false,
        );
        checked.set(image, ok);
      }
      if (!ok) {
        problems.push(problem(line, 'missing_image', `the picture '${r.image}' does not exist`));
        continue;
      }
    }
    if (options.countTokens && options.maxTokens !== undefined) {
      const n = turns.reduce(
        (s, t) => s + options.countTokens!(t.question) + options.countTokens!(t.answer),
        0,
      );
      if (n > options.maxTokens) {
        problems.push(
          problem(
            line,
            'answer_too_long',
            `${n} tokens of text do not fit the ${options.maxTokens} left in the context`,
          ),
        );
        continue;
      }
    }
    samples.push({ line, image, turns });
  }
  return { samples, problems };
}
