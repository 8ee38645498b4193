// One measurement process of prebuilt-vs-native.mjs: loads whichever mm.node MM_NATIVE_PATH names,
// then times, after one warm-up each: image encode + projection (CLIP-L/336), a prefill of
// --prompt tokens and --gen decoded tokens on the llama. Prints one JSON line.
import { parseArgs } from 'node:util';
import { Backbone } from '@mm/backbone-gguf';
import { Image, VisionEncoder } from '@mm/encoders';
import { systemInfo } from '@mm/native';
import { Projector } from '@mm/projectors';

const { values } = parseArgs({
  options: {
    mmproj: { type: 'string' },
    model: { type: 'string' },
    image: { type: 'string' },
    threads: { type: 'string', default: '2' },
    prompt: { type: 'string', default: '128' },
    gen: { type: 'string', default: '32' },
    inner: { type: 'string', default: '2' },
  },
});
const threads = Number(values.threads);
const inner = Number(values.inner);
const out = { encodeMs: [], prefillMs: [], decodeMs: [] };

const encoder = await VisionEncoder.load(values.mmproj, { threads });
const projector = await Projector.load(values.mmproj, { threads });
const image = await Image.fromFile(values.image);
for (let i = 0; i <= inner; i++) {
  const t0 = performance.now();
  const f = await encoder.encode(image);
  const e = await projector.project(f);
  const ms = performance.now() - t0;
  f.dispose();
  e.dispose();
  if (i > 0) out.encodeMs.push(ms);
}
encoder.dispose();
projector.dispose();

const backbone = await Backbone.load(values.model);
const words = 'the red circle on the left of a blue square near green shapes at the top '.split(
  ' ',
);
let prompt = '';
for (let i = 0; backbone.tokenize(prompt).length < Number(values.prompt) + 1; i++)
  prompt += `${words[i % words.length]} `;
const gen = Number(values.gen);
const ctx = await backbone.createContext({ contextSize: 512, threads, batchSize: 512 });
for (let i = 0; i <= inner; i++) {
  ctx.clear();
  const g = ctx.generate({ prompt, maxTokens: gen, ignoreEndOfGeneration: true });
  for await (const _ of g) {
  }
  const r = await g.result;
  if (r.tokens.length !== gen)
    throw new Error(`generated ${r.tokens.length} tokens, expected ${gen}`);
  if (i > 0) {
    out.prefillMs.push(r.prefillMs);
    out.decodeMs.push(r.decodeMs);
  }
}
ctx.dispose();
backbone.dispose();
const info = systemInfo();
out.variant = info.cpuBackend.chosen;
out.build = info.cpuBackend.build;
out.addon = info.addon.path;
process.stdout.write(`${JSON.stringify(out)}\n`);
