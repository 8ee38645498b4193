import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  type ChatOptions,
  type MultimodalModelLoadOptions,
  type PullProgress,
  type PullResult,
  pullModel,
} from '@mm/core';
import { ErrorCode, MmError } from '@mm/errors';
import { type CliIo, formatBytes, UsageError } from './io.js';

/** Flags shared by run, chat, bench and serve, named like llama.cpp's where they exist. */
export const modelFlags = {
  model: { type: 'string', short: 'm' },
  mmproj: { type: 'string' },
  threads: { type: 'string', short: 't' },
  'ctx-size': { type: 'string', short: 'c' },
  'n-gpu-layers': { type: 'string', short: 'g' },
  jinja: { type: 'boolean' },
} as const;

/** `--rpc` for run, chat and serve: ggml RPC workers that take the model's layers. */
export const rpcFlags = {
  rpc: { type: 'string' },
  'mmproj-rpc': { type: 'string' },
} as const;

export const rpcHelp = `      --rpc <host:port,...>  ggml RPC workers (mm rpc-worker, or llama.cpp's rpc-server) that
                            take the text model's layers (all of them unless -g says otherwise);
                            the encoder stays here. The protocol is unauthenticated: use workers
                            on loopback or a trusted network only
      --mmproj-rpc <host:port>  a ggml RPC worker whose first device runs the mmproj's encoders
                            and projectors (mm's own graphs; libmtmd's fused ones stay here)`;

/** host:port with a port in 1-65535 (the addon checks the host further). */
function isEndpoint(e: string): boolean {
  const m = /^([^:\s,]+):(\d{1,5})$/.exec(e);
  return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
}

/** The endpoints of --rpc (comma-separated host:port), or undefined. */
export function rpcEndpoints(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const list = v.split(',').map((e) => e.trim());
  for (const e of list) {
    if (!isEndpoint(e)) throw new UsageError(`--rpc takes host:port[,host:port...], got '${e}'`);
  }
  return list;
}

/** The endpoint of --mmproj-rpc (one host:port), or undefined; it needs --mmproj. */
export function mmprojRpcEndpoint(
  v: string | undefined,
  mmproj: string | undefined,
): string | undefined {
  if (v === undefined) return undefined;
  if (!isEndpoint(v)) throw new UsageError(`--mmproj-rpc takes one host:port, got '${v}'`);
  if (!mmproj) throw new UsageError('--mmproj-rpc places the mmproj: give --mmproj too');
  return v;
}

/** `-hf` for run, chat and serve: the model and its mmproj come from the hub (see `mm pull`). */
export const hubFlags = {
  'hf-repo': { type: 'string' },
  offline: { type: 'boolean' },
} as const;

export const hubHelp = `Instead of -m/--mmproj (as llama.cpp's -hf):
  -hf, --hf-repo <user>/<repo>[:quant]
                            download the text model (default quant Q4_K_M, else Q8_0, else the
                            first) and its mmproj from the Hugging Face Hub, or take them from the
                            cache (see mm pull); --mmproj <file> given too skips the mmproj
      --offline             use the cache only, never the network (also MM_OFFLINE=1)`;

/**
 * llama.cpp's multi-letter short flags (`-hf`), which node's parseArgs would read as `-h -f`,
 * rewritten to their long names. A token that is the value of a string option stays as it is.
 */
export function expandFlagAliases(
  args: string[],
  options: Record<string, { type: 'string' | 'boolean'; short?: string }>,
): string[] {
  if (!('hf-repo' in options)) return args;
  const takesValue = (t: string) => {
    if (t.startsWith('--')) return !t.includes('=') && options[t.slice(2)]?.type === 'string';
    return (
      /^-[A-Za-z]$/.test(t) &&
      Object.values(options).some((o) => o.short === t[1] && o.type === 'string')
    );
  };
  const out: string[] = [];
  for (const [i, t] of args.entries()) {
    if (t === '--') return [...out, ...args.slice(i)];
    const prev = out.at(-1);
    const isValue = prev !== undefined && takesValue(prev);
    out.push(!isValue && (t === '-hf' || t === '-hfr') ? '--hf-repo' : t);
  }
  return out;
}

