import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { MmError } from '@mm/errors';
import { benchHelp, runBench } from './commands/bench.js';
import { chatHelp, runChat } from './commands/chat.js';
import { demoHelp, runDemo } from './commands/demo.js';
import { infoHelp, runInfo } from './commands/info.js';
import { inspectHelp, runInspect } from './commands/inspect.js';
import { pullFlags, pullHelp, runPull } from './commands/pull.js';
import { rpcWorkerFlags, rpcWorkerHelp, runRpcWorker } from './commands/rpc-worker.js';
import { type MediaFlag, runHelp, runRun } from './commands/run.js';
import { runServe, serveFlags, serveHelp } from './commands/serve.js';
import {
  runTrainProjector,
  trainProjectorFlags,
  trainProjectorHelp,
} from './commands/train-projector.js';
import { runTts, ttsFlags, ttsHelp } from './commands/tts.js';
import { type CliIo, ExitCode, processIo, UsageError } from './io.js';
import {
  expandFlagAliases,
  hubFlags,
  hubHelp,
  modelFlags,
  resolveHubModel,
  rpcFlags,
  samplingFlags,
} from './model-options.js';

const usage = `mm — multimodal LLMs from Node.js, at native speed

Usage: mm <command> [options]

Commands:
  run                answer one prompt about images and sounds (-m, --mmproj, --image,
                     --audio, -p)
  chat               interactive chat; /image <path> and /audio <path> attach media
  demo               the bundled tiny-shapes model on its sample images
  serve              OpenAI-compatible HTTP server with images and audio, and the web demo
                     at /
  pull <user>/<repo>[:quant]
                     download a GGUF model and its mmproj from the Hugging Face Hub
                     (run, chat and serve take -hf <user>/<repo>[:quant] instead of -m)
  bench              mm vs llama.cpp side by side: encode, prefill, decode, TTFT, RSS;
                     --audio FILE: the audio encoder + projector vs libmtmd
  info               llama.cpp commit, backends, devices, CPU features
  inspect <file>     describe a GGUF model or mmproj file (header only)
  tts                speak a text with a speech-generation model (Qwen3-TTS, Pocket TTS) into
                     a WAV file, as llama-tts (-m talker, --mmproj, -p, -o, --voice)
  train-projector    train an input projector between an mmproj's vision encoder and a
                     llama GGUF on LLaVA-style JSONL data; writes a new mmproj
  rpc-worker         serve this machine's CPU/GPU as a ggml RPC worker (run, chat and serve
                     take --rpc host:port,... to put the model's layers on workers);
                     unauthenticated: loopback by default, never expose it

Options:
  -h, --help         show help (also: mm <command> --help)
  -v, --version      print the version

Exit codes: 0 ok, 1 error (typed, the message names its code), 2 usage, 130 aborted.`;

function version(): string {
  const pkg = JSON.parse(
    readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json'), 'utf8'),
  );
  return String(pkg.version);
}

const help = { type: 'boolean', short: 'h' } as const;

