import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, MmError } from '@mm/errors';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { manifestName, type RepoManifest } from './cache.js';
import { COMMIT, type FakeFile, FakeHub, fixtureBytes, sha256 } from './fake-hub.test-util.js';
import { type PullModelOptions, type PullProgress, pullModel } from './pull.js';

const REPO = 'mm-test/tiny-GGUF';
const SPLIT = 'mm-test/split-GGUF';

const tiny: Record<string, FakeFile> = {
  q4: { path: 'tiny-Q4_K_M.gguf', bytes: fixtureBytes('q4', 300_000) },
  q8: { path: 'tiny-Q8_0.gguf', bytes: fixtureBytes('q8', 120_000) },
  f16: { path: 'tiny-F16.gguf', bytes: fixtureBytes('f16', 90_000) },
  mmF16: { path: 'mmproj-tiny-F16.gguf', bytes: fixtureBytes('mmF16', 50_000) },
  mmQ8: { path: 'mmproj-tiny-Q8_0.gguf', bytes: fixtureBytes('mmQ8', 40_000) },
  readme: { path: 'README.md', bytes: Buffer.from('# tiny\n'), lfs: false },
};
const split: FakeFile[] = [
  { path: 'm/big-Q4_0-00002-of-00002.gguf', bytes: fixtureBytes('s2', 30_000) },
  { path: 'm/big-Q4_0-00001-of-00002.gguf', bytes: fixtureBytes('s1', 70_000) },
  // Kept in git rather than LFS: verified by its git blob id.
  { path: 'mmproj-big-f16.gguf', bytes: fixtureBytes('smm', 5_000), lfs: false },
];

let hub: FakeHub;
let cacheDir: string;
const cacheDirs: string[] = [];