/**
 * Download progress on stderr: on a terminal one bar per file, redrawn in place (bytes, %,
 * rate); elsewhere a line every 10%. Cached files get one line.
 */
export function downloadBar(io: CliIo, enabled: boolean, tty = process.stderr.isTTY === true) {
  let drawn = '';
  let lastTenth = -1;
  let file = '';
  const name = (f: string) => (f.length > 40 ? `…${f.slice(-39)}` : f);
  return (p: PullProgress) => {
    if (!enabled) return;
    if (p.file !== file) {
      file = p.file;
      lastTenth = -1;
    }
    const pct = p.total > 0 ? Math.floor((p.downloaded / p.total) * 100) : 100;
    const rate = `${formatBytes(p.bytesPerSecond)}/s`;
    const bytes = `${formatBytes(p.downloaded)} / ${formatBytes(p.total)}`;
    if (p.phase === 'done') {
      const line = p.cached
        ? `${name(p.file)}: cached (${formatBytes(p.total)})`
        : `${name(p.file)}: ${formatBytes(p.total)}, sha256 ok`;
      io.err(`${tty && drawn ? '\r\x1b[K' : ''}${line}\n`);
      drawn = '';
      return;
    }
    if (tty) {
      const width = 24;
      const done = Math.round((pct / 100) * width);
      const line =
        p.phase === 'verify'
          ? `${name(p.file)} checking sha256…`
          : `${name(p.file)} [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${pct}% ${bytes} ${rate}`;
      if (line !== drawn) io.err(`\r\x1b[K${line}`);
      drawn = line;
    } else if (p.phase === 'download' && Math.floor(pct / 10) > lastTenth) {
      lastTenth = Math.floor(pct / 10);
      io.err(`${name(p.file)} ${pct}% ${bytes} ${rate}\n`);
    }
  };
}

type HubValues = Record<string, string | boolean | string[] | undefined>;

/**
 * With `--hf-repo`, pulls the model (and, unless `--mmproj` names a file, its mmproj) and puts
 * their local paths in `values.model` / `values.mmproj`, so the command runs as with -m/--mmproj.
 * Ctrl-C stops the download (exit 130; the `.part` file is kept for the next try).
 */
export async function resolveHubModel(
  io: CliIo,
  values: HubValues,
  quiet = false,
): Promise<PullResult | undefined> {
  const repo = values['hf-repo'];
  if (typeof repo !== 'string') return undefined;
  if (values.model !== undefined) {
    throw new UsageError('-hf/--hf-repo and -m/--model cannot be used together');
  }
  const interrupt = interruptSignal();
  try {
    const r = await pullModel({
      repo,
      mmproj: values.mmproj === undefined,
      ...(values.offline === true && { offline: true }),
      signal: interrupt.signal,
      onProgress: downloadBar(io, !quiet),
    });
    if (r.networkError && !quiet) {
      io.err(`mm: ${r.networkError.code}: ${r.networkError.message}; using the cached files\n`);
    }
    values.model = r.model;
    if (values.mmproj === undefined && r.mmproj) values.mmproj = r.mmproj;
    return r;
  } finally {
    interrupt.dispose();
  }
}

export const samplingFlags = {
  temp: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
  'n-predict': { type: 'string', short: 'n' },
} as const;

export function int(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

export function float(name: string, v: string | undefined): number | undefined {
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
    throw new UsageError('--mmproj <file.gguf> is required with --image and --audio');
  const gpu = values['n-gpu-layers'] as string | undefined;
  const rpc = rpcEndpoints(values.rpc as string | undefined);
  const mmprojRpc = mmprojRpcEndpoint(values['mmproj-rpc'] as string | undefined, mmproj);
  return {
    model,
    mmproj,
    threads: int('threads', values.threads as string | undefined, 1),
    contextSize: int('ctx-size', values['ctx-size'] as string | undefined, 8),
    gpuLayers: gpu === 'all' ? 'all' : int('n-gpu-layers', gpu, 0),
    ...(values.jinja === true && { jinja: true }),
    ...(rpc && { rpc }),
    ...(mmprojRpc !== undefined && { mmprojRpc }),
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