function parse<O extends NonNullable<ParseArgsConfig['options']>, P extends boolean>(
  args: string[],
  options: O,
  allowPositionals: P,
) {
  try {
    return parseArgs({
      args: expandFlagAliases(args, options),
      options,
      allowPositionals,
      strict: true,
      tokens: true,
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

async function dispatch(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    io.out(`${usage}\n`);
    return command === undefined ? ExitCode.usage : ExitCode.ok;
  }
  if (command === '-v' || command === '--version') {
    io.out(`${version()}\n`);
    return ExitCode.ok;
  }
  switch (command) {
    case 'info': {
      const { values } = parse(rest, { help, json: { type: 'boolean' } }, false);
      if (values.help) return showHelp(io, infoHelp);
      return runInfo(io, values.json === true);
    }
    case 'inspect': {
      const { values, positionals } = parse(
        rest,
        { help, json: { type: 'boolean' }, tensors: { type: 'boolean' } },
        true,
      );
      if (values.help) return showHelp(io, inspectHelp);
      if (positionals.length !== 1)
        throw new UsageError(`inspect takes one file\n\n${inspectHelp}`);
      return runInspect(io, positionals[0]!, values.json === true, values.tensors === true);
    }
    case 'run': {
      const { values, positionals, tokens } = parse(
        rest,
        {
          help,
          ...modelFlags,
          ...rpcFlags,
          ...hubFlags,
          ...samplingFlags,
          image: { type: 'string', multiple: true },
          audio: { type: 'string', multiple: true },
          prompt: { type: 'string', short: 'p' },
          system: { type: 'string', short: 's' },
          json: { type: 'boolean' },
          quiet: { type: 'boolean', short: 'q' },
        },
        true,
      );
      if (values.help) return showHelp(io, `${runHelp}\n${hubHelp}`);
      if (positionals.length > 0)
        throw new UsageError(`unexpected argument '${positionals[0]}'\n\n${runHelp}`);
      await resolveHubModel(io, values, values.quiet === true || values.json === true);
      return runRun(io, { ...values, media: mediaFlags(tokens) });
    }
    case 'chat': {
      const { values, tokens } = parse(
        rest,
        {
          help,
          ...modelFlags,
          ...rpcFlags,
          ...hubFlags,
          ...samplingFlags,
          system: { type: 'string', short: 's' },
          image: { type: 'string', multiple: true },
          audio: { type: 'string', multiple: true },
        },
        false,
      );
      if (values.help) return showHelp(io, `${chatHelp}\n${hubHelp}`);
      await resolveHubModel(io, values);
      return runChat(io, { ...values, media: mediaFlags(tokens) });
    }
    case 'bench': {
      const { values } = parse(
        rest,
        {
          help,
          ...modelFlags,
          image: { type: 'string', multiple: true },
          audio: { type: 'string', multiple: true },
          prompt: { type: 'string', short: 'p' },
          reps: { type: 'string', short: 'r' },
          json: { type: 'boolean' },
        },
        false,
      );
      if (values.help) return showHelp(io, benchHelp);
      return runBench(io, values);
    }
    case 'demo': {
      const { values } = parse(
        rest,
        { help, json: { type: 'boolean' }, threads: { type: 'string', short: 't' } },
        false,
      );
      if (values.help) return showHelp(io, demoHelp);
      return runDemo(io, values);
    }
    case 'serve': {
      const { values } = parse(rest, { help, ...serveFlags, ...hubFlags }, false);
      if (values.help) return showHelp(io, `${serveHelp}\n${hubHelp}`);
      await resolveHubModel(io, values);
      return runServe(io, values);
    }
    case 'pull': {
      const { values, positionals } = parse(rest, { help, ...pullFlags }, true);
      if (values.help) return showHelp(io, pullHelp);
      if (positionals.length !== 1)
        throw new UsageError(`pull takes one <user>/<repo>[:quant]\n\n${pullHelp}`);
      return runPull(io, positionals[0]!, values);
    }
    case 'tts': {
      const { values, positionals } = parse(rest, { help, ...ttsFlags }, true);
      if (values.help) return showHelp(io, ttsHelp);
      if (positionals.length > 0)
        throw new UsageError(`unexpected argument '${positionals[0]}'\n\n${ttsHelp}`);
      return runTts(io, values);
    }
    case 'rpc-worker': {
      const { values, positionals } = parse(rest, { help, ...rpcWorkerFlags }, true);
      if (values.help) return showHelp(io, rpcWorkerHelp);
      if (positionals.length > 0)
        throw new UsageError(`unexpected argument '${positionals[0]}'\n\n${rpcWorkerHelp}`);
      return runRpcWorker(io, values);
    }
    case 'train-projector': {
      const { values, positionals } = parse(rest, { help, ...trainProjectorFlags }, true);
      if (values.help) return showHelp(io, trainProjectorHelp);
      if (positionals.length > 0)
        throw new UsageError(`unexpected argument '${positionals[0]}'\n\n${trainProjectorHelp}`);
      return runTrainProjector(io, values);
    }
    default:
      throw new UsageError(`unknown command '${command}'\n\n${usage}`);
  }
}

/** The --image and --audio flags in command-line order (mtmd-cli keeps one list of both). */
function mediaFlags(tokens: ReturnType<typeof parseArgs>['tokens']): MediaFlag[] {
  const out: MediaFlag[] = [];
  for (const t of tokens ?? []) {
    if (t.kind === 'option' && (t.name === 'image' || t.name === 'audio') && t.value) {
      out.push({ kind: t.name, path: t.value });
    }
  }
  return out;
}

function showHelp(io: CliIo, text: string): number {
  io.out(`${text}\n`);
  return ExitCode.ok;
}

/** Runs `mm` with the given arguments; returns the exit code. Never throws. */
export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`mm: ${e.message}\n`);
      return ExitCode.usage;
    }
    if (MmError.isInstance(e)) {
      if (e.code === 'MM_ABORTED') {
        io.err('mm: aborted\n');
        return ExitCode.aborted;
      }
      io.err(`mm: ${e.code}: ${e.message}\n`);
      if (process.env.MM_DEBUG) io.err(`${e.stack}\n`);
      return ExitCode.error;
    }
    io.err(`mm: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return ExitCode.error;
  }
}
