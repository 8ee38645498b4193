import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './paths.js';

const run = promisify(execFile);

/** Folder of the test-only reference tools built from the vendored llama.cpp (`--oracle`). */
export function oracleDir(): string {
  return join(repoRoot(), 'native', 'build', 'bin');
}

/** Path of a test-only reference tool; throws with the command that builds it when missing. */
export function oracleTool(name: string): string {
  const p = join(oracleDir(), name);
  if (!existsSync(p)) {
    throw new Error(
      `${p} is missing: build the reference tools with \`npm run build:oracle -w @mm/native\``,
    );
  }
  return p;
}

export interface RefGenerateResult {
  promptTokens: number[];
  tokens: number[];
  text: string;
  prefillMs: number;
  decodeMs: number;
}

/**
 * llama.cpp's own greedy generation (mm-ref-generate: libllama's tokenizer with BOS and special
 * tokens parsed, one prompt batch, greedy sampler chain, stop at end-of-generation).
 */
export async function refGenerate(options: {
  model: string;
  prompt: string;
  maxTokens: number;
  threads?: number;
  contextSize?: number;
}): Promise<RefGenerateResult> {
  const args = ['-m', options.model, '-p', options.prompt, '-n', String(options.maxTokens)];
  args.push('-t', String(options.threads ?? 2), '-c', String(options.contextSize ?? 256));
  const { stdout } = await run(oracleTool('mm-ref-generate'), args, { maxBuffer: 64 << 20 });
  const r = JSON.parse(stdout);
  return {
    promptTokens: r.prompt_tokens,
    tokens: r.tokens,
    text: r.text,
    prefillMs: r.prefill_ms,
    decodeMs: r.decode_ms,
  };
}

export interface MtmdCliOptions {
  model: string;
  mmproj: string;
  /** Image files (`--image`, each). Default none. */
  images?: readonly string[];
  /** Audio files (`--audio`, each: WAV, MP3 or FLAC, decoded by libmtmd's helper). Default none. */
  audio?: readonly string[];
  prompt: string;
  maxTokens?: number;
  threads?: number;
  contextSize?: number;
}

/**
 * llama.cpp's own multimodal CLI (llama-mtmd-cli, greedy). Its stdout goes through an
 * asynchronous logger that is not flushed at exit, so 2–5% of runs lose the tail (MODEL.md):
 * a complete run ends with a blank line; incomplete runs are retried. Returns the answer as
 * printed (pieces joined), without mtmd-cli's own leading and trailing newlines.
 */
export async function mtmdCli(o: MtmdCliOptions): Promise<string> {
  const args = ['-m', o.model, '--mmproj', o.mmproj];
  // mtmd-cli keeps one media list in flag order and, without markers in the prompt, puts one marker per
  // file before it: images first, then audio.
  for (const img of o.images ?? []) args.push('--image', img);
  for (const aud of o.audio ?? []) args.push('--audio', aud);
  args.push(
    '-p',
    o.prompt,
    '--temp',
    '0',
    '-n',
    String(o.maxTokens ?? 32),
    '-t',
    String(o.threads ?? 2),
  );
  if (o.contextSize) args.push('-c', String(o.contextSize));
  const tool = oracleTool('llama-mtmd-cli');
  let last = { stdout: '', stderr: '' };
  for (let attempt = 0; attempt < 40; attempt++) {
    last = await run(tool, args, { maxBuffer: 16 << 20 });
    if (last.stdout.endsWith('\n\n')) return last.stdout.replace(/^\n/, '').replace(/\n+$/, '');
  }
  throw new Error(
    `llama-mtmd-cli never printed a complete answer for ${JSON.stringify(o.prompt)}: stdout ${JSON.stringify(last.stdout)}, stderr ends ${JSON.stringify(last.stderr.slice(-300))}`,
  );
}
