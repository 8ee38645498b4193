import { type Image, VisionEncoder } from '@mm/encoders';
import { MmError } from '@mm/errors';
import type { GgufTensorInput, GgufValue, GgufWriteSpec } from '@mm/gguf';
import type { Prng } from '@mm/testing';
import { expect } from 'vitest';
import type { Embeddings } from './embeddings.js';
import { inspectMmproj, Projector } from './index.js';

// Mutated and hostile mmproj files through the three native loaders (VisionEncoder.load,
// Projector.load, inspectMmproj): what the fuzz and hostile-file tests of the families share.

/** What a promise resolves to, or the code and message it rejects with ('untyped …' when not an MmError). */
export async function attempt<T>(
  p: Promise<T>,
): Promise<{ ok: T } | { code: string; message: string }> {
  try {
    return { ok: await p };
  } catch (e) {
    if (!MmError.isInstance(e)) return { code: `untyped ${String(e)}`, message: String(e) };
    return { code: e.code, message: e.message };
  }
}

/** ['ok', ''] when the load succeeds (what it loaded is disposed), or the MmError's code and message; anything else is rethrown. */
export async function outcome(p: Promise<unknown>): Promise<[string, string]> {
  try {
    const v = await p;
    (v as { dispose?: () => void })?.dispose?.();
    return ['ok', ''];
  } catch (e) {
    if (!MmError.isInstance(e)) throw e;
    return [e.code, e.message];
  }
}

/** Every stage's output for one picture, as numbers: each chunk's features, then its embeddings. */
export async function runStages(
  enc: VisionEncoder,
  proj: Projector,
  image: Image,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const f of await enc.encodeChunks(image)) {
    out.push(f.toFloat32Array());
    using e = await proj.project(f);
    out.push(e.toFloat32Array());
    f.dispose();
  }
  return out;
}

/** A change to a file's spec before it is written. */
export type Edit = (s: GgufWriteSpec) => void;

export const meta = (s: GgufWriteSpec) => s.metadata as Map<string, GgufValue>;
export const elements = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
export const setKey =
  (key: string, v: GgufValue): Edit =>
  (s) =>
    void meta(s).set(key, v);
export const dropKey =
  (key: string): Edit =>
  (s) =>
    void meta(s).delete(key);
/** The spec's tensor of that name (it must have one). */
const tensorOf = (s: GgufWriteSpec, name: string) => {
  const t = s.tensors!.find((x) => x.name === name);
  expect(t, name).toBeDefined();
  return t!;
};
export const dropTensor =
  (name: string): Edit =>
  (s) => {
    tensorOf(s, name);
    s.tensors = s.tensors!.filter((t) => t.name !== name);
  };
/** Replaces a tensor by zeros of another shape and/or type (F32, F16, I32 or Q8_0). */
export const retensor =
  (name: string, shape?: number[], type: 'F32' | 'F16' | 'I32' | 'Q8_0' = 'F32'): Edit =>
  (s) => {
    const t = tensorOf(s, name);
    const sh = shape ?? [...t.shape];
    const n = elements(sh);
    const data =
      type === 'I32'
        ? new Int32Array(n)
        : type === 'Q8_0'
          ? new Uint8Array((n / 32) * 34)
          : new Float32Array(n); // the writer stores F16 zeros from it
    Object.assign(t, { shape: sh, type, data });
  };
/** Adds a tensor of zeros. */
export const addTensor =
  (name: string, shape: number[]): Edit =>
  (s) => {
    s.tensors = [
      ...s.tensors!,
      { name, type: 'F32', shape, data: new Float32Array(elements(shape)) },
    ];
  };

/** What a hostile file must give. */
export interface LoadExpectation {
  /** Expected code, or 'ok' when the file must load. */
  code: string;
  /** A part of the error message. */
  message?: string;
  /** Only the projector's part is broken: VisionEncoder.load succeeds. */
  projectorOnly?: boolean;
}

