import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ChatOptions, MultimodalModelLoadOptions } from '@mm/core';
import { ErrorCode, MmError } from '@mm/errors';
import { type CliIo, UsageError } from './io.js';

/** Flags shared by run, chat, bench and serve, named like llama.cpp's where they exist. */
export const modelFlags = {
  model: { type: 'string', short: 'm' },
  mmproj: { type: 'string' },
  threads: { type: 'string', short: 't' },
  'ctx-size': { type: 'string', short: 'c' },
  'n-gpu-layers': { type: 'string', short: 'g' },
} as const;

export const samplingFlags = {
  temp: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
  'n-predict': { type: 'string', short: 'n' },
} as const;

function int(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

function float(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`);
  return n;
}

type Values = Record<string, string | boolean | string[] | undefined>;

export function loadOptions(values: Values, requireMmproj: boolean): MultimodalModelLoadOptions {
  const model = values.model as string | undefined;
  if (!model) throw new UsageError('-m/--model <file.gguf> is required');
  const mmproj = values.mmproj as string | undefined;
  if (requireMmproj && !mmproj)
    throw new UsageError('--mmproj <file.gguf> is required with --image');
  const gpu = values['n-gpu-layers'] as string | undefined;
  return {
    model,
    mmproj,
    threads: int('threads', values.threads as string | undefined, 1),
    contextSize: int('ctx-size', values['ctx-size'] as string | undefined, 8),
    gpuLayers: gpu === 'all' ? 'all' : int('n-gpu-layers', gpu, 0),
  };
}

export function chatOptions(values: Values): ChatOptions {
  return {
    temperature: float('temp', values.temp as string | undefined) ?? 0,
    topK: int('top-k', values['top-k'] as string | undefined, 0),
    topP: float('top-p', values['top-p'] as string | undefined),
    seed: int('seed', values.seed as string | undefined, 0),
    maxTokens: int('n-predict', values['n-predict'] as string | undefined, 1),
  };
}

/** A progress bar on stderr while loading (only when stderr is a terminal). */
export function progressBar(io: CliIo, enabled: boolean) {
  let lastLine = '';
  return {
    onProgress: (e: { component: string; progress: number }) => {
      if (!enabled) return;
      const width = 30;
      const done = Math.round(e.progress * width);
      const line = `loading ${e.component.padEnd(6)} [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${Math.round(e.progress * 100)}%`;
      if (line !== lastLine) io.err(`\r${line}`);
      lastLine = line;
    },
    end: () => {
      if (enabled && lastLine) io.err('\n');
    },
  };
}

/** Ctrl-C aborts the running call (exit code 130); a second Ctrl-C exits at once. */
export function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const c = new AbortController();
  const onInt = () => {
    if (c.signal.aborted) process.exit(130);
    c.abort(new MmError(ErrorCode.MM_ABORTED, 'interrupted'));
  };
  process.on('SIGINT', onInt);
  return { signal: c.signal, dispose: () => process.off('SIGINT', onInt) };
}

/** The tiny-shapes model bundled with the demo (apps/demo/models/tiny-shapes). */
export function bundledModel(): { dir: string; model: string; mmproj: string; samples: string } {
  // The @mm/demo package: a workspace in the repository, a dependency when installed from npm.
  const demo = dirname(createRequire(import.meta.url).resolve('@mm/demo/package.json'));
  const dir = join(demo, 'models', 'tiny-shapes');
  const out = {
    dir,
    model: join(dir, 'tiny-shapes-llm.gguf'),
    mmproj: join(dir, 'mmproj-tiny-shapes.gguf'),
    samples: join(dir, 'samples'),
  };
  if (!existsSync(out.model)) throw new UsageError(`the bundled demo model is missing at ${dir}`);
  return out;
}
