import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyShapesPaths } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMain } from '../main.test-util.js';
import { expandFlagAliases, hubFlags, modelFlags } from '../model-options.js';

const REPO = 'mm-test/tiny-shapes-GGUF';
const COMMIT = 'abcdef0000000000000000000000000000000001';
const tiny = tinyShapesPaths();
const files = new Map([
  ['tiny-shapes-llm.gguf', readFileSync(tiny.llm)],
  ['mmproj-tiny-shapes.gguf', readFileSync(tiny.mmproj)],
]);

/** The three hub endpoints `mm pull` uses, serving the bundled tiny-shapes pair, on 127.0.0.1. */
function startHub(): Promise<{ server: Server; url: string; paths: string[] }> {
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    const send = (status: number, body: string | Buffer, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'content-length': body.length });
      res.end(body);
    };
    if (req.url === `/api/models/${REPO}/refs`) {
      return send(200, JSON.stringify({ branches: [{ name: 'main', targetCommit: COMMIT }] }));
    }
    if (req.url === `/api/models/${REPO}/tree/${COMMIT}?recursive=true`) {
      const tree = [...files].map(([path, bytes]) => ({
        type: 'file',
        path,
        size: bytes.length,
        lfs: { oid: createHash('sha256').update(bytes).digest('hex'), size: bytes.length },
      }));
      return send(200, JSON.stringify(tree));
    }
    const prefix = `/${REPO}/resolve/${COMMIT}/`;
    const bytes = req.url?.startsWith(prefix) ? files.get(req.url.slice(prefix.length)) : undefined;
    if (bytes) return send(200, bytes, 'application/octet-stream');
    send(404, JSON.stringify({ error: 'Repository not found' }));
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, paths }),
    ),
  );
}

const mm = runMain;

let hub: Awaited<ReturnType<typeof startHub>>;
let cache: string;
const saved = { ...process.env };

beforeAll(async () => {
  hub = await startHub();
  cache = mkdtempSync(join(tmpdir(), 'mm-cli-pull-'));
  process.env.MM_HF_ENDPOINT = hub.url;
  process.env.MM_CACHE_DIR = cache;
  delete process.env.HF_TOKEN;
  delete process.env.MM_OFFLINE;
});

afterAll(async () => {
  process.env = saved;
  await new Promise((r) => hub.server.close(r));
  rmSync(cache, { recursive: true, force: true });
});

const cached = (name: string) => join(cache, 'hub', 'mm-test', 'tiny-shapes-GGUF', name);

describe('mm pull', () => {
  it('downloads the model and its mmproj into MM_CACHE_DIR and prints their paths; then serves them from the cache', async () => {
    const first = await mm(['pull', REPO]);
    expect(first.code).toBe(0);
    expect(first.out).toBe(
      `model  ${cached('tiny-shapes-llm.gguf')}\nmmproj ${cached('mmproj-tiny-shapes.gguf')}\n`,
    );
    expect(
      readFileSync(cached('tiny-shapes-llm.gguf')).equals(files.get('tiny-shapes-llm.gguf')!),
    ).toBe(true);
    expect(
      readFileSync(cached('mmproj-tiny-shapes.gguf')).equals(files.get('mmproj-tiny-shapes.gguf')!),
    ).toBe(true);
    expect(first.err).toContain('tiny-shapes-llm.gguf: 2.89 MiB, sha256 ok\n');
    expect(first.err).toContain('mmproj-tiny-shapes.gguf: 1.48 MiB, sha256 ok\n');
    expect(first.err).toMatch(
      /mm pull: mm-test\/tiny-shapes-GGUF at abcdef000000: downloaded 2 files \(4\.37 MiB\)/,
    );

    const again = await mm(['pull', REPO, '--json']);
    expect(again.code).toBe(0);
    const j = JSON.parse(again.out);
    expect([j.fromCache, j.model, j.mmproj, j.commit]).toEqual([
      true,
      cached('tiny-shapes-llm.gguf'),
      cached('mmproj-tiny-shapes.gguf'),
      COMMIT,
    ]);

    const before = hub.paths.length;
    const offline = await mm(['pull', REPO, '--offline', '--no-mmproj']);
    expect(offline.code).toBe(0);
    expect(offline.out).toBe(`model  ${cached('tiny-shapes-llm.gguf')}\n`);
    expect(offline.err).toContain('tiny-shapes-llm.gguf: cached (2.89 MiB)');
    expect(hub.paths.length).toBe(before);
  });

  it('usage errors exit 2; a repository the hub does not have is MM_HUB_NOT_FOUND (exit 1)', async () => {
    expect((await mm(['pull'])).code).toBe(2);
    expect((await mm(['pull', 'no-slash'])).code).toBe(2);
    const missing = await mm(['pull', 'mm-test/missing']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(
      /^mm: MM_HUB_NOT_FOUND: refs of mm-test\/missing: HTTP 404 from http:\/\/127\.0\.0\.1:\d+\/api\/models\/mm-test\/missing\/refs/,
    );
    const offline = await mm(['pull', 'mm-test/missing', '--offline']);
    expect(offline.code).toBe(1);
    expect(offline.err).toMatch(/^mm: MM_NOT_CACHED: mm-test\/missing is not in the cache/);
    const both = await mm(['run', '-hf', REPO, '-m', tiny.llm, '-p', 'hi']);
    expect(both.code).toBe(2);
    expect(both.err).toContain('-hf/--hf-repo and -m/--model cannot be used together');
  });

  it('-hf is read as --hf-repo, except as the value of another flag', () => {
    const options = { ...modelFlags, ...hubFlags, prompt: { type: 'string', short: 'p' } } as const;
    expect(
      expandFlagAliases(['-hf', 'a/b', '-p', '-hf', '--prompt', '-hf', '--', '-hf'], options),
    ).toEqual(['--hf-repo', 'a/b', '-p', '-hf', '--prompt', '-hf', '--', '-hf']);
    expect(expandFlagAliases(['-hfr', 'a/b', '-t', '2'], options)).toEqual([
      '--hf-repo',
      'a/b',
      '-t',
      '2',
    ]);
    expect(expandFlagAliases(['-hf'], { help: { type: 'boolean' } })).toEqual(['-hf']);
  });

  it('mm run -hf answers as mm run -m/--mmproj does with the same files', async () => {
    const answers = JSON.parse(readFileSync(join(tiny.samples, 'answers.json'), 'utf8'));
    const want = answers.items[2].questions[0];
    const image = join(tiny.samples, 'sample_002.png');
    const r = await mm(['run', '-hf', REPO, '--image', image, '-p', want.question, '-q']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(want.answer);
  });
});
