import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyShapesPaths } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');

const run = runMain;

describe('mm', () => {
  it('--version prints the version', async () => {
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('unknown commands and flags are usage errors (exit 2)', async () => {
    expect((await run(['frobnicate'])).code).toBe(2);
    const r = await run(['info', '--nope']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--nope');
  });

  it('info --json reports the pinned commit and the CPU backend', async () => {
    const r = await run(['info', '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.out);
    expect(info.llamaCommit).toBe('80fb11ac73e66d89eae2c6a91d8a77428fa733ed');
    expect(info.backends).toContain('CPU');
    expect(info.hardwareThreads).toBeGreaterThan(0);
  });

  it('info names the mm.node loaded and the CPU variant ggml would pick: the best score', async () => {
    const r = await run(['info', '--json']);
    const info = JSON.parse(r.out);
    // In the repository: the local build, the same files the prebuilt package ships (install.test.ts
    // loads them from the package).
    expect(info.addon.source).toBe('local-build');
    expect(info.addon.path).toMatch(/native[/\\]build[/\\]bin[/\\]mm\.node$/);
    const cpu = info.cpuBackend as {
      build: string;
      chosen: string;
      variants: { name: string; score: number }[];
    };
    expect(cpu.build).toBe('all');
    expect(cpu.variants.length).toBeGreaterThan(1);
    const top = Math.max(...cpu.variants.map((v) => v.score));
    expect(cpu.variants.find((v) => v.name === cpu.chosen)?.score).toBe(top);
    // Ties (the same instructions, another -mtune) go to the variant tuned for the CPU's vendor.
    const amd =
      process.platform === 'linux' && /AuthenticAMD/.test(readFileSync('/proc/cpuinfo', 'utf8'));
    if (amd && cpu.variants.some((v) => v.name === 'zen3' && v.score === top)) {
      expect(cpu.chosen).toBe('zen3');
    }
    const text = await run(['info']);
    expect(text.out).toMatch(new RegExp(`cpu backend\\s+${cpu.chosen}: highest score`));
  });

  it('inspect reads the shared tiny-shapes text model', async () => {
    const r = await run(['inspect', tinyShapesPaths().llm]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/architecture\s+llama/);
    expect(r.out).toMatch(/parameters\s+754\.6 K \(754560\)/);
    expect(r.out).toMatch(/vocab\s+448 \(llama\)/);
    expect(r.out).toMatch(/embedding length\s+128/);
  });

  it('inspect reads the shared tiny-shapes mmproj: encoders, projector family, image and patch size', async () => {
    const r = await run(['inspect', tinyShapesPaths().mmproj]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/architecture\s+clip/);
    expect(r.out).toMatch(/encoders\s+vision/);
    expect(r.out).toMatch(/projector\s+mlp/);
    expect(r.out).toMatch(/image size\s+48/);
    expect(r.out).toMatch(/patch size\s+8/);
  });

  it('inspect --json --tensors lists the tensor table', async () => {
    const r = await run(['inspect', '--json', '--tensors', tinyShapesPaths().mmproj]);
    const s = JSON.parse(r.out);
    expect(s.mmproj.projectorType).toBe('mlp');
    expect(s.tensors).toHaveLength(56);
    expect(s.tensors.find((t: { name: string }) => t.name === 'v.patch_embd.weight').shape).toEqual(
      [8, 8, 3, 96],
    );
  });

  it('a missing file and a corrupt file are typed errors (exit 1) with one-line messages', async () => {
    const missing = await run(['inspect', '/nonexistent/x.gguf']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^mm: MM_FILE_NOT_FOUND: /);
    const bad = join(mkdtempSync(join(tmpdir(), 'mm-cli-')), 'bad.gguf');
    writeFileSync(bad, Buffer.from('GGUF\x03\x00\x00\x00garbage'));
    const corrupt = await run(['inspect', bad]);
    expect(corrupt.code).toBe(1);
    expect(corrupt.err).toMatch(/^mm: MM_GGUF_INVALID: /);
    expect(corrupt.err.trim().split('\n')).toHaveLength(1);
  });

  it('runs as a real process through bin/mm.js with the documented exit codes', () => {
    const out = execFileSync(process.execPath, [bin, 'inspect', tinyShapesPaths().mmproj], {
      encoding: 'utf8',
    });
    expect(out).toMatch(/projector\s+mlp/);
    const r = spawnSync(process.execPath, [bin, 'inspect', '/nonexistent.gguf'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('MM_FILE_NOT_FOUND');
  });
});

/** `mm` in a child process with MM_CPU_VARIANT set (the variant is chosen once per process). */
function mmWithVariant(variant: string, args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, MM_CPU_VARIANT: variant },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('MM_CPU_VARIANT: a machine without AVX-512, simulated', () => {
  const info = JSON.parse(
    execFileSync(process.execPath, [bin, 'info', '--json'], { encoding: 'utf8' }),
  );
  const variants = info.cpuBackend.variants as { name: string; score: number }[];
  const haswell = variants.find((v) => v.name === 'haswell');
  const tiny = tinyShapesPaths();

  it.runIf(process.arch === 'x64' && (haswell?.score ?? 0) > 0)(
    'forcing haswell loads the AVX2 kernels (no AVX-512) and still answers right',
    () => {
      const r = mmWithVariant('haswell', ['info', '--json']);
      expect(r.code).toBe(0);
      const forced = JSON.parse(r.out);
      expect(forced.cpuBackend.chosen).toBe('haswell');
      expect(forced.cpuBackend.forced).toBe('haswell');
      expect(forced.cpuFeatures.AVX2).toBe('1');
      expect(forced.cpuFeatures.AVX512 ?? '0').toBe('0');
      const run = mmWithVariant('haswell', [
        'run',
        '-m',
        tiny.llm,
        '--mmproj',
        tiny.mmproj,
        '--image',
        join(tiny.samples, 'sample_000.png'),
        '-p',
        'Describe the image.',
      ]);
      expect(run.code).toBe(0);
      expect(run.out).toBe('a red circle on the left.\n');
      expect(mmWithVariant('haswell', ['info']).out).toContain('(forced by MM_CPU_VARIANT)');
    },
  );

  it('an unknown variant is a typed error that lists the ones shipped', () => {
    const r = mmWithVariant('pentium2', ['info']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('MM_NATIVE_LOAD');
    expect(r.err).toContain("MM_CPU_VARIANT='pentium2'");
    for (const v of variants) expect(r.err).toContain(v.name);
  });

  const unsupported = variants.find((v) => v.score <= 0);
  it.runIf(unsupported !== undefined)(
    'a variant this CPU cannot run is refused, not crashed on',
    () => {
      const r = mmWithVariant(unsupported?.name as string, ['info']);
      expect(r.code).toBe(1);
      expect(r.err).toContain('MM_NATIVE_LOAD');
      expect(r.err).toContain('cannot run on this CPU');
    },
  );
});
