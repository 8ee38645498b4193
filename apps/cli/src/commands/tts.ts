import { closeSync, openSync, writeSync } from 'node:fs';
import { type SpeakOptions, SpeechModel } from '@mm/core';
import { toWav } from '@mm/decoders';
import { ErrorCode, MmError } from '@mm/errors';
import { type CliIo, ExitCode, UsageError } from '../io.js';
import { float, int, interruptSignal } from '../model-options.js';

export const ttsHelp = `mm tts -m <talker.gguf> --mmproj <mmproj.gguf> -p <text> [-o out.wav] [options]

Speaks a text with a speech-generation model (Qwen3-TTS, Pocket TTS: a talker GGUF and its gen
mmproj, as llama.cpp's llama-tts runs them): the talker's hidden states go through the output
projector to codes or latents, and the audio decoder turns those into 24 kHz PCM, streamed to the
file as it is made. Flags follow llama-tts:
  -m, --model <file>        the talker (llama.cpp arch qwen3tts or pockettts)
      --mmproj <file>       the speech-generation mmproj
  -p, --prompt <text>       the text to speak
  -o, --output <file>       where to write (default out.wav; '-' writes to stdout)
      --format <f>          wav (16-bit, as llama-tts writes; default) or pcm (raw f32 little-endian)
      --voice <file>        a voice reference recording (wav, mp3, flac; also --tts-speaker-file).
                            Pocket TTS makes almost no sound without one
      --lang <l>            Qwen3-TTS language: en, zh, de, it, pt, es, ja, ko, fr, ru or its name
                            (default english; also --tts-lang)
  -n, --n-predict <n>       most frames (default 512)
      --temp <t>  --top-k <k>  --top-p <p>  --min-p <p>
                            the talker's sampling (default 0.8 / 40 / 0.95 / 0.05, as llama-tts);
                            Qwen3-TTS's code predictor samples with the same top-k and top-p
  -s, --seed <n>            seed of the talker and of the output projector (default: random)
  -t, --threads <n>         CPU threads
  -c, --ctx-size <n>        the talker's context size
      --json                print { frames, seconds, realTimeFactor, ... } as JSON on stdout
  -q, --quiet               no progress on stderr

Progress (frames, audio seconds, real-time factor) goes to stderr. Ctrl-C stops the speech and
keeps what was written (exit 130).`;

