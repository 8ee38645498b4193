import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cachedPath, defaultCacheDir, isSafeRepoPath, repoDir } from './cache.js';
import { defaultEndpoint, resolveEndpoint } from './http.js';
import { isValidRepoId, parseRepoRef } from './repo-ref.js';
import {
  findMmproj,
  findModel,
  ggufSplitInfo,
  type HubFile,
  isModelFile,
  selectFiles,
  tagBits,
} from './select.js';

const files = (...paths: string[]): HubFile[] => paths.map((path) => ({ path, size: 1 }));
const pick = (list: HubFile[], tag: string) => findModel(list, tag)?.path;

describe('parseRepoRef', () => {
  it('splits <user>/<repo>[:quant]; quant overrides the inline tag', () => {
    expect(parseRepoRef('ggml-org/gemma-3-4b-it-GGUF')).toEqual({
      repo: 'ggml-org/gemma-3-4b-it-GGUF',
      tag: '',
    });
    expect(parseRepoRef('a/b:Q4_K_M')).toEqual({ repo: 'a/b', tag: 'Q4_K_M' });
    expect(parseRepoRef('a/b:Q4_K_M', 'f16')).toEqual({ repo: 'a/b', tag: 'f16' });
    expect(parseRepoRef('unsloth/x.y-GGUF:UD-Q4_K_XL').tag).toBe('UD-Q4_K_XL');
  });

  it('rejects ids that are not one user and one repo, or would leave the cache folder', () => {
    for (const bad of ['a', 'a/b/c', '../b', 'a/..', 'a/.b', '/a/b', 'a//b', 'a/b-', 'a b/c', '']) {
      expect(isValidRepoId(bad), bad).toBe(false);
      expect(() => parseRepoRef(bad), bad).toThrow(
        expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
      );
    }
    expect(() => parseRepoRef('a/b:')).toThrow(/empty quant/);
    expect(() => parseRepoRef('a/b:Q4:x')).toThrow(/not a quant tag/);
    expect(isValidRepoId('user_1/Model.v2-GGUF')).toBe(true);
  });
});

describe('GGUF names', () => {
  it('reads prefix, quant tag and split parts like llama.cpp', () => {
    expect(ggufSplitInfo('Model-Q4_K_M.gguf')).toEqual({
      prefix: 'Model-Q4_K_M',
      tag: 'Q4_K_M',
      index: 1,
      count: 1,
    });
    expect(ggufSplitInfo('d/m.q8_0-00002-of-00003.gguf')).toEqual({
      prefix: 'd/m.q8_0',
      tag: 'Q8_0',
      index: 2,
      count: 3,
    });
    expect(ggufSplitInfo('README.md')).toBeUndefined();
    expect([
      tagBits('Q4_K_M'),
      tagBits('F16'),
      tagBits('BF16'),
      tagBits('IQ2_XXS'),
      tagBits(''),
    ]).toEqual([4, 16, 16, 2, 0]);
    expect(isModelFile('mmproj-x-f16.gguf')).toBe(false);
    expect(isModelFile('x/imatrix.gguf')).toBe(false);
    expect(isModelFile('mmproj/model-Q4_0.gguf')).toBe(true); // only the file name counts
  });
});

describe('findModel', () => {
  const repo = files(
    'README.md',
    'mmproj-m-Q4_K_M.gguf',
    'm-F16.gguf',
    'm-Q8_0.gguf',
    'm-Q4_K_M.gguf',
    'm-Q4_K_S.gguf',
  );

  it('defaults to Q4_K_M, then Q8_0, then the first model GGUF', () => {
    expect(pick(repo, '')).toBe('m-Q4_K_M.gguf');
    expect(pick(files('m-F16.gguf', 'm-Q8_0.gguf'), '')).toBe('m-Q8_0.gguf');
    expect(pick(files('mmproj-F16.gguf', 'm-F16.gguf', 'm-BF16.gguf'), '')).toBe('m-F16.gguf');
  });

  it('matches the tag case-insensitively, followed by . or -, never an mmproj', () => {
    expect(pick(repo, 'q8_0')).toBe('m-Q8_0.gguf');
    expect(pick(repo, 'Q4_K')).toBeUndefined(); // "Q4_K" is followed by "_", not "." or "-"
    expect(pick(repo, 'Q2_K')).toBeUndefined(); // no fallback when a tag was asked for
  });

  it('takes the first part of a split model only', () => {
    const split = files('m-Q4_K_M-00002-of-00002.gguf', 'm-Q4_K_M-00001-of-00002.gguf');
    expect(pick(split, '')).toBe('m-Q4_K_M-00001-of-00002.gguf');
  });
});

