import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MmInvalidArgumentError } from '@mm/errors';
import { encodePng, type RgbImage } from './images.js';
import { Prng } from './prng.js';

/**
 * The tiny-shapes world in code: 48x48 pictures of one filled shape (5 shapes x 6 colours x 5
 * positions x 2 sizes) on a light, noisy background, and the 13 questions of MODEL.md with their
 * exact answers. Drawn to look like the pictures the shipped model was trained on (sizes,
 * positions, colours and background measured from its samples), so that the model answers them;
 * the data of projector training (issue "Train an input projector") and of tests. Deterministic:
 * a seed gives the same pictures everywhere.
 */

export const TINY_SHAPES_SIZE = 48;
export const SHAPES = ['circle', 'square', 'triangle', 'diamond', 'cross'] as const;
export const COLORS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'] as const;
export const POSITIONS = ['left', 'right', 'top', 'bottom', 'center'] as const;
export const SIZES = ['small', 'large'] as const;

export type Shape = (typeof SHAPES)[number];
export type Color = (typeof COLORS)[number];
export type Position = (typeof POSITIONS)[number];
export type Size = (typeof SIZES)[number];
export type QuestionKind = 'describe' | 'color' | 'shape' | 'position';

export interface Scene {
  shape: Shape;
  color: Color;
  position: Position;
  size: Size;
}

/** MODEL.md's questions per kind; the first of each is the canonical one. */
export const QUESTIONS: Readonly<Record<QuestionKind, readonly string[]>> = {
  describe: [
    'Describe the image.',
    'Describe the image briefly.',
    'What is in the image?',
    'What do you see?',
  ],
  color: ['What color is the shape?', 'What is the color of the shape?', 'Which color is it?'],
  shape: ['What shape is it?', 'What shape is in the image?', 'Which shape do you see?'],
  position: ['Where is the shape?', 'Where is it?', 'Where is the shape located?'],
};

export const QUESTION_KINDS: readonly QuestionKind[] = ['describe', 'color', 'shape', 'position'];

const POSITION_PHRASE: Record<Position, string> = {
  left: 'on the left',
  right: 'on the right',
  top: 'at the top',
  bottom: 'at the bottom',
  center: 'in the center',
};

/** The exact answer the model gives (MODEL.md): `a red circle on the left.`, `red.`, ... */
export function tinyShapesAnswer(scene: Scene, kind: QuestionKind): string {
  switch (kind) {
    case 'describe': {
      const article = /^[aeiou]/.test(scene.color) ? 'an' : 'a';
      return `${article} ${scene.color} ${scene.shape} ${POSITION_PHRASE[scene.position]}.`;
    }
    case 'color':
      return `${scene.color}.`;
    case 'shape':
      return `${scene.shape}.`;
    case 'position':
      return `${POSITION_PHRASE[scene.position]}.`;
  }
}

// Colours as measured on MODEL.md's test set (each picture jitters them by up to ±14).
const RGB: Record<Color, readonly [number, number, number]> = {
  red: [217, 43, 40],
  green: [44, 162, 57],
  blue: [37, 86, 210],
  yellow: [227, 202, 30],
  purple: [138, 61, 178],
  orange: [242, 136, 22],
};

// Shape centres per position (jittered by up to ±2 px) and extents per size (±1.5 px), as measured on MODEL.md's test set: a circle's
// diameter, a diamond's and a cross's span; squares and triangles are drawn a little smaller, as in
// the samples.
const CENTRE: Record<Position, readonly [number, number]> = {
  left: [12, 24],
  right: [36, 24],
  top: [24, 12],
  bottom: [24, 36],
  center: [24, 24],
};
const EXTENT: Record<Size, number> = { small: 12.5, large: 18 };

function pick<T>(r: Prng, xs: readonly T[]): T {
  return xs[Math.floor(r.uniform() * xs.length)] as T;
}

/** A uniformly random scene. */
export function randomScene(r: Prng): Scene {
  return {
    shape: pick(r, SHAPES),
    color: pick(r, COLORS),
    position: pick(r, POSITIONS),
    size: pick(r, SIZES),
  };
}

// Whether (dx, dy) from the centre is inside the shape of half-extent h.
function inside(shape: Shape, dx: number, dy: number, h: number): boolean {
  switch (shape) {
    case 'circle':
      return dx * dx + dy * dy <= h * h;
    case 'square':
      return Math.abs(dx) <= h * 0.86 && Math.abs(dy) <= h * 0.86;
    case 'triangle': {
      // apex up, base down: height 0.9 of the extent, base 0.95
      const half = h * 0.9;
      if (dy < -half || dy > half) return false;
      return Math.abs(dx) <= (h * 0.95 * (dy + half)) / (2 * half);
    }
    case 'diamond':
      return Math.abs(dx) + Math.abs(dy) <= h * 1.08;
    case 'cross': {
      const arm = h * 0.34;
      return (
        (Math.abs(dx) <= arm && Math.abs(dy) <= h) || (Math.abs(dy) <= arm && Math.abs(dx) <= h)
      );
    }
  }
}

