// ggml RPC: the backbone's layers on two `startRpcWorker` processes on loopback give the same
// greedy answers as a local run; a worker killed mid-generation fails that generation with
// MM_RPC_LOST within 5 s while another model in the process keeps answering; no worker at an
// endpoint is MM_RPC_CONNECT. The encoder and projector on a worker (`rpc` / `mmprojRpc`) give
// the local embeddings bit for bit: a worker is a backend whose memory is not this process's, as a
// GPU's is not, so these tests also run, without a GPU, the path mm's own graphs take on CUDA.
// Workers are real child processes on free ports.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Backbone } from '@mm/backbone-gguf';
import { Image, VisionEncoder } from '@mm/encoders';
import { MmError } from '@mm/errors';
import { Projector } from '@mm/projectors';
import { compareVectors, syntheticImage, tinyLongTailPair, tinyQwenVlPair } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answers, ask, tiny } from './helpers.test-util.js';
import { MultimodalModel } from './multimodal-model.js';

const here = dirname(fileURLToPath(import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Worker {
  endpoint: string;
  child: ChildProcess;
}

/** A worker in a child process (as `mm rpc-worker` runs it); resolves once it accepts clients. */
async function startWorker(): Promise<Worker> {
  const port = await freePort();
  const code = `import { startRpcWorker } from '@mm/backbone-gguf';
const w = await startRpcWorker({ port: ${port}, threads: 1 });
process.stdout.write('ready ' + w.endpoint + '\\n');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    cwd: here,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr?.on('data', (d) => {
    err += d;
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (d) => {
      out += d;
      const m = /ready (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (c) => reject(new Error(`worker exited (${c}): ${err}`)));
  });
  return { endpoint, child };
}

function kill(w: Worker): Promise<void> {
  if (w.child.exitCode !== null || w.child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    w.child.once('exit', () => resolve());
    w.child.kill('SIGKILL');
  });
}

const questions = answers(tiny.samples)
  .slice(0, 3)
  .flatMap((item) =>
    item.questions.slice(0, 2).map((q) => ({ image: join(tiny.samples, item.image), q })),
  );

describe('ggml RPC workers (tiny-shapes)', () => {
  const workers: Worker[] = [];
  let local: MultimodalModel;

  beforeAll(async () => {
    workers.push(...(await Promise.all([startWorker(), startWorker()])));
    local = await MultimodalModel.load({ model: tiny.llm, mmproj: tiny.mmproj, threads: 1 });
  }, 30_000);

  afterAll(async () => {
    local?.dispose();
    await Promise.all(workers.map(kill));
  });

  it('greedy answers with the layers on two workers equal the local answers', async () => {
    const remote = await MultimodalModel.load({
      model: tiny.llm,
      mmproj: tiny.mmproj,
      threads: 1,
      rpc: workers.map((w) => w.endpoint),
    });
    try {
      for (const { image, q } of questions) {
        const want = await local.chat(ask(image, q.question), { maxTokens: 16 });
        await local.reset();
        const got = await remote.chat(ask(image, q.question), { maxTokens: 16 });
        await remote.reset();
        expect(got.text).toBe(want.text);
        expect(got.text.trim()).toBe(q.answer);
      }
    } finally {
      remote.dispose();
    }
  }, 30_000);

  it('the encoder and projector on a worker give the local embeddings, graphs reused after others', {
    timeout: 60_000,
  }, async () => {
    // Qwen2.5-VL: a graph per picture size, GET_ROWS of host-built indices (window order), M-RoPE
    // positions and a window mask written at each compute. The sizes come back (A, B, A): the
    // graph of A is split again after B's (ggml's scheduler rewrites a graph's cross-backend
    // sources when it splits it; a graph allocated again must be split from its own inputs).
    const pair = await tinyQwenVlPair({ family: 'qwen2.5vl_merger' });
    const ep = workers[1]!.endpoint;
    // local: on this CPU in any build (the worker serves its CPU)
    using encL = await VisionEncoder.load(pair.mmproj, { threads: 1, gpu: false });
    using prjL = await Projector.load(pair.mmproj, { threads: 1, gpu: false });
    using encR = await VisionEncoder.load(pair.mmproj, { threads: 1, rpc: ep });
    using prjR = await Projector.load(pair.mmproj, { threads: 1, rpc: ep });
    // the graphs do run on the worker's device
    expect(encL.info.backend).toBe('CPU');
    expect(encR.info.backend).toBe(`RPC0[${ep}]`);
    expect(prjR.info.backend).toBe(`RPC0[${ep}]`);
    const sizes = [
      [64, 48],
      [40, 72],
      [64, 48],
      [40, 72],
    ] as const;
    for (const [i, [w, h]] of sizes.entries()) {
      const rgb = syntheticImage(w, h, 30 + (i % 2));
      const img = Image.fromRGB(rgb.data, w, h);
      using fL = (await encL.encodeChunks(img))[0]!;
      using fR = (await encR.encodeChunks(img))[0]!;
      using eL = await prjL.project(fL);
      using eR = await prjR.project(fR);
      const feats = compareVectors(fR.toFloat32Array(), fL.toFloat32Array());
      const embd = compareVectors(eR.toFloat32Array(), eL.toFloat32Array());
      console.log(
        `qwen2.5vl ${w}x${h} on the worker: ${eR.nTokens} tokens, max |diff| features ${feats.maxAbsDiff}, embeddings ${embd.maxAbsDiff}`,
      );
      expect(eR.nTokens).toBe(eL.nTokens);
      expect(feats.maxAbsDiff).toBe(0);
      expect(embd.maxAbsDiff).toBe(0);
    }
  });

  it('mmprojRpc: tiny-shapes answers equal the local ones; bad uses are typed errors', {
    timeout: 60_000,
  }, async () => {
    const remote = await MultimodalModel.load({
      model: tiny.llm,
      mmproj: tiny.mmproj,
      threads: 1,
      rpc: [workers[0]!.endpoint],
      mmprojRpc: workers[1]!.endpoint,
    });
    try {
      for (const { image, q } of questions.slice(0, 3)) {
        const want = await local.chat(ask(image, q.question), { maxTokens: 16 });
        await local.reset();
        const got = await remote.chat(ask(image, q.question), { maxTokens: 16 });
        await remote.reset();
        expect(got.text).toBe(want.text);
      }
    } finally {
      remote.dispose();
    }
    await expect(
      MultimodalModel.load({ model: tiny.llm, threads: 1, mmprojRpc: workers[1]!.endpoint }),
    ).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
    await expect(
      VisionEncoder.load(tiny.mmproj, { threads: 1, rpc: '127.0.0.1' }),
    ).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
    await expect(
      Projector.load(tiny.mmproj, { threads: 1, rpc: `127.0.0.1:${await freePort()}` }),
    ).rejects.toMatchObject({ code: 'MM_RPC_CONNECT' });
    // libmtmd's fused graphs cannot be placed: said before anything loads on the worker
    const fused = await tinyLongTailPair({ family: 'pixtral' });
    await expect(
      MultimodalModel.load({
        model: fused.llm,
        mmproj: fused.mmproj,
        threads: 1,
        mmprojRpc: workers[1]!.endpoint,
      }),
    ).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
  });

  it('a worker killed mid-generation fails it with MM_RPC_LOST within 5 s; another model still answers', async () => {
    const victim = await startWorker();
    workers.push(victim);
    const backbone = await Backbone.load(tiny.llm, {
      rpc: [workers[0]!.endpoint, victim.endpoint],
    });
    const ctx = await backbone.createContext({ contextSize: 2048, threads: 1 });
    try {
      const gen = ctx.generate({ prompt: 'a', maxTokens: 1500, ignoreEndOfGeneration: true });
      let tokens = 0;
      let killedAt = 0;
      const done = (async () => {
        for await (const _ of gen) {
          tokens++;
          if (tokens === 5) {
            killedAt = performance.now();
            victim.child.kill('SIGKILL');
          }
        }
        return gen.result;
      })();
      const e = await done.then(
        () => undefined,
        (err: unknown) => err,
      );
      const ms = performance.now() - killedAt;
      console.log(
        `worker killed after 5 tokens: ${tokens} tokens in all, error after ${ms.toFixed(0)} ms: ${String(e)}`,
      );
      expect(MmError.isInstance(e)).toBe(true);
      expect((e as MmError).code).toBe('MM_RPC_LOST');
      expect(tokens).toBeLessThan(1500);
      expect(ms).toBeLessThan(5000);
      // the model on the lost worker keeps failing typed, never hangs
      await expect(ctx.generate({ prompt: 'b', maxTokens: 4 }).result).rejects.toMatchObject({
        code: 'MM_RPC_LOST',
      });
      // the process and its other models keep answering
      const { image, q } = questions[0]!;
      const again = await local.chat(ask(image, q.question), { maxTokens: 16 });
      expect(again.text.trim()).toBe(q.answer);
    } finally {
      // disposing what ran on the lost worker neither aborts nor hangs
      ctx.dispose();
      backbone.dispose();
    }
  }, 30_000);

  it('a worker busy with another process is MM_RPC_CONNECT after the 5 s handshake timeout, not a hang', async () => {
    const holder = await Backbone.load(tiny.llm, { rpc: [workers[0]!.endpoint] });
    try {
      const code = `import { Backbone } from '@mm/backbone-gguf';
const t0 = performance.now();
try { await Backbone.load(${JSON.stringify(tiny.llm)}, { rpc: [${JSON.stringify(workers[0]!.endpoint)}] }); console.log('loaded'); }
catch (e) { console.log(e.code + ' ' + Math.round(performance.now() - t0)); }`;
      const out = await new Promise<string>((resolve) => {
        let text = '';
        const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
          cwd: here,
          stdio: ['ignore', 'pipe', 'ignore'],
        });
        child.stdout?.on('data', (d) => {
          text += d;
        });
        child.once('exit', () => resolve(text.trim()));
      });
      const [got, ms] = out.split(' ');
      expect(got).toBe('MM_RPC_CONNECT');
      expect(Number(ms)).toBeLessThan(8000);
    } finally {
      holder.dispose();
    }
  }, 20_000);

  it('no worker at the endpoint is MM_RPC_CONNECT, fast', async () => {
    const port = await freePort();
    const t0 = performance.now();
    await expect(Backbone.load(tiny.llm, { rpc: [`127.0.0.1:${port}`] })).rejects.toMatchObject({
      code: 'MM_RPC_CONNECT',
    });
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('malformed endpoints are MM_INVALID_ARGUMENT before anything connects', async () => {
    for (const bad of ['127.0.0.1', ':80', 'h:0', 'h:99999', '::1:80', 'a b:1']) {
      await expect(Backbone.load(tiny.llm, { rpc: [bad] })).rejects.toMatchObject({
        code: 'MM_INVALID_ARGUMENT',
      });
    }
    await expect(
      Backbone.load(tiny.llm, { rpc: [workers[0]!.endpoint, workers[0]!.endpoint] }),
    ).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
  });
});