beforeAll(async () => {
  hub = await FakeHub.start({ [REPO]: Object.values(tiny), [SPLIT]: split });
});
afterAll(() => hub.close());
afterEach(() => {
  hub.requests.length = 0;
  hub.bytesSent.clear();
  hub.pageSize = 0;
  hub.clearFaults();
  for (const d of cacheDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function freshCache(): string {
  cacheDir = mkdtempSync(join(tmpdir(), 'mm-hub-'));
  cacheDirs.push(cacheDir);
  return cacheDir;
}

const local = (repo: string, path: string) =>
  join(cacheDir, 'hub', ...repo.split('/'), ...path.split('/'));

/** pullModel against the fake hub with a fresh cache, fast retries, and no environment leaks. */
function pull(options: Partial<PullModelOptions> = {}) {
  return pullModel({
    repo: REPO,
    endpoint: hub.url,
    cacheDir,
    token: 'hf_test',
    offline: false,
    retryDelayMs: 1,
    ...options,
  });
}

async function rejection(p: Promise<unknown>): Promise<MmError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!MmError.isInstance(e)) throw new Error(`expected an MmError, got ${String(e)}`);
  return e;
}

describe('pullModel', () => {
  it('resolves the default quant and the closest mmproj as llama.cpp does, verified, into hub/<user>/<repo>', async () => {
    freshCache();
    const progress: PullProgress[] = [];
    const r = await pull({ onProgress: (p) => progress.push(p) });

    expect(r.model).toBe(local(REPO, 'tiny-Q4_K_M.gguf'));
    expect(r.modelParts).toEqual([r.model]);
    expect(r.mmproj).toBe(local(REPO, 'mmproj-tiny-Q8_0.gguf'));
    expect(r.commit).toBe(COMMIT);
    expect(r.fromCache).toBe(false);
    expect(readFileSync(r.model).equals(tiny.q4!.bytes)).toBe(true);
    expect(sha256(readFileSync(r.mmproj!))).toBe(sha256(tiny.mmQ8!.bytes));
    expect(r.files.map((f) => [f.path, f.size, f.downloaded])).toEqual([
      ['tiny-Q4_K_M.gguf', 300_000, true],
      ['mmproj-tiny-Q8_0.gguf', 40_000, true],
    ]);
    expect(existsSync(`${r.model}.part`)).toBe(false);

    // The requests llama.cpp's -hf makes: refs, the recursive tree at that commit, resolve.
    expect(hub.requests.map((q) => q.path)).toEqual([
      `/api/models/${REPO}/refs`,
      `/api/models/${REPO}/tree/${COMMIT}?recursive=true`,
      `/${REPO}/resolve/${COMMIT}/tiny-Q4_K_M.gguf`,
      `/${REPO}/resolve/${COMMIT}/mmproj-tiny-Q8_0.gguf`,
    ]);
    for (const q of hub.requests) {
      expect(q.authorization).toBe('Bearer hf_test');
      expect(q.userAgent).toMatch(/^mm\/\d+\.\d+\.\d+ \(llama-cpp compatible\)$/);
      expect(q.range).toBeUndefined();
    }

    // The manifest records the listing's GGUF files with hashes and what the tag resolved to.
    const m = JSON.parse(
      readFileSync(join(cacheDir, 'hub', 'mm-test', 'tiny-GGUF', manifestName), 'utf8'),
    ) as RepoManifest;
    expect(m.commit).toBe(COMMIT);
    expect(m.resolved['']).toEqual({
      model: ['tiny-Q4_K_M.gguf'],
      mmproj: 'mmproj-tiny-Q8_0.gguf',
    });
    expect(m.files.find((f) => f.path === 'tiny-F16.gguf')).toEqual({
      path: 'tiny-F16.gguf',
      size: 90_000,
      sha256: sha256(tiny.f16!.bytes),
    });
    expect(m.files.some((f) => f.path === 'README.md')).toBe(false);

    // Progress: bytes rise to the total for each file, then 'verify', then 'done'.
    const model = progress.filter((p) => p.file === 'tiny-Q4_K_M.gguf');
    expect(model.map((p) => p.phase)).toContain('download');
    expect(model.at(-2)).toMatchObject({ phase: 'verify', downloaded: 300_000, total: 300_000 });
    expect(model.at(-1)).toMatchObject({ phase: 'done', cached: false, index: 0, count: 2 });
    const downloads = model.filter((p) => p.phase === 'download').map((p) => p.downloaded);
    expect(downloads).toEqual([...downloads].sort((a, b) => a - b));
    expect(downloads.at(-1)).toBe(300_000);
  });

  it('a second pull downloads nothing; a file changed in the cache is downloaded again', async () => {
    freshCache();
    await pull();
    hub.requests.length = 0;
    const again = await pull();
    expect(again.fromCache).toBe(true);
    expect(hub.seen(`/${REPO}/resolve/`)).toHaveLength(0);

    // Same size, other bytes, and a manifest that no longer vouches for it: re-hashed, replaced.
    writeFileSync(again.model, fixtureBytes('other', 300_000));
    rmSync(join(cacheDir, 'hub', 'mm-test', 'tiny-GGUF', manifestName));
    const third = await pull();
    expect(third.files.map((f) => f.downloaded)).toEqual([true, false]);
    expect(readFileSync(third.model).equals(tiny.q4!.bytes)).toBe(true);
  });

  it('quant tags are case-insensitive and pick the mmproj closest to them', async () => {
    freshCache();
    const f16 = await pull({ repo: `${REPO}:f16` });
    expect(f16.tag).toBe('f16');
    expect([f16.model, f16.mmproj]).toEqual([
      local(REPO, 'tiny-F16.gguf'),
      local(REPO, 'mmproj-tiny-F16.gguf'),
    ]);
    const q8 = await pull({ quant: 'Q8_0', mmproj: false });
    expect(q8.model).toBe(local(REPO, 'tiny-Q8_0.gguf'));
    expect(q8.mmproj).toBeUndefined();
    expect(readFileSync(q8.model).equals(tiny.q8!.bytes)).toBe(true);
  });

  it('a split model downloads every part; `model` is the first; a git-stored mmproj is checked by blob id', async () => {
    freshCache();
    hub.pageSize = 2; // the listing comes in pages linked by `Link: <...>; rel="next"`
    const r = await pull({ repo: SPLIT });
    expect(r.modelParts).toEqual([
      local(SPLIT, 'm/big-Q4_0-00001-of-00002.gguf'),
      local(SPLIT, 'm/big-Q4_0-00002-of-00002.gguf'),
    ]);
    expect(r.model).toBe(r.modelParts[0]);
    expect(readFileSync(r.modelParts[1]!).equals(split[0]!.bytes)).toBe(true);
    expect(r.mmproj).toBe(local(SPLIT, 'mmproj-big-f16.gguf'));
    expect(r.files.find((f) => f.path === 'mmproj-big-f16.gguf')?.sha256).toBeUndefined();
    expect(hub.seen(`/api/models/${SPLIT}/tree/`)).toHaveLength(2);
  });

  it('a connection dropped mid-body is resumed with a Range request in the same call', async () => {
    freshCache();
    hub.fault(`${REPO}/${tiny.q4!.path}`, { dropAfter: 100_000 });
    const r = await pull({ mmproj: false });
    expect(readFileSync(r.model).equals(tiny.q4!.bytes)).toBe(true);
    const gets = hub.seen(`/${REPO}/resolve/`);
    expect(gets).toHaveLength(2);
    expect(gets[0]!.range).toBeUndefined();
    expect(gets[1]!.range).toMatch(/^bytes=\d+-$/);
    const resumedAt = Number(/\d+/.exec(gets[1]!.range!)![0]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(100_000);
    expect(hub.bytesSent.get(`${REPO}/${tiny.q4!.path}`)).toBe(100_000 + (300_000 - resumedAt));
  });

  it('an interrupted pull keeps only a .part; the next pull resumes from its size (Range) and sends < 2x the file', async () => {
    freshCache();
    const key = `${REPO}/${tiny.q4!.path}`;
    hub.fault(key, { dropAfter: 120_000 });
    const e = await rejection(pull({ mmproj: false, maxRetries: 0 }));
    expect(e.code).toBe(ErrorCode.MM_DOWNLOAD);
    expect(e.message).toContain(`/${REPO}/resolve/${COMMIT}/tiny-Q4_K_M.gguf`);
    expect(e.message).toContain('gave up after 1 try');
    const dest = local(REPO, tiny.q4!.path);
    expect(existsSync(dest)).toBe(false);
    const partial = statSync(`${dest}.part`).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(300_000);

    const r = await pull({ mmproj: false });
    const gets = hub.seen(`/${REPO}/resolve/`);
    expect(gets.map((q) => q.range)).toEqual([undefined, `bytes=${partial}-`]);
    expect(readFileSync(r.model).equals(tiny.q4!.bytes)).toBe(true);
    expect(existsSync(`${dest}.part`)).toBe(false);
    expect(hub.bytesSent.get(key)).toBe(120_000 + 300_000 - partial);
    expect(hub.bytesSent.get(key)).toBeLessThan(2 * 300_000);
  });

  it('a server that ignores Range is read again from the first byte', async () => {
    freshCache();
    const dest = local(REPO, tiny.q8!.path);
    hub.fault(`${REPO}/${tiny.q8!.path}`, { dropAfter: 50_000 });
    await rejection(pull({ quant: 'Q8_0', mmproj: false, maxRetries: 0 }));
    expect(existsSync(`${dest}.part`)).toBe(true);
    hub.fault(`${REPO}/${tiny.q8!.path}`, { ignoreRange: true });
    const r = await pull({ quant: 'Q8_0', mmproj: false });
    expect(readFileSync(r.model).equals(tiny.q8!.bytes)).toBe(true);
  });

  it('wrong bytes: MM_CHECKSUM with both hashes, no final file and no .part', async () => {
    freshCache();
    hub.fault(`${REPO}/${tiny.mmQ8!.path}`, { wrongBytes: true });
    const e = await rejection(pull());
    expect(e.code).toBe(ErrorCode.MM_CHECKSUM);
    const flipped = Buffer.from(tiny.mmQ8!.bytes.map((b) => b ^ 0xff));
    expect(e.details).toMatchObject({
      file: 'mmproj-tiny-Q8_0.gguf',
      algo: 'sha256',
      expected: sha256(tiny.mmQ8!.bytes),
      actual: sha256(flipped),
    });
    expect(e.message).toContain(sha256(tiny.mmQ8!.bytes));
    expect(e.message).toContain(sha256(flipped));
    const dest = local(REPO, tiny.mmQ8!.path);
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.part`)).toBe(false);
    // The model before it was verified and kept; the next pull only fetches the mmproj.
    hub.requests.length = 0;
    const r = await pull();
    expect(r.files.map((f) => f.downloaded)).toEqual([false, true]);
  });

  it('404s are MM_HUB_NOT_FOUND naming the repository, the quant or the file', async () => {
    freshCache();
    const repo = await rejection(pull({ repo: 'mm-test/nope' }));
    expect(repo.code).toBe(ErrorCode.MM_HUB_NOT_FOUND);
    expect(repo.message).toContain('refs of mm-test/nope: HTTP 404');
    expect(repo.message).toContain(`${hub.url}/api/models/mm-test/nope/refs`);
    expect(repo.details).toMatchObject({ status: 404, response: 'Repository not found' });

    const quant = await rejection(pull({ quant: 'Q2_K' }));
    expect(quant.code).toBe(ErrorCode.MM_HUB_NOT_FOUND);
    expect(quant.message).toMatch(
      /^mm-test\/tiny-GGUF: no model GGUF for quant 'Q2_K'; its GGUF files: tiny-Q4_K_M\.gguf, /,
    );

    hub.fault(`${REPO}/${tiny.q4!.path}`, { status: 404 });
    const file = await rejection(pull());
    expect(file.code).toBe(ErrorCode.MM_HUB_NOT_FOUND);
    expect(file.message).toContain(
      `download of tiny-Q4_K_M.gguf: HTTP 404 from ${hub.url}/${REPO}/resolve/${COMMIT}/tiny-Q4_K_M.gguf`,
    );
    expect(hub.seen(`/${REPO}/resolve/`)).toHaveLength(1); // a 404 is not retried
  });

  it('HTTP 500 is retried a bounded number of times, then MM_DOWNLOAD with the URL and status', async () => {
    freshCache();
    hub.fault(`${REPO}/${tiny.q4!.path}`, { status: 500, times: 1 });
    const ok = await pull({ mmproj: false, maxRetries: 2 });
    expect(readFileSync(ok.model).equals(tiny.q4!.bytes)).toBe(true);
    expect(hub.seen(`/${REPO}/resolve/`)).toHaveLength(2);

    freshCache();
    hub.requests.length = 0;
    hub.fault(`${REPO}:tree`, { status: 503, times: 1000 });
    const e = await rejection(pull({ maxRetries: 2 }));
    expect(e.code).toBe(ErrorCode.MM_DOWNLOAD);
    expect(e.details).toMatchObject({ status: 503, tries: 3 });
    expect(e.message).toContain(
      `HTTP 503 from ${hub.url}/api/models/${REPO}/tree/${COMMIT}?recursive=true`,
    );
    expect(hub.seen(`/api/models/${REPO}/tree/`)).toHaveLength(3);
  });

  it('offline: the cache answers without a single request; MM_OFFLINE=1 does the same', async () => {
    freshCache();
    const online = await pull({ quant: 'F16' });
    await pull({ mmproj: false }); // the default tag too, model only
    hub.requests.length = 0;

    const f16 = await pull({ quant: 'f16', offline: true });
    expect([f16.model, f16.mmproj, f16.fromCache, f16.commit]).toEqual([
      online.model,
      online.mmproj,
      true,
      COMMIT,
    ]);
    // The default tag was pulled without an mmproj: offline, the closest cached one is used.
    const dflt = await pull({ offline: true });
    expect(dflt.model).toBe(local(REPO, 'tiny-Q4_K_M.gguf'));
    expect(dflt.mmproj).toBe(local(REPO, 'mmproj-tiny-F16.gguf'));

    process.env.MM_OFFLINE = '1';
    try {
      const env = await pullModel({ repo: `${REPO}:F16`, cacheDir, endpoint: hub.url });
      expect(env.model).toBe(online.model);
    } finally {
      delete process.env.MM_OFFLINE;
    }
    expect(hub.requests).toHaveLength(0);

    const missing = await rejection(pull({ quant: 'Q8_0', offline: true }));
    expect(missing.code).toBe(ErrorCode.MM_NOT_CACHED);
    expect(missing.message).toContain('mm-test/tiny-GGUF:Q8_0 is not in the cache');
    const never = await rejection(pull({ repo: 'mm-test/never', offline: true }));
    expect(never.code).toBe(ErrorCode.MM_NOT_CACHED);
    expect(hub.requests).toHaveLength(0);
  });

  it('when the hub cannot be reached, cached files are used and the network error is reported', async () => {
    freshCache();
    const online = await pull();
    const down = await FakeHub.start({});
    const closedUrl = down.url;
    await down.close();
    const r = await pull({ endpoint: closedUrl });
    expect([r.model, r.mmproj, r.fromCache]).toEqual([online.model, online.mmproj, true]);
    expect(r.networkError?.code).toBe(ErrorCode.MM_DOWNLOAD);
    expect(r.networkError?.details.tries).toBe(2); // a cached copy: one retry, not maxRetries
    expect(r.networkError?.message).toContain(
      `GET ${closedUrl}/api/models/${REPO}/refs failed: connect ECONNREFUSED`,
    );

    // Nothing cached: the network error itself.
    const e = await rejection(pull({ repo: 'mm-test/other', endpoint: closedUrl, maxRetries: 0 }));
    expect(e.code).toBe(ErrorCode.MM_DOWNLOAD);
    expect(e.message).toContain('ECONNREFUSED');
  });

  it('a body that stalls is cut off after stallTimeoutMs and resumed', async () => {
    freshCache();
    hub.fault(`${REPO}/${tiny.q4!.path}`, { stallAfter: 64_000 });
    const r = await pull({ mmproj: false, stallTimeoutMs: 300 });
    expect(readFileSync(r.model).equals(tiny.q4!.bytes)).toBe(true);
    expect(hub.seen(`/${REPO}/resolve/`)[1]?.range).toMatch(/^bytes=[1-9]\d*-$/);
  });
});

describe('pullModel abort', () => {
  it('an already aborted signal rejects with its reason before any request', async () => {
    freshCache();
    const reason = new MmError(ErrorCode.MM_ABORTED, 'stop');
    await expect(pull({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(hub.requests).toHaveLength(0);
  });

  it('an abort mid-body rejects with signal.reason and keeps only the .part', async () => {
    freshCache();
    hub.fault(`${REPO}/${tiny.q4!.path}`, { stallAfter: 100_000 });
    const c = new AbortController();
    const reason = new Error('user stop');
    let timer: NodeJS.Timeout | undefined;
    const p = pull({
      signal: c.signal,
      stallTimeoutMs: 30_000,
      onProgress: (e) => {
        // The server sends 100 000 bytes at once, then nothing: abort while waiting for more.
        if (e.phase === 'download' && !timer) timer = setTimeout(() => c.abort(reason), 200);
      },
    });
    await expect(p).rejects.toBe(reason);
    const dest = local(REPO, tiny.q4!.path);
    expect(existsSync(dest)).toBe(false);
    expect(statSync(`${dest}.part`).size).toBeGreaterThan(0);
    expect(hub.seen(`/${REPO}/resolve/`)).toHaveLength(1); // an abort is not retried
  });

  it('an abort during the retry wait rejects with signal.reason', async () => {
    freshCache();
    hub.fault(`${REPO}:refs`, { status: 500 });
    const c = new AbortController();
    const p = pull({ signal: c.signal, retryDelayMs: 5_000 });
    setTimeout(() => c.abort(new Error('later')), 100);
    await expect(p).rejects.toThrow('later');
  });

  it('a signal that never aborts changes nothing; a signal that is not an AbortSignal is MM_INVALID_ARGUMENT', async () => {
    freshCache();
    const r = await pull({ signal: new AbortController().signal, mmproj: false });
    expect(readFileSync(r.model).equals(tiny.q4!.bytes)).toBe(true);
    const e = await rejection(pull({ signal: {} as AbortSignal }));
    expect(e.code).toBe(ErrorCode.MM_INVALID_ARGUMENT);
    expect(e.message).toContain('signal');
  });
});