/**
 * Loads the file at `path` with Projector.load, inspectMmproj and VisionEncoder.load: each ends in
 * `c.code` with a message that contains `c.message` (VisionEncoder.load in 'ok' when the case is
 * `projectorOnly`). A file that must load ('ok') also runs `picture` through its encoder and
 * projector: every output is finite; returns them (runStages), or [] for the others.
 */
export async function expectLoadOutcome(
  path: string,
  c: LoadExpectation,
  picture: Image,
): Promise<Float32Array[]> {
  const encoder = await outcome(VisionEncoder.load(path, { threads: 1 }));
  const results = [
    await outcome(Projector.load(path, { threads: 1 })),
    await outcome(inspectMmproj(path)),
  ];
  if (c.projectorOnly) expect(encoder[0], encoder[1]).toBe('ok');
  else results.push(encoder);
  for (const [code, message] of results) {
    expect(code, message).toBe(c.code);
    if (c.message) expect(message).toContain(c.message);
  }
  if (c.code !== 'ok') return [];
  using enc = await VisionEncoder.load(path, { threads: 1 });
  using proj = await Projector.load(path, { threads: 1 });
  const outs = await runStages(enc, proj, picture);
  expect(outs.every((a) => a.every(Number.isFinite))).toBe(true);
  return outs;
}

export function pick<T>(r: Prng, xs: readonly T[]): T {
  return xs[Math.floor(r.uniform() * xs.length)] as T;
}

/** Sets a metadata key of the spec to `v`, or deletes it when `v` is undefined; says what it did. */
export function setOrDeleteKey(s: GgufWriteSpec, key: string, v: GgufValue | undefined): string {
  const md = s.metadata as Map<string, GgufValue>;
  if (v === undefined) md.delete(key);
  else md.set(key, v);
  return `${key} = ${v === undefined ? 'deleted' : v.type === 'array' ? `${v.itemType}[${v.value.length}]` : `${v.type} ${String(v.value)}`}`;
}

/** Removes tensor `i` of the list; says what it did. */
export function dropTensorAt(tensors: GgufTensorInput[], i: number): string {
  const [t] = tensors.splice(i, 1);
  return `drop ${t!.name}`;
}

/** Replaces tensor `i` of the list by F32 zeros of `shape`; says what it did. */
export function reshapeTensorAt(tensors: GgufTensorInput[], i: number, shape: number[]): string {
  const { name } = tensors[i]!;
  tensors[i] = { name, type: 'F32', shape, data: new Float32Array(elements(shape)) };
  return `reshape ${name} [${shape.join(', ')}]`;
}

/** The outcomes of a fuzz run: counts per outcome, the failures, how many loaded and ran. */
export class FuzzTally {
  readonly counts: Record<string, number> = {};
  readonly failures: string[] = [];
  loaded = 0;
  maxMs = 0;

  count(outcome: string): void {
    this.counts[outcome] = (this.counts[outcome] ?? 0) + 1;
  }

  /** The counts, most frequent first: "MM_GGUF_INVALID 120, loaded 30, …". */
  get summary(): string {
    return Object.entries(this.counts)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  }
}

/**
 * One mutated mmproj through an encoder loader, a projector loader and a header inspection; when
 * the encoder and projector load, `run` exercises them (what loads also runs). Tallies the outcome
 * (the projector's code, 'loaded' or 'loaded, encode <code>') and as failures: an untyped error or
 * MM_INTERNAL from any loader or the run, the inspection and the projector load disagreeing on the
 * file (both validate the whole of it), a case slower than `maxMs`.
 */
