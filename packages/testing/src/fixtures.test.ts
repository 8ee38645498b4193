import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGguf } from '@mm/gguf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FIXTURE_GENERATOR_VERSION,
  fixturePath,
  fixturesDir,
  tinyLlamaFixture,
  tinyLlamaFixtureName,
} from './fixtures.js';
import { repoRoot, tinyShapesDir, tinyShapesPaths } from './paths.js';

describe('fixture cache', () => {
  const base = mkdtempSync(join(tmpdir(), 'mm-fixture-cache-'));
  const saved = process.env['MM_FIXTURES_DIR'];
  beforeAll(() => {
    process.env['MM_FIXTURES_DIR'] = base;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env['MM_FIXTURES_DIR'];
    else process.env['MM_FIXTURES_DIR'] = saved;
    rmSync(base, { recursive: true, force: true });
  });

  it('generates once and reuses the file', async () => {
    expect(fixturesDir()).toBe(join(base, `v${FIXTURE_GENERATOR_VERSION}`));
    let calls = 0;
    const gen = async (p: string) => {
      calls++;
      const { writeFile } = await import('node:fs/promises');
      await writeFile(p, 'x');
    };
    const [a, b] = await Promise.all([fixturePath('one.bin', gen), fixturePath('one.bin', gen)]);
    const c = await fixturePath('one.bin', gen);
    expect(a).toBe(b);
    expect(c).toBe(a);
    expect(calls).toBe(1);
    expect(readFileSync(a, 'utf8')).toBe('x');
    await expect(fixturePath('../evil', gen)).rejects.toThrow(/plain file name/);
  });

  it('does not keep a half-written file when the generator fails', async () => {
    await expect(
      fixturePath('bad.bin', async () => Promise.reject(new Error('boom'))),
    ).rejects.toThrow('boom');
    expect(existsSync(join(fixturesDir(), 'bad.bin'))).toBe(false);
  });

  it('caches tiny llama models by their options', async () => {
    const p = await tinyLlamaFixture({ seed: 9 });
    expect(p).toBe(join(fixturesDir(), tinyLlamaFixtureName({ seed: 9 })));
    const mtime = statSync(p).mtimeMs;
    expect(await tinyLlamaFixture({ seed: 9 })).toBe(p);
    expect(statSync(p).mtimeMs).toBe(mtime);
    expect(tinyLlamaFixtureName({ seed: 9 })).not.toBe(
      tinyLlamaFixtureName({ seed: 9, nHeadKv: 2 }),
    );
    expect((await readGguf(p)).tensors.length).toBe(21);
  });
});

describe('paths', () => {
  it('finds the repository root and the bundled tiny-shapes model inside it', () => {
    const root = repoRoot();
    expect(existsSync(join(root, 'turbo.json'))).toBe(true);
    const dir = join(root, 'apps', 'demo', 'models', 'tiny-shapes');
    expect(tinyShapesDir()).toBe(dir);
    const p = tinyShapesPaths();
    expect(p).toEqual({
      dir,
      llm: join(dir, 'tiny-shapes-llm.gguf'),
      mmproj: join(dir, 'mmproj-tiny-shapes.gguf'),
      samples: join(dir, 'samples'),
      testset: join(dir, 'testset'),
      referenceTokens: join(dir, 'reference_tokens.json'),
    });
    // everything the tests read is in the repository: nothing outside it is needed
    for (const f of [p.llm, p.mmproj, p.referenceTokens]) expect(existsSync(f), f).toBe(true);
    const samples = JSON.parse(readFileSync(join(p.samples, 'answers.json'), 'utf8')).items;
    const testset = JSON.parse(readFileSync(join(p.testset, 'answers.json'), 'utf8')).items;
    expect([samples.length, testset.length]).toEqual([8, 200]);
    for (const [folder, items] of [
      [p.samples, samples],
      [p.testset, testset],
    ] as const) {
      for (const item of items as { image: string }[]) {
        expect(existsSync(join(folder, item.image)), item.image).toBe(true);
      }
    }
  });

  it('reports a missing root as MM_FILE_NOT_FOUND', () => {
    expect(() => repoRoot('/')).toThrow(/turbo.json/);
  });
});
