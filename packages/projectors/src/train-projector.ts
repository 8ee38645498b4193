import { mkdir, stat, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Backbone } from '@mm/backbone-gguf';
import { Image, VisionEncoder } from '@mm/encoders';
import { checkSignal, ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import { readGguf } from '@mm/gguf';
import type { NativeTrainSample } from '@mm/native';
import { ProjectorTrainer, type TrainStepResult } from './projector-trainer.js';
import {
  type Checkpoint,
  readCheckpoint,
  trainFingerprint,
  writeCheckpoint,
} from './train-checkpoint.js';
import { type DataProblem, readTrainData, type TrainSample } from './train-data.js';
import { layoutTrainSample } from './train-layout.js';
import { initialParams, writeTrainedMmproj } from './train-mmproj.js';

/**
 * What to train: `mlp` (mm.0 → GELU → mm.2, LLaVA-1.5), `linear` (one matrix and bias, LLaVA-1;
 * written as an exactly equivalent two-layer `mlp`, the form libmtmd loads), `ldpv2` (MobileVLM V2:
 * MLP, 2x2 average pooling of a 24x24 grid and a depthwise-conv positional encoding; 144 rows), or
 * `from-mmproj` (the mmproj's own `mlp` or `ldpv2` projector, same shapes, from its weights).
 */
export type TrainProjectorKind = 'mlp' | 'linear' | 'ldpv2' | 'from-mmproj';

export interface TrainStage {
  /** `pt`: picture–caption pairs (pre-training); `it`: instructions (instruction tuning). */
  kind: 'pt' | 'it';
  /** A LLaVA-style JSONL file (see readTrainData). */
  data: string;
  /** Optimiser steps of this stage (default: `epochs` epochs). */
  steps?: number;
  /** Epochs when `steps` is not given (default 1). */
  epochs?: number;
  /** Overrides of the optimiser's learning rate, warm-up and schedule for this stage. */
  lr?: number;
  warmup?: number;
  schedule?: 'cosine' | 'constant';
}

export interface TrainOptimizer {
  /** Peak learning rate (default 3e-3). */
  lr?: number;
  /** AdamW decoupled weight decay (default 0.01, PyTorch's). */
  weightDecay?: number;
  /** Linear warm-up steps at the start of each stage (default 10). */
  warmup?: number;
  /** After warm-up: cosine decay to 0 at the stage's end (default) or constant. */
  schedule?: 'cosine' | 'constant';
  beta1?: number;
  beta2?: number;
  eps?: number;
}

export interface TrainProgress {
  phase: 'prepare' | 'encode' | 'train' | 'write';
  /** encode: pictures encoded of total. */
  done?: number;
  total?: number;
  stage?: 'pt' | 'it';
  stageIndex?: number;
  /** train: steps done in this stage, of `steps`. */
  step?: number;
  steps?: number;
  /** Mean answer-token cross-entropy of the last step. */
  loss?: number;
  /** Answer tokens the last step predicted right (argmax), of those in its batch. */
  tokenAccuracy?: number;
  samplesPerSec?: number;
  elapsedMs: number;
  /** Estimated time left for the training steps. */
  etaMs?: number;
  /** A checkpoint was just written. */
  checkpoint?: string;
}

export interface TrainProjectorOptions {
  /** The frozen LLM: a llama.cpp text GGUF of the `llama` architecture. */
  model: string;
  /** The mmproj whose vision encoder is kept (frozen; its tensors are copied byte for byte). */
  mmproj: string;
  /** Where the new mmproj is written. */
  out: string;
  projector?: TrainProjectorKind;
  /** `random` (seeded, PyTorch's Linear init; default) or `mmproj` (continue from its weights). */
  init?: 'random' | 'mmproj';
  /** mm.0's output width for `mlp` (default: the LLM's n_embd). */
  hidden?: number;
  stages: TrainStage[];
  optimizer?: TrainOptimizer;
  /** Samples per step (default 64). */
  batchSize?: number;
  /** Seeds the initialisation and the data order (default 1). */
  seed?: number;
  /** CPU threads (default: all cores). */
  threads?: number;
  /**
   * Checkpoint file: written every `checkpointEvery` steps, at each stage's end and when aborted;
   * with `resume`, training continues from it (same options required).
   */
  checkpoint?: string;
  checkpointEvery?: number;
  resume?: boolean;
  /** Render the chat template with Jinja (default false, as llama-mtmd-cli and `mm run`). */
  jinja?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: TrainProgress) => void;
  /**
   * A folder to write the prepared run to (laid-out samples, cached features, initial weights and
   * the recipe), for running the same recipe elsewhere: bench/train_torch.py reads it.
   */
  exportPrepared?: string;
  /**
   * Also write the projector as it is after each stage but the last, beside `out` as
   * `<out>.<kind>.gguf` (e.g. `new.pt.gguf`: the model after pre-training alone).
   */
  saveStages?: boolean;
}

