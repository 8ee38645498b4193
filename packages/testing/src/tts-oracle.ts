import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { oracleTool } from './oracle.js';

const run = promisify(execFile);

export interface LlamaTtsOptions {
  model: string;
  mmproj: string;
  prompt: string;
  /** --tts-speaker-file */
  voice?: string;
  /** --tts-lang */
  language?: string;
  seed: number;
  /** -n: most frames. */
  maxFrames: number;
  /** Sampling flags as llama-tts takes them (default: llama.cpp's). */
  temperature?: number;
  topK?: number;
  topP?: number;
  threads?: number;
}

export interface LlamaTtsResult {
  /** The WAV file llama-tts wrote. */
  wav: Buffer;
  /** Its samples (16-bit). */
  pcm16: Int16Array;
  sampleRate: number;
  /** Wall time of the whole process. */
  wallMs: number;
  stderr: string;
}

/**
 * llama.cpp's own text-to-speech tool (`llama-tts`, built test-only with --oracle): the whole
 * seeded run (talker + libmtmd's gen pipeline), its WAV returned.
 */
export async function llamaTts(o: LlamaTtsOptions): Promise<LlamaTtsResult> {
  const dir = mkdtempSync(join(tmpdir(), 'mm-llama-tts-'));
  try {
    const out = join(dir, 'out.wav');
    const args = ['-m', o.model, '--mmproj', o.mmproj, '-p', o.prompt, '-o', out];
    args.push('-s', String(o.seed), '-n', String(o.maxFrames), '-t', String(o.threads ?? 2));
    if (o.voice) args.push('--tts-speaker-file', o.voice);
    if (o.language) args.push('--tts-lang', o.language);
    if (o.temperature !== undefined) args.push('--temp', String(o.temperature));
    if (o.topK !== undefined) args.push('--top-k', String(o.topK));
    if (o.topP !== undefined) args.push('--top-p', String(o.topP));
    const t0 = performance.now();
    const { stderr } = await run(oracleTool('llama-tts'), args, { maxBuffer: 64 << 20 });
    const wallMs = performance.now() - t0;
    const wav = readFileSync(out);
    const sampleRate = wav.readUInt32LE(24);
    const n = wav.readUInt32LE(40) / 2;
    const pcm16 = new Int16Array(n);
    for (let i = 0; i < n; i++) pcm16[i] = wav.readInt16LE(44 + 2 * i);
    return { wav, pcm16, sampleRate, wallMs, stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
