import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import {
  DEFAULT_LIMITS,
  DEFAULT_SPEECH_LIMITS,
  type ServerLimits,
  type SpeechServeOptions,
  startServer,
} from '@mm/server';
import { type CliIo, ExitCode, UsageError } from '../io.js';
import { mmprojRpcEndpoint, rpcEndpoints } from '../model-options.js';

/** `mm serve`'s V8 heap growing factor, in percent (V8's `--heap-growing-percent`). */
export const SERVE_HEAP_GROWING_PERCENT = 300;

export const serveHelp = `mm serve — OpenAI-compatible HTTP server (chat completions with images and audio) and the web demo

Usage: mm serve -m <model.gguf> --mmproj <mmproj.gguf> [options]

Options:
  -m, --model <file>        text-model GGUF (required)
      --mmproj <file>       mmproj GGUF (vision and/or audio encoder + projector)
      --host <addr>         address to bind (default 127.0.0.1: this machine only)
      --port <n>            port (default 8080; 0 picks a free one)
      --parallel <n>        requests answered at the same time (default 1)
      --api-key <key>       require "Authorization: Bearer <key>" on /v1/*
  -t, --threads <n>         CPU threads in all, shared by the slots (default: all)
  -c, --ctx-size <n>        KV cache positions per slot (default: the model's, at most 4096)
      --rpc <host:port,...>  ggml RPC workers (mm rpc-worker) that take the text model's layers;
                            the encoder stays here. Unauthenticated protocol: loopback or a
                            trusted network only. A lost worker fails that model's requests
                            (MM_RPC_LOST); the server keeps running
      --mmproj-rpc <host:port>  a ggml RPC worker whose first device runs the mmproj's encoders
                            and projectors (mm's own graphs; libmtmd's fused ones stay here)
      --max-queue <n>       requests waiting for a slot before 429 (default ${DEFAULT_LIMITS.maxQueue})
      --timeout <s>         per-request time limit, seconds (default ${DEFAULT_LIMITS.requestTimeoutMs / 1000})
      --max-images <n>      images per request (default ${DEFAULT_LIMITS.maxImages})
      --max-audio <n>       input_audio parts per request (default ${DEFAULT_LIMITS.maxAudio}; each at most
                            ${DEFAULT_LIMITS.maxAudioBytes / 1024 / 1024} MiB and ${DEFAULT_LIMITS.maxAudioSeconds} s)
      --body-limit <MiB>    largest request body (default ${DEFAULT_LIMITS.bodyLimit / 1024 / 1024})
      --allow-remote-images fetch http(s) image URLs (off by default)
      --no-demo             do not serve the web demo at /

Text to speech (POST /v1/audio/speech, beside the chat model):
      --tts-model <file>    talker GGUF (llama.cpp arch qwen3tts or pockettts)
      --tts-mmproj <file>   its speech-generation mmproj (needed with --tts-model)
      --tts-voice <name=file>
                            a named voice: a reference recording (wav/mp3/flac) encoded at start;
                            repeat for more. The first (or --tts-default-voice) is what requests
                            without a voice, 'default' and OpenAI's names (alloy, nova...) get;
                            with none, those get the model's own voice
      --tts-default-voice <name>
      --tts-max-chars <n>   characters of input per request (default ${DEFAULT_SPEECH_LIMITS.maxInputChars})
      --tts-max-frames <n>  frames per request, 12.5 a second of speech (default ${DEFAULT_SPEECH_LIMITS.maxFrames})

Endpoints: POST /v1/chat/completions, POST /v1/audio/speech (with --tts-model), GET /v1/models,
GET /health, GET / (demo).

Environment: MM_COMPUTE_NICE (compute threads' nice: a number, or idle for SCHED_IDLE on Linux;
default idle where the kernel shares the CPU between process groups, as with autogroup or a
cpu cgroup, else 5),
MM_SERVE_HEAP_GROWING_PERCENT (V8's heap growing factor for this process, default
${SERVE_HEAP_GROWING_PERCENT}; 0: V8's own heuristic).`;

export const serveFlags = {
  model: { type: 'string', short: 'm' },
  mmproj: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  parallel: { type: 'string' },
  'api-key': { type: 'string' },
  threads: { type: 'string', short: 't' },
  'ctx-size': { type: 'string', short: 'c' },
  rpc: { type: 'string' },
  'mmproj-rpc': { type: 'string' },
  'max-queue': { type: 'string' },
  timeout: { type: 'string' },
  'max-images': { type: 'string' },
  'max-audio': { type: 'string' },
  'body-limit': { type: 'string' },
  'allow-remote-images': { type: 'boolean' },
  'no-demo': { type: 'boolean' },
  'tts-model': { type: 'string' },
  'tts-mmproj': { type: 'string' },
  'tts-voice': { type: 'string', multiple: true },
  'tts-default-voice': { type: 'string' },
  'tts-max-chars': { type: 'string' },
  'tts-max-frames': { type: 'string' },
} as const;

type Values = { [K in keyof typeof serveFlags]?: string | boolean | string[] };

function int(values: Values, name: keyof Values, min: number): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