export interface TrainCurvePoint {
  step: number;
  loss: number;
  tokenAccuracy: number;
}

export interface TrainStageResult {
  kind: 'pt' | 'it';
  data: string;
  steps: number;
  samples: number;
  /** Usable lines of the file (the rest are in `problems`). */
  lines: number;
  seconds: number;
  samplesPerSec: number;
  curve: TrainCurvePoint[];
  /** With saveStages: the mmproj written after this stage. */
  out?: string;
}

export interface TrainProjectorResult {
  out: string;
  projector: 'mlp' | 'linear' | 'ldpv2';
  stages: TrainStageResult[];
  /** Bad lines of every stage's file, each with its stage, line number and kind; skipped. */
  problems: (DataProblem & { stage: number })[];
  pictures: number;
  encodeSeconds: number;
  trainSeconds: number;
  /** Step (over all stages) the run resumed from, when it did. */
  resumedFrom?: number;
}

interface ResolvedStage {
  kind: 'pt' | 'it';
  data: string;
  steps: number;
  lr: number;
  warmup: number;
  schedule: 'cosine' | 'constant';
  /** Sample indices (into the trainer's samples) of this stage. */
  first: number;
  count: number;
}

/** Learning rate at step s (0-based) of a stage: linear warm-up, then cosine to 0 or constant. */
export function learningRate(
  stage: { lr: number; warmup: number; schedule: 'cosine' | 'constant'; steps: number },
  s: number,
): number {
  if (s < stage.warmup) return (stage.lr * (s + 1)) / stage.warmup;
  if (stage.schedule === 'constant') return stage.lr;
  const span = Math.max(1, stage.steps - stage.warmup);
  return stage.lr * 0.5 * (1 + Math.cos((Math.PI * (s - stage.warmup)) / span));
}

/** A small seeded PRNG (mulberry32): data order and initialisation. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The samples of step s of a stage: each epoch a seeded permutation, the last partial batch dropped. */
export function batchAt(
  seed: number,
  stageIndex: number,
  count: number,
  batchSize: number,
  s: number,
): number[] {
  const size = Math.min(batchSize, count);
  const perEpoch = Math.max(1, Math.floor(count / size));
  const epoch = Math.floor(s / perEpoch);
  const rnd = mulberry32((seed * 1000003 + stageIndex * 7919 + epoch * 104729) >>> 0);
  const order = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const j = s % perEpoch;
  return order.slice(j * size, (j + 1) * size);
}

function positiveInt(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw new MmInvalidArgumentError(name, `must be an integer >= 1, got ${String(v)}`);
  }
  return v;
}

function nonNegative(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new MmInvalidArgumentError(name, `must be a finite number >= 0, got ${String(v)}`);
  }
  return v;
}

function nonEmptyString(name: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') {
    throw new MmInvalidArgumentError(name, 'must be a non-empty path');
  }
  return v;
}

/** The projector kinds of libmtmd's LLaVA graph, whose encoder a trained `mlp` / `linear` keeps. */
const LLAVA_GRAPH_TYPES = new Set(['mlp', 'mlp_norm', 'ldp', 'ldpv2']);

