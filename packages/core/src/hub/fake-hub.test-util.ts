import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** Deterministic bytes: a sha256 counter stream seeded by `seed`. */
export function fixtureBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0, off = 0; off < size; i++) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest();
    off += block.copy(out, off);
  }
  return out;
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export interface FakeFile {
  path: string;
  bytes: Buffer;
  /** Listed as an LFS file with its sha256 (default); false lists a git blob id instead. */
  lfs?: boolean;
}

/** A fault the server injects into the next `times` requests for one path. */
export interface Fault {
  times?: number;
  /** Answer with this status and a JSON error body. */
  status?: number;
  /** Send this many body bytes (flushed), then destroy the connection. */
  dropAfter?: number;
  /** Send this many body bytes, then nothing (the connection stays open). */
  stallAfter?: number;
  /** Send bytes with every byte flipped (same length). */
  wrongBytes?: boolean;
  /** Answer a Range request with the whole file (200), as servers without range support do. */
  ignoreRange?: boolean;
}

export interface SeenRequest {
  path: string;
  range?: string;
  authorization?: string;
  userAgent?: string;
}

export const COMMIT = 'c0ffee0000000000000000000000000000000001';

/**
 * An in-process stand-in for the hub's endpoints that `pullModel` uses, on 127.0.0.1: refs, the
 * recursive tree listing (paged with a Link header when `pageSize` is set) and resolve (with
 * Range), plus injected faults. It records every request and the body bytes it sent per file.
 */
export class FakeHub {
  readonly requests: SeenRequest[] = [];
  readonly bytesSent = new Map<string, number>();
  pageSize = 0;
  readonly #faults = new Map<string, Fault>();
  readonly #sockets = new Set<Socket>();

  private constructor(
    readonly repos: Map<string, FakeFile[]>,
    readonly server: Server,
  ) {}

  static async start(repos: Record<string, FakeFile[]>): Promise<FakeHub> {
    const server = createServer();
    const hub = new FakeHub(new Map(Object.entries(repos)), server);
    server.on('request', (req, res) => hub.#handle(req, res));
    server.on('connection', (s) => {
      hub.#sockets.add(s);
      s.on('close', () => hub.#sockets.delete(s));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return hub;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** `key` is `<repo>/<file path>` for a download, `<repo>:refs` or `<repo>:tree` for the API. */
  fault(key: string, fault: Fault): void {
    this.#faults.set(key, { times: 1, ...fault });
  }

  clearFaults(): void {
    this.#faults.clear();
  }

  /** Requests whose path starts with `prefix`. */
  seen(prefix: string): SeenRequest[] {
    return this.requests.filter((r) => r.path.startsWith(prefix));
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  #take(key: string): Fault | undefined {
    const f = this.#faults.get(key);
    if (!f) return undefined;
    f.times = (f.times ?? 1) - 1;
    if (f.times <= 0) this.#faults.delete(key);
    return f;
  }

  #handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push({
      path: `${url.pathname}${url.search}`,
      range: req.headers.range,
      authorization: req.headers.authorization,
      userAgent: req.headers['user-agent'],
    });
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(refs|tree\/([0-9a-f]{40}))$/.exec(url.pathname);
    if (api) {
      const repo = api[1]!;
      const files = this.repos.get(repo);
      const fault = this.#take(`${repo}:${api[2]!.startsWith('tree') ? 'tree' : 'refs'}`);
      if (fault?.status) return json(fault.status, { error: 'injected' });
      if (!files) return json(404, { error: 'Repository not found' });
      if (api[2] === 'refs') {
        return json(200, {
          branches: [{ name: 'main', ref: 'refs/heads/main', targetCommit: COMMIT }],
          tags: [],
          converts: [],
        });
      }
      if (api[3] !== COMMIT || url.searchParams.get('recursive') !== 'true') {
        return json(404, { error: 'Invalid rev id' });
      }
      const entries = files.map((f) => {
        const oid = createHash('sha1')
          .update(`blob ${f.bytes.length}\0`)
          .update(f.bytes)
          .digest('hex');
        return {
          type: 'file',
          oid,
          size: f.bytes.length,
          path: f.path,
          ...(f.lfs !== false && {
            lfs: { oid: sha256(f.bytes), size: f.bytes.length, pointerSize: 134 },
          }),
        };
      });
      if (this.pageSize > 0) {
        const start = Number(url.searchParams.get('cursor') ?? 0);
        const page = entries.slice(start, start + this.pageSize);
        const next = start + this.pageSize;
        const link =
          next < entries.length
            ? { link: `<${this.url}${url.pathname}?recursive=true&cursor=${next}>; rel="next"` }
            : undefined;
        return json(200, page, link);
      }
      return json(200, entries);
    }
    const dl = /^\/([^/]+\/[^/]+)\/resolve\/([0-9a-f]{40})\/(.+)$/.exec(url.pathname);
    if (dl) {
      const repo = dl[1]!;
      const path = dl[3]!.split('/').map(decodeURIComponent).join('/');
      const file =
        dl[2] === COMMIT ? this.repos.get(repo)?.find((f) => f.path === path) : undefined;
      const fault = this.#take(`${repo}/${path}`);
      if (fault?.status) return json(fault.status, { error: 'injected' });
      if (!file)
        return json(404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound' });
      return this.#sendFile(req, res, `${repo}/${path}`, file.bytes, fault);
    }
    json(404, { error: 'not found' });
  }

  #sendFile(req: IncomingMessage, res: ServerResponse, key: string, all: Buffer, fault?: Fault) {
    let bytes = fault?.wrongBytes ? Buffer.from(all.map((b) => b ^ 0xff)) : all;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const headers: Record<string, string | number> = {
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    if (m && !fault?.ignoreRange) {
      const start = Number(m[1]);
      if (start >= all.length) {
        res.writeHead(416, { 'content-range': `bytes */${all.length}` });
        return res.end();
      }
      headers['content-range'] = `bytes ${start}-${all.length - 1}/${all.length}`;
      bytes = bytes.subarray(start);
      res.writeHead(206, { ...headers, 'content-length': bytes.length });
    } else {
      res.writeHead(200, { ...headers, 'content-length': bytes.length });
    }
    const count = (n: number) => this.bytesSent.set(key, (this.bytesSent.get(key) ?? 0) + n);
    const cut = fault?.dropAfter ?? fault?.stallAfter;
    if (cut === undefined) {
      count(bytes.length);
      return res.end(bytes);
    }
    const head = bytes.subarray(0, cut);
    count(head.length);
    res.write(head, () => {
      if (fault?.dropAfter !== undefined) setTimeout(() => res.socket?.destroy(), 20);
    });
  }
}
