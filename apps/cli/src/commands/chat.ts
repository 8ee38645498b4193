import { createInterface, type Interface } from 'node:readline/promises';
import { type ContentPart, type Message, MultimodalModel } from '@mm/core';
import { MmError } from '@mm/errors';
import { type CliIo, ExitCode } from '../io.js';
import { chatOptions, interruptSignal, loadOptions, progressBar } from '../model-options.js';
import { type MediaFlag, mediaParts } from './run.js';

export const chatHelp = `mm chat -m <model.gguf> [--mmproj <mmproj.gguf>] [--image <file>]... [--audio <file>]... [options]

Interactive chat; the history is kept (and its KV cache reused) across turns.
  /image <path>   attach an image to your next message
  /audio <path>   attach a sound (WAV, MP3 or FLAC) to your next message
  /clear          forget the conversation
  /exit           quit (also Ctrl-D)
Ctrl-C stops an answer; at the prompt it quits. Takes the model and sampling flags of mm run;
--image and --audio (repeatable) attach their files to the first message, in order.

From a pipe or a file (stdin not a terminal) there is no prompt: every line is read and
answered in order, one answer per line on stdout (an empty line for a failed turn, its error
on stderr), until the input ends. Exit code 0 if every turn was answered, 1 if any failed,
130 on Ctrl-C:
  printf '/image a.png\\nWhat color is the shape?\\n' | mm chat -m M --mmproj P
  printf '/audio a.wav\\nWhat do you hear?\\n' | mm chat -m M --mmproj P`;

/** The lines typed at the `> ` prompt; ends on Ctrl-D or Ctrl-C (the interface closes). */
async function* prompted(rl: Interface): AsyncGenerator<string> {
  // Node 20 leaves a pending question unsettled when close() comes from a 'SIGINT' listener
  // (the process would end with top-level await unsettled, exit 13): abort it on 'close'.
  const closed = new AbortController();
  rl.once('close', () => closed.abort());
  for (;;) {
    let line: string;
    try {
      line = await rl.question('> ', { signal: closed.signal });
    } catch {
      return; // closed (Ctrl-D / Ctrl-C)
    }
    yield line;
  }
}

export async function runChat(io: CliIo, values: Record<string, unknown>): Promise<number> {
  const v = values as Record<string, string | undefined>;
  const media = (values.media as MediaFlag[] | undefined) ?? [];
  const load = loadOptions(v, media.length > 0);
  const opts = chatOptions(v);
  // A terminal gets the prompt and Ctrl-C per answer; anything else is a script: every line
  // is answered (readline's iterator buffers the lines that arrive while one is answered).
  const interactive = process.stdin.isTTY === true;
  const interrupt = interruptSignal();
  const bar = progressBar(io, process.stderr.isTTY === true);
  let model: MultimodalModel | undefined;
  let rl: Interface | undefined;
  let failed = 0;
  let turns = 0;
  try {
    model = await MultimodalModel.load({
      ...load,
      onProgress: bar.onProgress,
      signal: interrupt.signal,
    });
    bar.end();
    // At a terminal readline reads Ctrl-C as a key (raw mode) and emits 'SIGINT' on itself.
    if (interactive) interrupt.dispose();
    const input = createInterface({
      input: process.stdin,
      output: process.stdout,
      terminal: interactive,
    });
    rl = input;
    const lines = interactive ? prompted(input) : input[Symbol.asyncIterator]();
    const history: Message[] = v.system ? [{ role: 'system', content: v.system }] : [];
    let pending: ContentPart[] = mediaParts(media);
    let answering: AbortController | undefined;
    input.on('SIGINT', () => {
      if (answering) answering.abort(new Error('stopped'));
      else input.close();
    });
    // A script stops reading on Ctrl-C; the answer under way is aborted by the same signal.
    interrupt.signal.addEventListener('abort', () => input.close(), { once: true });
    io.err(
      `mm chat: ${load.model}${load.mmproj ? ` + ${load.mmproj}` : ''}. /image <path>, /audio <path>, /clear, /exit\n`,
    );
    for await (const raw of lines) {
      const line = raw.trim();
      if (line === '/exit' || line === '/quit') break;
      if (line === '/clear') {
        history.splice(v.system ? 1 : 0);
        pending = [];
        await model.reset();
        io.err('(cleared)\n');
        continue;
      }
      if (line.startsWith('/image ')) {
        const path = line.slice(7).trim();
        pending.push({ type: 'image', image: path });
        io.err(`(image ${path} attached to your next message)\n`);
        continue;
      }
      if (line.startsWith('/audio ')) {
        const path = line.slice(7).trim();
        pending.push({ type: 'audio', audio: path });
        io.err(`(audio ${path} attached to your next message)\n`);
        continue;
      }
      if (line === '') continue;
      const user: Message = { role: 'user', content: [...pending, { type: 'text', text: line }] };
      turns++;
      answering = interactive ? new AbortController() : undefined;
      const signal = answering?.signal ?? interrupt.signal;
      const stream = model.stream([...history, user], { ...opts, signal });
      let started = false;
      try {
        for await (let d of stream) {
          if (!started) {
            d = d.trimStart();
            if (d === '') continue;
            started = true;
          }
          io.out(d);
        }
        const { text } = await stream.result;
        io.out('\n');
        history.push(user, { role: 'assistant', content: text.trim() });
        pending = [];
      } catch (e) {
        io.out('\n');
        if (signal.aborted) {
          io.err('(stopped)\n');
          if (!interactive) break;
        } else if (MmError.isInstance(e)) {
          io.err(`mm: ${e.code}: ${e.message}\n`);
          pending = [];
          failed++;
        } else {
          throw e;
        }
      } finally {
        answering = undefined;
      }
    }
  } finally {
    bar.end();
    interrupt.dispose();
    rl?.close();
    model?.dispose();
  }
  if (interactive) return ExitCode.ok;
  if (interrupt.signal.aborted) return ExitCode.aborted;
  if (failed > 0) {
    io.err(`mm chat: ${failed} of ${turns} turns failed\n`);
    return ExitCode.error;
  }
  return ExitCode.ok;
}
