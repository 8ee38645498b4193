import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { oracleTool } from './oracle.js';

export interface LlamaServerOptions {
  model: string;
  mmproj?: string;
  /** Server slots (`-np`). Default 1. */
  parallel?: number;
  /** CPU threads (`-t`, and `-tb` for prompt batches). Default 2. */
  threads?: number;
  /**
   * KV positions in all (`-c`): llama-server splits them evenly among the slots (`-np` given, so
   * its KV cache is not unified). Default 256 per slot.
   */
  contextSize?: number;
  /** Port on 127.0.0.1 (default: a free one). */
  port?: number;
  /** More llama-server flags, appended as they are. */
  args?: readonly string[];
  /** How long to wait for `/health` to say ok (ms, default 120 000: it loads the model first). */
  startTimeoutMs?: number;
}

export interface LlamaServer {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly pid: number;
  /** The command line it was started with (for reports). */
  readonly argv: readonly string[];
  /** The last lines it logged (llama-server logs to stderr). */
  log(): string;
  /** SIGTERM, then SIGKILL after 10 s; resolves when it has exited. */
  stop(): Promise<void>;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Stops a child process: SIGTERM, SIGKILL after `graceMs`; resolves once it has exited. */
export function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * llama.cpp's own HTTP server (test-only `llama-server`, built from the vendored tree without its
 * web UI) on 127.0.0.1, started and waited for until `/health` answers 200. The OpenAI-compatible
 * reference for `mm serve`: same files, threads, slots and context, `/v1/chat/completions` with
 * `image_url` data URLs. Throws with its last log lines if it exits or does not come up in time.
 */
export async function startLlamaServer(o: LlamaServerOptions): Promise<LlamaServer> {
  const parallel = o.parallel ?? 1;
  const threads = o.threads ?? 2;
  const port = o.port ?? (await freePort());
  const argv = ['-m', o.model];
  if (o.mmproj !== undefined) argv.push('--mmproj', o.mmproj);
  argv.push('-np', String(parallel), '-t', String(threads), '-tb', String(threads));
  argv.push('-c', String(o.contextSize ?? 256 * parallel));
  argv.push('--host', '127.0.0.1', '--port', String(port), '--no-ui');
  argv.push(...(o.args ?? []));
  const child = spawn(oracleTool('llama-server'), argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const keep = (chunk: Buffer) => {
    tail.push(...chunk.toString('utf8').split('\n'));
    if (tail.length > 200) tail.splice(0, tail.length - 200);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const log = () => tail.join('\n');
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => resolve(`exited (${signal ?? code})`)),
  );
  const deadline = Date.now() + (o.startTimeoutMs ?? 120_000);
  try {
    for (;;) {
      const state = await Promise.race([
        exited,
        fetch(`${url}/health`, { signal: AbortSignal.timeout(5_000) }).then(
          (r) => (r.status === 200 ? 'ok' : 'loading'),
          () => 'loading',
        ),
      ]);
      if (state === 'ok') break;
      if (state !== 'loading') throw new Error(`llama-server ${state} before it was ready`);
      if (Date.now() > deadline) throw new Error('llama-server did not become ready in time');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await stopChild(child);
    throw new Error(
      `${(e as Error).message}: ${oracleTool('llama-server')} ${argv.join(' ')}\n${log()}`,
    );
  }
  return {
    url,
    pid: child.pid ?? 0,
    argv,
    log,
    stop: () => stopChild(child),
  };
}