describe('findMmproj', () => {
  it('prefers the quant closest to the model', () => {
    const list = files('mmproj-F16.gguf', 'mmproj-Q8_0.gguf', 'mmproj-BF16.gguf');
    expect(findMmproj(list, 'm-Q4_K_M.gguf')?.path).toBe('mmproj-Q8_0.gguf');
    expect(findMmproj(list, 'm-F16.gguf')?.path).toBe('mmproj-F16.gguf');
    expect(findMmproj(files('m-F16.gguf'), 'm-F16.gguf')).toBeUndefined();
  });

  it("looks in the model's folder and the folders above it, the deepest first", () => {
    const list = files('mmproj-F16.gguf', 'q4/mmproj-F16.gguf', 'q8/mmproj-Q8_0.gguf');
    expect(findMmproj(list, 'q4/m-Q4_0.gguf')?.path).toBe('q4/mmproj-F16.gguf');
    expect(findMmproj(list, 'other/m-Q4_0.gguf')?.path).toBe('mmproj-F16.gguf');
    expect(findMmproj(list, 'm-Q8_0.gguf')?.path).toBe('mmproj-F16.gguf');
  });
});

describe('selectFiles', () => {
  it('returns every part of a split model in order, and its mmproj', () => {
    const list = files(
      'm-Q4_K_M-00002-of-00003.gguf',
      'm-Q4_K_M-00003-of-00003.gguf',
      'm-Q4_K_M-00001-of-00003.gguf',
      'mmproj-m-f16.gguf',
    );
    const s = selectFiles('a/b', list, '', { mmproj: true });
    expect(s.model.map((f) => f.path)).toEqual([
      'm-Q4_K_M-00001-of-00003.gguf',
      'm-Q4_K_M-00002-of-00003.gguf',
      'm-Q4_K_M-00003-of-00003.gguf',
    ]);
    expect(s.mmproj?.path).toBe('mmproj-m-f16.gguf');
    expect(selectFiles('a/b', list, '', { mmproj: false }).mmproj).toBeUndefined();
  });

  it('names the repository, the quant and the GGUF files it has when nothing fits', () => {
    const list = files('m-F16.gguf', 'mmproj-f16.gguf', 'README.md');
    expect(() => selectFiles('a/b', list, 'Q2_K', { mmproj: true })).toThrow(
      expect.objectContaining({
        code: 'MM_HUB_NOT_FOUND',
        message: "a/b: no model GGUF for quant 'Q2_K'; its GGUF files: m-F16.gguf, mmproj-f16.gguf",
      }),
    );
    expect(() =>
      selectFiles('a/b', files('m-Q4_0-00001-of-00002.gguf'), '', { mmproj: true }),
    ).toThrow(/split in 2 parts but 1 are listed/);
  });
});

describe('endpoint and cache folder', () => {
  it('endpoint: explicit, MM_HF_ENDPOINT, MODEL_ENDPOINT, HF_ENDPOINT, then the hub', () => {
    expect(resolveEndpoint(undefined, {})).toBe(defaultEndpoint);
    expect(resolveEndpoint(undefined, { HF_ENDPOINT: 'http://h/' })).toBe('http://h');
    expect(
      resolveEndpoint(undefined, { HF_ENDPOINT: 'http://h', MM_HF_ENDPOINT: 'http://m//' }),
    ).toBe('http://m');
    expect(resolveEndpoint('http://x', { MM_HF_ENDPOINT: 'http://m' })).toBe('http://x');
    expect(() => resolveEndpoint('ftp://x', {})).toThrow(/not an http\(s\) URL/);
  });

  it('cache: MM_CACHE_DIR, $XDG_CACHE_HOME/mm, ~/.cache/mm; files under hub/<user>/<repo>', () => {
    expect(defaultCacheDir({ MM_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' })).toBe('/c');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(join('/x', 'mm'));
    expect(defaultCacheDir({})).toMatch(/\.cache[/\\]mm$/);
    const dir = repoDir('/c', 'u/r');
    expect(dir).toBe(join('/c', 'hub', 'u', 'r'));
    expect(cachedPath(dir, 'q4/m.gguf')).toBe(join(dir, 'q4', 'm.gguf'));
    for (const bad of ['../x.gguf', 'a/../../x.gguf', '/etc/x.gguf', 'a\\b.gguf', 'a//b.gguf']) {
      expect(isSafeRepoPath(bad), bad).toBe(false);
      expect(() => cachedPath(dir, bad), bad).toThrow(/unsafe file path/);
    }
  });
});