/** The speech model's options from the --tts-* flags, or undefined without --tts-model. */
function speechOptions(values: Values): SpeechServeOptions | undefined {
  const model = values['tts-model'];
  const mmproj = values['tts-mmproj'];
  if (model === undefined) {
    for (const f of ['tts-mmproj', 'tts-voice', 'tts-default-voice'] as const) {
      if (values[f] !== undefined) throw new UsageError(`--${f} needs --tts-model`);
    }
    return undefined;
  }
  if (typeof model !== 'string' || model === '') throw new UsageError('--tts-model needs a file');
  if (typeof mmproj !== 'string' || mmproj === '')
    throw new UsageError('--tts-model needs --tts-mmproj <file>');
  const voices: Record<string, string> = {};
  const given = values['tts-voice'];
  for (const v of Array.isArray(given) ? given : []) {
    const eq = v.indexOf('=');
    const name = v.slice(0, eq);
    if (eq < 1 || eq === v.length - 1 || !/^[A-Za-z0-9_.-]{1,64}$/.test(name))
      throw new UsageError(
        `--tts-voice takes <name>=<file> (name: 1-64 of A-Z a-z 0-9 _ . -), got '${v}'`,
      );
    if (Object.hasOwn(voices, name)) throw new UsageError(`--tts-voice ${name} is given twice`);
    voices[name] = v.slice(eq + 1);
  }
  const def = values['tts-default-voice'];
  if (typeof def === 'string' && !Object.hasOwn(voices, def))
    throw new UsageError(`--tts-default-voice ${def} is not one of the --tts-voice names`);
  const limits: SpeechServeOptions['limits'] = {};
  const maxChars = int(values, 'tts-max-chars', 1);
  if (maxChars !== undefined) limits.maxInputChars = maxChars;
  const maxFrames = int(values, 'tts-max-frames', 1);
  if (maxFrames !== undefined) limits.maxFrames = maxFrames;
  return {
    model,
    mmproj,
    voices,
    ...(typeof def === 'string' && { defaultVoice: def }),
    limits,
  };
}

/**
 * The `--heap-growing-percent` that `mm serve` sets for its process: `MM_SERVE_HEAP_GROWING_PERCENT`
 * (0: V8's own heuristic), else SERVE_HEAP_GROWING_PERCENT; undefined when node was started with
 * its own (`--heap-growing-percent` in its arguments or NODE_OPTIONS) or the variable is not a
 * whole number from 0 to 1000.
 *
 * Why: an idle-looking server (a few requests a minute, each holding a picture's buffers for its
 * whole answer) makes V8 pick its smallest growing factor, 1.1, so the old generation's limit
 * sits 8-9 MB above a 10 MB heap, and V8 counts ArrayBuffers (request bodies, decoded pictures,
 * pixels: about 1.5 MB a request at 336×336) toward it. A full collection then came every few
 * requests, each pausing the event loop 3-18 ms on a loaded 2-core machine. At 300 % the limit
 * is about four times the live heap.
 */
export function serveHeapGrowingPercent(
  env: NodeJS.ProcessEnv = process.env,
  execArgv: readonly string[] = process.execArgv,
): number | undefined {
  const own = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (own.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) return undefined;
  const v = env.MM_SERVE_HEAP_GROWING_PERCENT;
  if (v === undefined || v === '') return SERVE_HEAP_GROWING_PERCENT;
  if (!/^\d+$/.test(v) || Number(v) > 1000) return undefined;
  return Number(v);
}

/** Reads a small file, or undefined when it cannot be read. */
export type ReadSmallFile = (path: string) => string | undefined;

const readProcFile: ReadSmallFile = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * The cgroup whose share of the CPU this process's threads draw on: the cgroup v1 cpu
 * controller's path, or under cgroup v2 the nearest of its cgroup and their parents with the cpu
 * controller (a `cpu.weight` file); '/' for the root group.
 */
function cpuCgroup(procSelfCgroup: string, exists: (path: string) => boolean): string {
  const lines = procSelfCgroup.split('\n').map((l) => l.split(':'));
  const v1 = lines.find(
    ([id, controllers]) => id !== '0' && controllers?.split(',').includes('cpu'),
  );
  if (v1) return v1[2] || '/';
  const v2 = lines.find(([id, controllers]) => id === '0' && controllers === '')?.[2];
  for (let p = v2 ?? '/'; p !== '/' && p !== ''; p = dirname(p)) {
    if (exists(`/sys/fs/cgroup${p}/cpu.weight`)) return p;
  }
  return '/';
}

/**
 * Whether the Linux kernel shares CPU time between this process's group and the rest, so that
 * the priority of mm's own threads is weighed only inside its group: the process is in a cgroup
 * with the cpu controller (a container, a systemd service, a desktop app's scope: the group is
 * that cgroup), or in the root group with autogroup on (each session is a group:
 * /proc/sys/kernel/sched_autogroup_enabled; autogroup applies in the root group only).
 */