export async function fuzzCase<E extends { dispose(): void }, P extends { dispose(): void }>(
  what: string,
  tally: FuzzTally,
  steps: {
    encoder: () => Promise<E>;
    projector: () => Promise<P>;
    inspect: () => Promise<unknown>;
    run: (enc: E, proj: P) => Promise<void>;
  },
  maxMs: number,
): Promise<void> {
  const t0 = performance.now();
  const enc = await attempt(steps.encoder());
  const proj = await attempt(steps.projector());
  const info = await attempt(steps.inspect());
  let result = 'code' in proj ? proj.code : 'loaded';
  if ('ok' in enc && 'ok' in proj) {
    const run = await attempt(steps.run(enc.ok, proj.ok));
    if ('code' in run) result = `loaded, encode ${run.code}`;
    else tally.loaded++;
  }
  if ('ok' in enc) enc.ok.dispose();
  if ('ok' in proj) proj.ok.dispose();
  const ms = performance.now() - t0;
  tally.maxMs = Math.max(tally.maxMs, ms);
  tally.count(result);
  for (const o of [enc, proj, info]) {
    if ('code' in o && (o.code.startsWith('untyped') || o.code === 'MM_INTERNAL')) {
      tally.failures.push(`${what}: ${o.code}: ${o.message}`);
    }
  }
  if (result.includes('MM_INTERNAL') || result.includes('untyped')) {
    tally.failures.push(`${what}: ${result}`);
  }
  if ('code' in info !== 'code' in proj) {
    tally.failures.push(
      `${what}: inspect ${'code' in info ? info.code : 'ok'}, load ${'code' in proj ? proj.code : 'ok'}`,
    );
  }
  if (ms > maxMs) tally.failures.push(`${what}: ${ms.toFixed(0)} ms`);
}

/**
 * One mutated file through VisionEncoder.load, Projector.load and inspectMmproj (fuzzCase); when
 * the encoder and projector load, `picture` is encoded and each chunk projected (to the
 * projector's nEmbdOut wide, and `check` on each).
 */
export async function fuzzLoaders(
  path: string,
  what: string,
  picture: Image,
  tally: FuzzTally,
  options: { maxMs: number; check?: (e: Embeddings, proj: Projector) => void },
): Promise<void> {
  await fuzzCase(
    what,
    tally,
    {
      encoder: () => VisionEncoder.load(path, { threads: 1 }),
      projector: () => Projector.load(path, { threads: 1 }),
      inspect: () => inspectMmproj(path),
      run: async (enc, proj) => {
        for (const f of await enc.encodeChunks(picture)) {
          using e = await proj.project(f);
          f.dispose();
          expect(e.nEmbd).toBe(proj.info.nEmbdOut);
          options.check?.(e, proj);
        }
      },
    },
    options.maxMs,
  );
}

/**
 * A random change to one tensor of the spec, picked among `focus` half of the time: dropped,
 * reshaped (one dimension to one of `dims`), retyped (F32, F16, I32) or swapping names with
 * another; says what it did.
 */
export function mutateTensor(
  r: Prng,
  s: GgufWriteSpec,
  focus: (name: string) => boolean,
  dims: readonly number[],
): string {
  const tensors = [...(s.tensors as GgufTensorInput[])];
  const focused = tensors.filter((t) => focus(t.name));
  const t = r.uniform() < 0.5 && focused.length > 0 ? pick(r, focused) : pick(r, tensors);
  const i = tensors.indexOf(t);
  let what: string;
  switch (Math.floor(r.uniform() * 4)) {
    case 0:
      what = dropTensorAt(tensors, i);
      break;
    case 1: {
      const shape = [...t.shape];
      shape[Math.floor(r.uniform() * shape.length)] = pick(r, dims);
      what = reshapeTensorAt(tensors, i, shape);
      break;
    }
    case 2: {
      const type = pick(r, ['F32', 'F16', 'I32'] as const);
      const n = elements(t.shape);
      tensors[i] = { ...t, type, data: type === 'I32' ? new Int32Array(n) : new Float32Array(n) };
      what = `retype ${t.name} ${type}`;
      break;
    }
    default: {
      const other = pick(r, tensors);
      tensors[i] = { ...t, name: other.name };
      tensors[tensors.indexOf(other)] = { ...other, name: t.name };
      what = `swap ${t.name} / ${other.name}`;
    }
  }
  s.tensors = tensors;
  return what;
}
