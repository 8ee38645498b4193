import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mtmdCli, syntheticPngFixture } from '@mm/testing';
import { expect } from 'vitest';
import { runMain } from './main.test-util.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');

/**
 * `mm run -m M --mmproj P --image I -p PROMPT --temp 0 -n N -t 2` in this process prints only the
 * answer: the (non-empty) text llama-mtmd-cli prints for the same flags, without the whitespace
 * the first token may start with, and its stderr has the timings line (`stderr`, by default one
 * that names the image and the encode). `binary`: the same through bin/mm.js with -q, whose stdout
 * is the answer and whose stderr is empty (killed after `binary.timeout` ms). `dropNul`:
 * llama-mtmd-cli prints each piece as a C string, so a <0x00> byte token prints nothing; mm's
 * output is compared without those. Returns llama-mtmd-cli's answer.
 */
export async function expectRunLikeMtmdCli(
  files: { llm: string; mmproj: string },
  image: string,
  prompt: string,
  maxTokens: number,
  options: { label: string; stderr?: RegExp; binary?: { timeout: number }; dropNul?: boolean },
): Promise<string> {
  const printable = (s: string) => (options.dropNul ? s.replaceAll('\u0000', '') : s);
  const ref = await mtmdCli({
    model: files.llm,
    mmproj: files.mmproj,
    images: [image],
    prompt,
    maxTokens,
    threads: 2,
  });
  const args = [
    'run',
    '-m',
    files.llm,
    '--mmproj',
    files.mmproj,
    '--image',
    image,
    '-p',
    prompt,
    '--temp',
    '0',
    '-n',
    String(maxTokens),
    '-t',
    '2',
  ];
  const r = await runMain(args);
  console.log(
    `${options.label}: mm ${JSON.stringify(r.out)} llama-mtmd-cli ${JSON.stringify(ref)}`,
  );
  expect(r.code, r.err).toBe(0);
  expect(ref.length).toBeGreaterThan(0);
  expect(printable(r.out)).toBe(`${ref.trimStart()}\n`);
  expect(r.err).toMatch(options.stderr ?? /prompt tokens .* image\), encode .* tok\/s/);
  if (options.binary) {
    const p = spawnSync(process.execPath, [bin, ...args, '-q'], {
      encoding: 'utf8',
      timeout: options.binary.timeout,
    });
    expect([p.status, printable(p.stdout), p.stderr]).toEqual([0, `${ref.trimStart()}\n`, '']);
  }
  return ref;
}

/**
 * expectRunLikeMtmdCli on a synthetic picture of each size (seeds `seed`, `seed` + 1, ...): the
 * first described in 10 tokens, the next ones asked about in `tokenStep` more tokens each; the
 * first also through bin/mm.js -q. Returns llama-mtmd-cli's answers.
 */
export async function expectRunsLikeMtmdCli(
  files: { llm: string; mmproj: string },
  sizes: readonly (readonly [number, number])[],
  options: {
    label: string;
    seed?: number;
    tokenStep?: number;
    stderr?: RegExp;
    binaryTimeout?: number;
  },
): Promise<string[]> {
  const refs: string[] = [];
  for (const [i, [w, h]] of sizes.entries()) {
    const image = await syntheticPngFixture(w, h, (options.seed ?? 20) + i);
    const prompt = i === 0 ? 'Describe the image.' : 'What is in the picture?';
    const ref = await expectRunLikeMtmdCli(
      files,
      image,
      prompt,
      10 + i * (options.tokenStep ?? 6),
      {
        label: `${options.label} ${w}x${h}`,
        stderr: options.stderr,
        binary: i === 0 ? { timeout: options.binaryTimeout ?? 120_000 } : undefined,
      },
    );
    refs.push(ref);
  }
  return refs;
}
