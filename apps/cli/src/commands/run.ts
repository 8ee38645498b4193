import { type ContentPart, MultimodalModel } from '@mm/core';
import { type CliIo, ExitCode, UsageError } from '../io.js';
import {
  chatOptions,
  interruptSignal,
  loadOptions,
  progressBar,
  rpcHelp,
} from '../model-options.js';

export const runHelp = `mm run -m <model.gguf> [--mmproj <mmproj.gguf>] [--image <file>]... [--audio <file>]... -p <prompt> [options]

Answers one prompt about zero or more images and sounds and prints only the answer on stdout
(timings go to stderr). Flags follow llama-mtmd-cli:
  -m, --model <file>        text model GGUF
      --mmproj <file>       vision and/or audio encoder + projector GGUF (needed with --image
                            or --audio)
      --image <file>        an image (repeatable)
      --audio <file>        a sound: WAV, MP3 or FLAC (repeatable); images and sounds come before
                            the prompt in the order given, as in mtmd-cli
  -p, --prompt <text>       the question
  -s, --system <text>       a system message
  -n, --n-predict <n>       most tokens to generate
      --temp <t>            temperature (default 0: greedy)
      --top-k <k>  --top-p <p>  --seed <s>
  -t, --threads <n>         CPU threads
  -c, --ctx-size <n>        context size
  -g, --n-gpu-layers <n|all>
${rpcHelp}
      --jinja               render the chat template with llama.cpp's Jinja engine
                            (default: as llama-mtmd-cli, without it)
      --json                print { text, stats } as JSON instead
  -q, --quiet               no timings on stderr`;

/** One --image or --audio flag, in command-line order. */
export interface MediaFlag {
  kind: 'image' | 'audio';
  path: string;
}

/** The content parts of --image / --audio flags, in their order. */
export function mediaParts(media: readonly MediaFlag[]): ContentPart[] {
  return media.map((m) =>
    m.kind === 'image' ? { type: 'image', image: m.path } : { type: 'audio', audio: m.path },
  );
}

export async function runRun(io: CliIo, values: Record<string, unknown>): Promise<number> {
  const media = (values.media as MediaFlag[] | undefined) ?? [
    ...((values.image as string[] | undefined) ?? []).map((path) => ({
      kind: 'image' as const,
      path,
    })),
    ...((values.audio as string[] | undefined) ?? []).map((path) => ({
      kind: 'audio' as const,
      path,
    })),
  ];
  const prompt = values.prompt as string | undefined;
  if (prompt === undefined) throw new UsageError(`-p/--prompt is required\n\n${runHelp}`);
  const json = values.json === true;
  const quiet = values.quiet === true || json;
  const v = values as Record<string, string | undefined>;
  const load = loadOptions(v, media.length > 0);
  const opts = chatOptions(v);
  const interrupt = interruptSignal();
  const bar = progressBar(io, !quiet && process.stderr.isTTY === true);
  let model: MultimodalModel | undefined;
  try {
    model = await MultimodalModel.load({
      ...load,
      onProgress: bar.onProgress,
      signal: interrupt.signal,
    });
    bar.end();
    const content: ContentPart[] = [...mediaParts(media), { type: 'text', text: prompt }];
    const messages = [
      ...(v.system ? [{ role: 'system', content: v.system }] : []),
      { role: 'user', content },
    ];
    const stream = model.stream(messages, { ...opts, signal: interrupt.signal });
    let started = false;
    for await (let delta of stream) {
      if (json) continue;
      if (!started) {
        delta = delta.trimStart();
        if (delta === '') continue;
        started = true;
      }
      io.out(delta);
    }
    const { text, stats } = await stream.result;
    if (json) {
      io.out(`${JSON.stringify({ text: text.trim(), stats }, null, 2)}\n`);
    } else {
      io.out('\n');
      if (!quiet) {
        io.err(
          `[mm] ${stats.promptTokens} prompt tokens (${stats.cachedTokens} cached, ${stats.imageTokens} ${media.some((m) => m.kind === 'audio') ? 'media' : 'image'}), ` +
            `encode${stats.mediaPath === 'libmtmd (fused)' ? ' (libmtmd, fused)' : stats.mediaPath === 'mixed' ? ' (own graphs + libmtmd)' : ''} ${stats.encodeMs.toFixed(1)} ms, prefill ${stats.prefillMs.toFixed(1)} ms, ` +
            `first token ${stats.timeToFirstTokenMs.toFixed(1)} ms, ${stats.generatedTokens} tokens at ` +
            `${stats.tokensPerSecond.toFixed(1)} tok/s (${stats.stopReason})\n`,
        );
      }
    }
    return ExitCode.ok;
  } finally {
    bar.end();
    interrupt.dispose();
    model?.dispose();
  }
}