export const ttsFlags = {
  model: { type: 'string', short: 'm' },
  mmproj: { type: 'string' },
  prompt: { type: 'string', short: 'p' },
  output: { type: 'string', short: 'o' },
  format: { type: 'string' },
  voice: { type: 'string' },
  'tts-speaker-file': { type: 'string' },
  lang: { type: 'string' },
  'tts-lang': { type: 'string' },
  'n-predict': { type: 'string', short: 'n' },
  temp: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  seed: { type: 'string', short: 's' },
  threads: { type: 'string', short: 't' },
  'ctx-size': { type: 'string', short: 'c' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

/** The progress line: frames, seconds of audio, real-time factor. */
export function ttsProgressLine(frames: number, audioSeconds: number, elapsedMs: number): string {
  const rtf = elapsedMs > 0 ? audioSeconds / (elapsedMs / 1000) : 0;
  return `[mm tts] ${frames} frames, ${audioSeconds.toFixed(2)} s of audio in ${(elapsedMs / 1000).toFixed(2)} s (${rtf.toFixed(2)}x real time)`;
}

/** 16-bit samples of a chunk, as llama-tts's WAV holds them. */
function pcm16(pcm: Float32Array): Buffer {
  // toWav's samples without its header: clamped, × 32767, truncated (llama-tts's write_wav16)
  return toWav(pcm, 1).subarray(44);
}

export async function runTts(io: CliIo, values: Record<string, unknown>): Promise<number> {
  const v = values as Record<string, string | undefined>;
  if (!v.model) throw new UsageError(`-m/--model is required\n\n${ttsHelp}`);
  if (!v.mmproj) throw new UsageError(`--mmproj is required\n\n${ttsHelp}`);
  if (v.prompt === undefined) throw new UsageError(`-p/--prompt is required\n\n${ttsHelp}`);
  const format = v.format ?? 'wav';
  if (format !== 'wav' && format !== 'pcm') {
    throw new UsageError(`--format must be wav or pcm, got '${format}'`);
  }
  const out = v.output ?? 'out.wav';
  const json = values.json === true;
  const quiet = values.quiet === true || json;
  const voice = v.voice ?? v['tts-speaker-file'];
  const language = v.lang ?? v['tts-lang'];
  const seed = int('seed', v.seed, 0);
  if (seed !== undefined && seed > 0xffffffff) throw new UsageError('--seed must be < 2^32');
  const options: SpeakOptions = {
    voice,
    language,
    maxFrames: int('n-predict', v['n-predict'], 1),
    sampling: {
      ...(v.temp !== undefined && { temperature: float('temp', v.temp) }),
      ...(v['top-k'] !== undefined && { topK: int('top-k', v['top-k'], 0) }),
      ...(v['top-p'] !== undefined && { topP: float('top-p', v['top-p']) }),
      ...(v['min-p'] !== undefined && { minP: float('min-p', v['min-p']) }),
      ...(seed !== undefined && { seed }),
    },
  };
  const interrupt = interruptSignal();
  let model: SpeechModel | undefined;
  const t0 = performance.now();
  let lastLine = 0;
  const tty = process.stderr.isTTY === true;
  try {
    model = await SpeechModel.load({
      model: v.model,
      mmproj: v.mmproj,
      threads: int('threads', v.threads, 1),
      contextSize: int('ctx-size', v['ctx-size'], 8),
      signal: interrupt.signal,
    });
    const rate = model.sampleRate;
    // The file is written as chunks come: a WAV header with open sizes first (0xFFFFFFFF, as
    // streamed WAVs say), patched with the real sizes at the end when the output is a file.
    const fd = out === '-' ? 1 : openSync(out, 'w');
    const header = Buffer.from(toWav(new Float32Array(0), rate).subarray(0, 44));
    if (format === 'wav') {
      header.writeUInt32LE(0xffffffff, 4);
      header.writeUInt32LE(0xffffffff, 40);
      writeSync(fd, header);
    }
    let bytes = 0;
    let samples = 0;
    let frames = 0;
    let firstMs = -1;
    const tGen = performance.now();
    let aborted = false;
    try {
      for await (const c of model.speak(v.prompt, { ...options, signal: interrupt.signal })) {
        if (firstMs < 0) firstMs = c.elapsedMs;
        const data =
          format === 'wav'
            ? pcm16(c.pcm)
            : Buffer.from(c.pcm.buffer, c.pcm.byteOffset, c.pcm.byteLength);
        writeSync(fd, data);
        bytes += data.length;
        samples += c.pcm.length;
        frames = c.totalFrames;
        const now = performance.now();
        if (!quiet && (now - lastLine > 250 || !tty)) {
          lastLine = now;
          io.err(
            `${tty ? '\r' : ''}${ttsProgressLine(frames, samples / rate, now - tGen)}${tty ? '' : '\n'}`,
          );
        }
      }
    } catch (e) {
      if (!(MmError.isInstance(e) && e.code === ErrorCode.MM_ABORTED)) {
        if (fd !== 1) closeSync(fd);
        throw e;
      }
      aborted = true;
    }
    if (fd !== 1) {
      if (format === 'wav') {
        header.writeUInt32LE(36 + bytes, 4);
        header.writeUInt32LE(bytes, 40);
        writeSync(fd, header, 0, 44, 0);
      }
      closeSync(fd);
    }
    const totalMs = performance.now() - t0;
    const genMs = performance.now() - tGen;
    const seconds = samples / rate;
    const result = {
      output: out,
      format,
      pipeline: model.pipeline,
      sampleRate: rate,
      frames,
      samples,
      seconds,
      firstChunkMs: firstMs,
      generateMs: genMs,
      totalMs,
      realTimeFactor: genMs > 0 ? seconds / (genMs / 1000) : 0,
      aborted,
    };
    if (json) io.out(`${JSON.stringify(result, null, 2)}\n`);
    else if (!quiet) {
      io.err(
        `${tty ? '\r' : ''}${ttsProgressLine(frames, seconds, genMs)}\n[mm tts] first audio after ${firstMs.toFixed(0)} ms; wrote ${out === '-' ? 'stdout' : out} (${model.pipeline}, ${rate} Hz${aborted ? ', interrupted' : ''})\n`,
      );
    }
    return aborted ? ExitCode.aborted : ExitCode.ok;
  } finally {
    interrupt.dispose();
    model?.dispose();
  }
}