/**
 * Trains an input projector between a frozen vision encoder (from an mmproj) and a frozen LLM
 * (any `llama` GGUF), with the survey's recipe: stages of pre-training on picture–caption pairs
 * and instruction tuning, loss on the answer tokens only, AdamW — all on ggml, the kernels
 * inference runs on. Each picture is encoded once. The written mmproj keeps the encoder's tensors
 * byte for byte and holds the trained projector as `clip.projector_type = mlp`; llama.cpp's
 * libmtmd, llama-mtmd-cli and `mm run` load it with the LLM.
 */
export async function trainProjector(
  options: TrainProjectorOptions,
): Promise<TrainProjectorResult> {
  const t0 = performance.now();
  const model = nonEmptyString('model', options.model);
  const mmproj = nonEmptyString('mmproj', options.mmproj);
  const out = nonEmptyString('out', options.out);
  const signal = checkSignal(options.signal);
  if (!Array.isArray(options.stages) || options.stages.length === 0) {
    throw new MmInvalidArgumentError('stages', 'must list at least one stage');
  }
  const kind = options.projector ?? 'mlp';
  if (!['mlp', 'linear', 'ldpv2', 'from-mmproj'].includes(kind)) {
    throw new MmInvalidArgumentError(
      'projector',
      `must be 'mlp', 'linear', 'ldpv2' or 'from-mmproj', got ${String(kind)}`,
    );
  }
  const init = options.init ?? (kind === 'from-mmproj' ? 'mmproj' : 'random');
  if (init !== 'random' && init !== 'mmproj') {
    throw new MmInvalidArgumentError('init', `must be 'random' or 'mmproj', got ${String(init)}`);
  }
  const batchSize = positiveInt('batchSize', options.batchSize, 64);
  const seed = options.seed ?? 1;
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new MmInvalidArgumentError('seed', `must be an integer >= 0, got ${String(seed)}`);
  }
  const threads = positiveInt('threads', options.threads, availableParallelism());
  const opt = options.optimizer ?? {};
  const hyper = {
    beta1: nonNegative('optimizer.beta1', opt.beta1, 0.9),
    beta2: nonNegative('optimizer.beta2', opt.beta2, 0.999),
    eps: nonNegative('optimizer.eps', opt.eps, 1e-8),
    weightDecay: nonNegative('optimizer.weightDecay', opt.weightDecay, 0.01),
  };
  if (hyper.beta1 >= 1 || hyper.beta2 >= 1 || hyper.eps <= 0) {
    throw new MmInvalidArgumentError('optimizer', 'needs beta1, beta2 < 1 and eps > 0');
  }
  const checkpointEvery = positiveInt('checkpointEvery', options.checkpointEvery, 50);
  if (options.resume && options.checkpoint === undefined) {
    throw new MmInvalidArgumentError('resume', 'needs a checkpoint path');
  }
  const progress = (p: Omit<TrainProgress, 'elapsedMs'>) => {
    try {
      options.onProgress?.({ ...p, elapsedMs: performance.now() - t0 });
    } catch {
      // a throwing progress callback must not stop training
    }
  };

  // the mmproj: which encoder, which projector tensors
  const mmFile = await readGguf(mmproj, { signal });
  const typeValue =
    mmFile.metadata.get('clip.projector_type') ?? mmFile.metadata.get('clip.vision.projector_type');
  const mmType = typeValue?.type === 'string' ? typeValue.value : undefined;
  if (mmType === undefined || !LLAVA_GRAPH_TYPES.has(mmType)) {
    throw new MmError(
      ErrorCode.MM_UNSUPPORTED_FAMILY,
      `'${mmproj}' has projector type ${mmType === undefined ? '(none)' : `'${mmType}'`}: training keeps the encoder of libmtmd's LLaVA graph (types ${[...LLAVA_GRAPH_TYPES].join(', ')})`,
    );
  }
  if (kind === 'from-mmproj' && mmType !== 'mlp' && mmType !== 'ldpv2') {
    throw new MmError(
      ErrorCode.MM_UNSUPPORTED_FAMILY,
      `projector 'from-mmproj' trains the file's 'mlp' or 'ldpv2' projector; '${mmproj}' has '${mmType}' (use 'mlp', 'linear' or 'ldpv2')`,
    );
  }
  const projector: 'mlp' | 'linear' | 'ldpv2' =
    kind === 'from-mmproj' ? (mmType as 'mlp' | 'ldpv2') : kind;

  progress({ phase: 'prepare' });
  let backbone: Backbone | undefined;
  const encoders: VisionEncoder[] = [];
  let trainer: ProjectorTrainer | undefined;
  try {
    backbone = await Backbone.load(model, { signal });
    // A small encoder runs faster as one single-threaded copy per core than as one multi-threaded
    // graph (its graphs are too small to split); a large one is loaded once.
    const small = (await stat(mmproj)).size < 64 * 1024 * 1024;
    for (let i = 0; i < (small ? threads : 1); i++) {
      encoders.push(await VisionEncoder.load(mmproj, { threads: small ? 1 : threads, signal }));
    }
    // read every stage's file
    const problems: (DataProblem & { stage: number })[] = [];
    const images = new Map<string, number>();
    const paths: string[] = [];
    const read: TrainSample[][] = [];
    for (const [si, st] of options.stages.entries()) {
      if (st === null || typeof st !== 'object' || (st.kind !== 'pt' && st.kind !== 'it')) {
        throw new MmInvalidArgumentError(`stages[${si}].kind`, "must be 'pt' or 'it'");
      }
      const r = await readTrainData(nonEmptyString(`stages[${si}].data`, st.data), { signal });
      for (const p of r.problems) problems.push({ ...p, stage: si });
      for (const s of r.samples) {
        if (!images.has(s.image)) {
          images.set(s.image, paths.length);
          paths.push(s.image);
        }
      }
      read.push(r.samples);
    }

    // encode each picture once; a picture that does not decode makes its lines bad ones
    const t1 = performance.now();
    let nEmbdV = 0;
    let nRows = 0;
    let feats = new Float32Array(0);
    const bad = new Set<number>();
    const chunk = 256;
    for (let at = 0; at < paths.length; at += chunk) {
      const decoded: Image[] = [];
      const which: number[] = [];
      for (let i = at; i < Math.min(paths.length, at + chunk); i++) {
        try {
          decoded.push(await Image.fromFile(paths[i] as string, { signal }));
          which.push(i);
        } catch (e) {
          if (signal?.aborted) throw signal.reason;
          const code = MmError.isInstance(e) ? e.code : undefined;
          if (
            code === ErrorCode.MM_IMAGE_DECODE ||
            code === ErrorCode.MM_FILE_NOT_FOUND ||
            code === ErrorCode.MM_IMAGE_TOO_LARGE ||
            code === ErrorCode.MM_IO
          ) {
            bad.add(i);
            continue;
          }
          throw e;
        }
      }
      if (decoded.length === 0) continue;
      const per = Math.ceil(decoded.length / encoders.length);
      const parts = await Promise.all(
        encoders.map((e, k) => {
          const mine = decoded.slice(k * per, (k + 1) * per);
          return mine.length > 0 ? e.encodeMany(mine, { signal }) : undefined;
        }),
      );
      const first = parts[0] as NonNullable<(typeof parts)[number]>;
      const r = {
        nEmbd: first.nEmbd,
        nTokens: first.nTokens,
        rows:
          parts.length === 1 ? first.rows : concatF32(parts.flatMap((p) => (p ? [p.rows] : []))),
      };
      if (nEmbdV === 0) {
        nEmbdV = r.nEmbd;
        nRows = r.nTokens;
        feats = new Float32Array(paths.length * nRows * nEmbdV);
      } else if (r.nEmbd !== nEmbdV || r.nTokens !== nRows) {
        throw new MmError(
          ErrorCode.MM_INVALID_ARGUMENT,
          'the pictures give different feature shapes (sizes differ)',
        );
      }
      const size = nRows * nEmbdV;
      for (const [k, i] of which.entries())
        feats.set(r.rows.subarray(k * size, (k + 1) * size), i * size);
      progress({ phase: 'encode', done: Math.min(paths.length, at + chunk), total: paths.length });
    }
    const encodeSeconds = (performance.now() - t1) / 1000;
    // the features are cached: the encoders are not needed while training
    for (const e of encoders.splice(0)) e.dispose();
    if (nEmbdV === 0) {
      throw new MmError(ErrorCode.MM_INVALID_ARGUMENT, 'no picture could be encoded');
    }

    // rows per picture after the projector (ldpv2 pools 2x2; libmtmd takes a 24x24 grid)
    if (projector === 'ldpv2' && nRows !== 576) {
      throw new MmError(
        ErrorCode.MM_UNSUPPORTED_FAMILY,
        `ldpv2 needs the encoder's 24x24 patch grid (576 rows); '${mmproj}' gives ${nRows}`,
      );
    }
    const outRows = projector === 'ldpv2' ? nRows / 4 : nRows;

    // lay out every sample as inference will see it
    const natives: NativeTrainSample[] = [];
    const stages: ResolvedStage[] = [];
    const room = backbone.contextLength;
    const cache = new Map<string, string>();
    for (const [si, st] of options.stages.entries()) {
      const first = natives.length;
      for (const s of read[si] as TrainSample[]) {
        const image = images.get(s.image) as number;
        if (bad.has(image)) {
          problems.push({
            stage: si,
            line: s.line,
            kind: 'missing_image',
            message: `line ${s.line}: the picture '${s.image}' cannot be decoded`,
          });
          continue;
        }
        const layout = layoutTrainSample(backbone, s, outRows, {
          jinja: options.jinja ?? false,
          cache,
        });
        if (layout.length > room) {
          problems.push({
            stage: si,
            line: s.line,
            kind: 'answer_too_long',
            message: `line ${s.line}: ${layout.length} positions (picture and text) do not fit the model's context of ${room}`,
          });
          continue;
        }
        natives.push({
          image,
          imagePos: layout.imagePos,
          tokens: layout.tokens,
          targets: layout.targets,
        });
      }
      const count = natives.length - first;
      if (count === 0) {
        throw new MmError(
          ErrorCode.MM_INVALID_ARGUMENT,
          `stage ${si} ('${st.data}') has no usable sample`,
          {
            details: { problems: problems.filter((p) => p.stage === si).length },
          },
        );
      }
      const perEpoch = Math.max(1, Math.floor(count / Math.min(batchSize, count)));
      const steps =
        st.steps !== undefined
          ? positiveInt(`stages[${si}].steps`, st.steps, 1)
          : perEpoch * positiveInt(`stages[${si}].epochs`, st.epochs, 1);
      stages.push({
        kind: st.kind,
        data: st.data,
        steps,
        lr: nonNegative(`stages[${si}].lr`, st.lr, nonNegative('optimizer.lr', opt.lr, 3e-3)),
        warmup: Math.floor(
          nonNegative(
            `stages[${si}].warmup`,
            st.warmup,
            nonNegative('optimizer.warmup', opt.warmup, 10),
          ),
        ),
        schedule: st.schedule ?? opt.schedule ?? 'cosine',
        first,
        count,
      });
    }

    // the trainer: frozen LLM, projector parameters
    const llmWidth = backbone.nEmbd;
    const fileHidden = mmFile.tensors.find((x) => x.name === 'mm.0.weight')?.shape[1];
    const hidden =
      projector !== 'mlp'
        ? llmWidth
        : init === 'mmproj' && fileHidden !== undefined
          ? fileHidden
          : positiveInt('hidden', options.hidden, llmWidth);
    trainer = await ProjectorTrainer.create({
      model,
      projector,
      nEmbdV,
      nHidden: hidden,
      threads,
      signal,
    });
    const t = trainer;
    const params = t.params;
    const current = () => new Map(params.map((p) => [p.name, t.getParam(p.name)] as const));
    const initial = {
      hidden,
      params: await initialParams({ mmFile, mmproj, init, shapes: params, seed }),
    };
    t.setData(feats, paths.length, nRows, natives);
    for (const p of params) {
      t.setParam(p.name, initial.params.get(p.name) as Float32Array);
    }

    if (options.exportPrepared !== undefined) {
      await exportPrepared(options.exportPrepared, {
        model,
        projector,
        nEmbdV,
        nRows,
        hidden: initial.hidden,
        llmWidth,
        nImages: paths.length,
        batchSize,
        seed,
        hyper,
        stages,
        natives,
        feats,
        params: params.map((p) => initial.params.get(p.name) as Float32Array),
      });
    }

    // resume
    const fingerprint = await trainFingerprint({
      model,
      mmproj,
      projector,
      init,
      hidden: initial.hidden,
      batchSize,
      seed,
      threads,
      stages,
      hyper,
    });
    let startStage = 0;
    let startStep = 0;
    let resumedFrom: number | undefined;
    const results: TrainStageResult[] = stages.map((s) => ({
      kind: s.kind,
      data: s.data,
      steps: s.steps,
      samples: 0,
      lines: s.count,
      seconds: 0,
      samplesPerSec: 0,
      curve: [],
    }));
    if (options.resume && options.checkpoint !== undefined) {
      const ck = await readCheckpoint(options.checkpoint);
      if (ck !== undefined) {
        if (ck.fingerprint !== fingerprint) {
          throw new MmError(
            ErrorCode.MM_INVALID_ARGUMENT,
            `the checkpoint '${options.checkpoint}' was written by a run with other options or data; remove it or run without resume`,
          );
        }
        for (const p of params) {
          const s = ck.params.find((x) => x.name === p.name);
          if (s === undefined)
            throw new MmError(ErrorCode.MM_INVALID_ARGUMENT, `the checkpoint lacks ${p.name}`);
          t.setParam(p.name, s.value);
          t.setMoments(p.name, s.m, s.v);
        }
        t.steps = ck.optimizerSteps;
        startStage = ck.stage;
        startStep = ck.step;
        for (const [i, r] of ck.results.entries())
          if (results[i]) Object.assign(results[i] as TrainStageResult, r);
        resumedFrom = stages.slice(0, startStage).reduce((n, s) => n + s.steps, 0) + startStep;
      }
    }

    const saveCheckpoint = async (stage: number, step: number) => {
      if (options.checkpoint === undefined) return;
      const ck: Checkpoint = {
        fingerprint,
        stage,
        step,
        optimizerSteps: t.steps,
        results,
        params: params.map((p) => ({
          name: p.name,
          ne: [...p.ne],
          value: t.getParam(p.name),
          ...t.getMoments(p.name),
        })),
      };
      await writeCheckpoint(options.checkpoint, ck);
      progress({
        phase: 'train',
        stage: stages[Math.min(stage, stages.length - 1)]?.kind,
        stageIndex: stage,
        step,
        checkpoint: options.checkpoint,
      });
    };

    // train
    const t2 = performance.now();
    const total = stages.reduce((n, s) => n + s.steps, 0);
    let doneSteps = resumedFrom ?? 0;
    for (let si = startStage; si < stages.length; si++) {
      const st = stages[si] as ResolvedStage;
      const res = results[si] as TrainStageResult;
      const first = si === startStage ? startStep : 0;
      if (first === 0) {
        // each stage is its own AdamW run: fresh moments, bias correction from step 1
        for (const p of params) {
          const n = p.ne.reduce((a, b) => a * b, 1);
          t.setMoments(p.name, new Float32Array(n), new Float32Array(n));
        }
        t.steps = 0;
      }
      const ts = performance.now();
      const secondsBefore = res.seconds;
      const samplesBefore = res.samples;
      for (let s = first; s < st.steps; s++) {
        if (signal?.aborted) {
          await saveCheckpoint(si, s);
          throw signal.reason;
        }
        const batch = Int32Array.from(
          batchAt(seed, si, st.count, batchSize, s),
          (k) => k + st.first,
        );
        let r: TrainStepResult;
        try {
          r = await t.step(batch, { lr: learningRate(st, s), ...hyper }, { signal });
        } catch (e) {
          if (signal?.aborted) await saveCheckpoint(si, s);
          throw e;
        }
        if (!Number.isFinite(r.loss)) {
          throw new MmError(
            ErrorCode.MM_INTERNAL,
            `the loss became ${r.loss} at stage ${si} step ${s + 1}; try a lower learning rate`,
          );
        }
        res.samples = samplesBefore + (s + 1 - first) * batch.length;
        res.seconds = secondsBefore + (performance.now() - ts) / 1000;
        res.samplesPerSec = res.samples / res.seconds;
        const point = {
          step: s + 1,
          loss: r.loss,
          tokenAccuracy: r.nCorrect / Math.max(1, r.nTargets),
        };
        res.curve.push(point);
        doneSteps++;
        const elapsed = performance.now() - t2;
        const rate = (doneSteps - (resumedFrom ?? 0)) / elapsed;
        progress({
          phase: 'train',
          stage: st.kind,
          stageIndex: si,
          step: s + 1,
          steps: st.steps,
          loss: r.loss,
          tokenAccuracy: point.tokenAccuracy,
          samplesPerSec: res.samplesPerSec,
          etaMs: rate > 0 ? (total - doneSteps) / rate : undefined,
        });
        if ((s + 1) % checkpointEvery === 0 && s + 1 < st.steps) await saveCheckpoint(si, s + 1);
      }
      if (options.saveStages && si + 1 < stages.length) {
        res.out = `${out.replace(/\.gguf$/i, '')}.${st.kind}.gguf`;
        await writeTrainedMmproj({
          mmFile,
          mmproj,
          out: res.out,
          projector,
          params: current(),
          shapes: params,
          llmWidth,
          signal,
        });
      }
      await saveCheckpoint(si + 1, 0);
    }
    const trainSeconds = (performance.now() - t2) / 1000;

    progress({ phase: 'write' });
    await writeTrainedMmproj({
      mmFile,
      mmproj,
      out,
      projector,
      params: current(),
      shapes: params,
      llmWidth,
      signal,
    });
    return {
      out,
      projector,
      stages: results,
      problems,
      pictures: paths.length - bad.size,
      encodeSeconds,
      trainSeconds,
      ...(resumedFrom !== undefined ? { resumedFrom } : {}),
    };
  } finally {
    trainer?.dispose();
    for (const e of encoders) e.dispose();
    backbone?.dispose();
  }
}