// The share of a pixel the shape covers, from 4x4 samples (edges are blended, as in the samples).
function coverage(shape: Shape, px: number, py: number, h: number): number {
  let n = 0;
  for (let j = 0; j < 4; j++) {
    for (let i = 0; i < 4; i++) {
      if (inside(shape, px + (i + 0.5) / 4, py + (j + 0.5) / 4, h)) n++;
    }
  }
  return n / 16;
}

const clamp8 = (v: number) => Math.max(0, Math.min(255, Math.round(v)));

/** The picture of a scene: RGB, 48x48, row-major. `r` draws the jitter and the noise. */
export function drawTinyShape(scene: Scene, r: Prng): RgbImage {
  for (const [k, v] of Object.entries(scene)) {
    const allowed: readonly string[] =
      k === 'shape' ? SHAPES : k === 'color' ? COLORS : k === 'position' ? POSITIONS : SIZES;
    if (!allowed.includes(v as string)) {
      throw new MmInvalidArgumentError(
        `scene.${k}`,
        `must be one of ${allowed.join(', ')}, got ${String(v)}`,
      );
    }
  }
  const n = TINY_SHAPES_SIZE;
  const data = new Uint8Array(n * n * 3);
  const bg = [0, 1, 2].map(() => 226 + r.uniform() * 26);
  const fg = RGB[scene.color].map((c) => c + (r.uniform() * 2 - 1) * 14);
  const [bx, by] = CENTRE[scene.position];
  const cx = bx + Math.round((r.uniform() * 2 - 1) * 2);
  const cy = by + Math.round((r.uniform() * 2 - 1) * 2);
  const h = (EXTENT[scene.size] + (r.uniform() * 2 - 1) * 1.5) / 2;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const a = coverage(scene.shape, x - cx, y - cy, h);
      for (let c = 0; c < 3; c++) {
        const v = a * (fg[c] as number) + (1 - a) * (bg[c] as number);
        data[(y * n + x) * 3 + c] = clamp8(v + (r.uniform() * 2 - 1) * (a > 0.5 ? 4 : 8));
      }
    }
  }
  return { width: n, height: n, data };
}

/** One picture with its scene and every question of every kind with its exact answer. */
export interface TinyShapesItem {
  scene: Scene;
  image: RgbImage;
  questions: { kind: QuestionKind; question: string; answer: string }[];
}

/** `count` random pictures from `seed`, each with its 13 questions and answers. */
export function tinyShapesItems(count: number, seed: number): TinyShapesItem[] {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new MmInvalidArgumentError('count', `must be an integer >= 0, got ${count}`);
  }
  const r = new Prng(seed);
  const out: TinyShapesItem[] = [];
  for (let i = 0; i < count; i++) {
    const scene = randomScene(r);
    const image = drawTinyShape(scene, r);
    const questions = QUESTION_KINDS.flatMap((kind) =>
      QUESTIONS[kind].map((question) => ({
        kind,
        question,
        answer: tinyShapesAnswer(scene, kind),
      })),
    );
    out.push({ scene, image, questions });
  }
  return out;
}

/** One line of a LLaVA-style training file (`image` relative to the file, `<image>` marker). */
export interface LlavaRecord {
  image: string;
  conversations: { from: 'human' | 'gpt'; value: string }[];
}

/**
 * Writes `count` pictures from `seed` as PNGs into `dir` and a LLaVA-style JSONL file naming them,
 * one conversation per line: `kind: 'pt'` (pre-training: captions, the canonical describe question
 * and its answer) or `'it'` (instruction tuning: one random question of any kind per picture, all
 * 13 phrasings). Returns the JSONL path and the records.
 */
export async function writeTinyShapesDataset(
  dir: string,
  options: { count: number; seed: number; kind: 'pt' | 'it'; name?: string },
): Promise<{ jsonl: string; records: LlavaRecord[] }> {
  if (options.kind !== 'pt' && options.kind !== 'it') {
    throw new MmInvalidArgumentError('kind', `must be 'pt' or 'it', got ${String(options.kind)}`);
  }
  await mkdir(dir, { recursive: true });
  const name = options.name ?? `tiny-shapes-${options.kind}-${options.seed}`;
  const r = new Prng(options.seed ^ 0x5eed);
  const records: LlavaRecord[] = [];
  for (const [i, item] of tinyShapesItems(options.count, options.seed).entries()) {
    const image = `${name}-${String(i).padStart(5, '0')}.png`;
    await writeFile(join(dir, image), encodePng(item.image));
    const q =
      options.kind === 'pt'
        ? (item.questions[0] as TinyShapesItem['questions'][number])
        : pick(r, item.questions);
    records.push({
      image,
      conversations: [
        { from: 'human', value: `<image>\n${q.question}` },
        { from: 'gpt', value: q.answer },
      ],
    });
  }
  const jsonl = join(dir, `${name}.jsonl`);
  await writeFile(jsonl, `${records.map((x) => JSON.stringify(x)).join('\n')}\n`);
  return { jsonl, records };
}
