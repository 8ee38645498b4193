import { createInterface } from 'node:readline/promises';
import { type ContentPart, type Message, MultimodalModel } from '@mm/core';
import { MmError } from '@mm/errors';
import { type CliIo, ExitCode } from '../io.js';
import { chatOptions, loadOptions, progressBar } from '../model-options.js';

export const chatHelp = `mm chat -m <model.gguf> [--mmproj <mmproj.gguf>] [options]

Interactive chat; the history is kept (and its KV cache reused) across turns.
  /image <path>   attach an image to your next message
  /clear          forget the conversation
  /exit           quit (also Ctrl-D)
Ctrl-C stops an answer; at the prompt it quits. Takes the model and sampling flags of mm run.`;

export async function runChat(io: CliIo, values: Record<string, unknown>): Promise<number> {
  const v = values as Record<string, string | undefined>;
  const load = loadOptions(v, false);
  const opts = chatOptions(v);
  const bar = progressBar(io, process.stderr.isTTY === true);
  const model = await MultimodalModel.load({ ...load, onProgress: bar.onProgress });
  bar.end();
  const rl = createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: process.stdin.isTTY === true,
  });
  const history: Message[] = v.system ? [{ role: 'system', content: v.system }] : [];
  let pending: ContentPart[] = [];
  let answering: AbortController | undefined;
  rl.on('SIGINT', () => {
    if (answering) answering.abort(new Error('stopped'));
    else rl.close();
  });
  io.err(
    `mm chat: ${load.model}${load.mmproj ? ` + ${load.mmproj}` : ''}. /image <path>, /clear, /exit\n`,
  );
  try {
    for (;;) {
      let line: string;
      try {
        line = (await rl.question('> ')).trim();
      } catch {
        break; // closed (Ctrl-D / Ctrl-C)
      }
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
      if (line === '') continue;
      const user: Message = { role: 'user', content: [...pending, { type: 'text', text: line }] };
      answering = new AbortController();
      const stream = model.stream([...history, user], { ...opts, signal: answering.signal });
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
        if (answering.signal.aborted) {
          io.err('(stopped)\n');
        } else if (MmError.isInstance(e)) {
          io.err(`mm: ${e.code}: ${e.message}\n`);
          pending = [];
        } else {
          throw e;
        }
      } finally {
        answering = undefined;
      }
    }
  } finally {
    rl.close();
    model.dispose();
  }
  return ExitCode.ok;
}