export function groupScheduled(
  read: ReadSmallFile = readProcFile,
  exists: (path: string) => boolean = existsSync,
): boolean {
  if (cpuCgroup(read('/proc/self/cgroup') ?? '', exists) !== '/') return true;
  return read('/proc/sys/kernel/sched_autogroup_enabled')?.trim() === '1';
}

/**
 * The `MM_COMPUTE_NICE` that `mm serve` sets for its process: `idle` (compute threads under
 * SCHED_IDLE) on Linux where the kernel schedules process groups fairly (`groupScheduled`);
 * undefined (the addon's nice 5) elsewhere, or when the variable is set already.
 *
 * Why: with every core computing (`--threads` = all), the JS thread that takes requests and
 * streams tokens waits for a core behind the compute threads. At nice 5 those waits were 6-9 ms
 * each on a 2-core machine, and a collection or a request's intake stretched by them went past
 * 10 ms. Under SCHED_IDLE any other thread that wakes takes the core at once. The risk of
 * SCHED_IDLE is starving inference when other busy processes compete for the cores; with
 * autogroup or a cpu cgroup, processes of other groups (another session's build, another
 * service) compete with mm's group as a whole, whatever its threads' priority: measured on a 2-core VM,
 * two compute threads got 50 % of the machine against two busy threads of another session at
 * nice 0, 5, 19 and under SCHED_IDLE alike. Only busy processes of mm's own group (the same
 * terminal session, the same container) take the cores first.
 */
export function serveComputeNice(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  grouped: () => boolean = groupScheduled,
): 'idle' | undefined {
  if (env.MM_COMPUTE_NICE !== undefined && env.MM_COMPUTE_NICE !== '') return undefined;
  return platform === 'linux' && grouped() ? 'idle' : undefined;
}

/** Runs the server until SIGINT or SIGTERM. */
export async function runServe(io: CliIo, values: Values): Promise<number> {
  const model = values.model;
  if (typeof model !== 'string' || model === '') throw new UsageError('-m/--model is required');
  const parallel = int(values, 'parallel', 1) ?? 1;
  if (parallel > 64) throw new UsageError('--parallel must be at most 64');
  const speech = speechOptions(values);

  const limits: Partial<ServerLimits> = {};
  const timeout = int(values, 'timeout', 1);
  if (timeout !== undefined) limits.requestTimeoutMs = timeout * 1000;
  const maxQueue = int(values, 'max-queue', 0);
  if (maxQueue !== undefined) limits.maxQueue = maxQueue;
  const maxImages = int(values, 'max-images', 0);
  if (maxImages !== undefined) limits.maxImages = maxImages;
  const maxAudio = int(values, 'max-audio', 0);
  if (maxAudio !== undefined) limits.maxAudio = maxAudio;
  const bodyLimit = int(values, 'body-limit', 1);
  if (bodyLimit !== undefined) limits.bodyLimit = bodyLimit * 1024 * 1024;
  if (values['allow-remote-images'] === true) limits.allowRemoteImages = true;

  // the process is mm serve's own: size V8's heap growth for a server (see the function)
  const growing = serveHeapGrowingPercent();
  if (growing !== undefined && growing > 0) setFlagsFromString(`--heap-growing-percent=${growing}`);
  // and the compute threads' priority (see the function; the addon reads it when a thread first
  // computes, so it is set before anything loads)
  const nice = serveComputeNice();
  if (nice !== undefined) process.env.MM_COMPUTE_NICE = nice;

  const server = await startServer({
    model,
    mmproj: typeof values.mmproj === 'string' ? values.mmproj : undefined,
    host: typeof values.host === 'string' ? values.host : undefined,
    port: int(values, 'port', 0) ?? 8080,
    parallel,
    apiKey: typeof values['api-key'] === 'string' ? values['api-key'] : undefined,
    threads: int(values, 'threads', 1),
    contextSize: int(values, 'ctx-size', 8),
    ...(typeof values.rpc === 'string' && { rpc: rpcEndpoints(values.rpc) }),
    ...(typeof values['mmproj-rpc'] === 'string' && {
      mmprojRpc: mmprojRpcEndpoint(
        values['mmproj-rpc'],
        typeof values.mmproj === 'string' ? values.mmproj : undefined,
      ),
    }),
    limits,
    ...(values['no-demo'] === true && { staticDir: false }),
    ...(speech && { speech }),
  });
  const voices = server.speech?.voices.names ?? [];
  io.err(
    `mm serve: ${server.modelId} on ${server.url} (${parallel} slot${parallel === 1 ? '' : 's'})\n` +
      (server.speech
        ? `  speech: ${server.speech.modelId} (${server.speech.model.pipeline}, ${server.speech.sampleRate} Hz; voices: ${voices.join(', ') || "the model's own"}) at ${server.url}/v1/audio/speech\n`
        : '') +
      `  demo: ${server.url}/   API: ${server.url}/v1   health: ${server.url}/health\n` +
      (nice === 'idle'
        ? '  compute threads: SCHED_IDLE (the kernel shares the CPU between process groups; MM_COMPUTE_NICE=5 for nice 5)\n'
        : ''),
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    process.once('disconnect', resolve);
  });
  io.err('mm serve: stopping\n');
  await server.close();
  return ExitCode.ok;
}