async function exportPrepared(
  dir: string,
  o: {
    model: string;
    projector: string;
    nEmbdV: number;
    nRows: number;
    hidden: number;
    llmWidth: number;
    nImages: number;
    batchSize: number;
    seed: number;
    hyper: { beta1: number; beta2: number; eps: number; weightDecay: number };
    stages: ResolvedStage[];
    natives: NativeTrainSample[];
    feats: Float32Array;
    params: Float32Array[];
  },
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const recipe = {
    version: 1,
    model: resolve(o.model),
    projector: o.projector,
    nEmbdV: o.nEmbdV,
    nPatches: o.nRows,
    nHidden: o.hidden,
    nEmbd: o.llmWidth,
    nImages: o.nImages,
    batchSize: o.batchSize,
    weightDecay: o.hyper.weightDecay,
    beta1: o.hyper.beta1,
    beta2: o.hyper.beta2,
    eps: o.hyper.eps,
    seed: o.seed,
    stages: o.stages.map((st) => ({
      kind: st.kind,
      steps: st.steps,
      lr: st.lr,
      warmup: st.warmup,
      schedule: st.schedule,
      samples: o.natives.slice(st.first, st.first + st.count).map((s) => ({
        image: s.image,
        imagePos: s.imagePos,
        tokens: Array.from(s.tokens),
        targets: Array.from(s.targets),
      })),
    })),
  };
  await writeFile(join(dir, 'prepared.json'), JSON.stringify(recipe));
  await writeFile(
    join(dir, 'features.f32'),
    new Uint8Array(o.feats.buffer, o.feats.byteOffset, o.feats.byteLength),
  );
  const n = o.params.reduce((a, p) => a + p.length, 0);
  const all = new Float32Array(n);
  let at = 0;
  for (const p of o.params) {
    all.set(p, at);
    at += p.length;
  }
  await writeFile(join(dir, 'init.f32'), new Uint8Array(all.buffer));
}

function concatF32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
