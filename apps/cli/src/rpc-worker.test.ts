// `mm rpc-worker` serves on loopback and prints the endpoint and the no-authentication warning;
// `mm run --rpc` with two of them answers exactly as `mm run` alone; bad flags are usage errors.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyShapesPaths } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');
const tiny = tinyShapesPaths();
const sample = (n: number) => join(tiny.samples, `sample_00${n}.png`);

function mm(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** `mm rpc-worker` on a free port; resolves with its banner once it listens. */
async function worker(): Promise<{ child: ChildProcess; banner: string; endpoint: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [bin, 'rpc-worker', '--port', String(port), '-t', '1'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let banner = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (d) => {
      banner += d;
      if (banner.includes('WARNING')) resolve();
    });
    child.once('exit', (c) => reject(new Error(`mm rpc-worker exited (${c}): ${banner}`)));
  });
  return { child, banner, endpoint: `127.0.0.1:${port}` };
}

describe('mm rpc-worker and --rpc', () => {
  const workers: { child: ChildProcess; banner: string; endpoint: string }[] = [];
  beforeAll(async () => {
    workers.push(...(await Promise.all([worker(), worker()])));
  }, 30_000);
  afterAll(() => {
    for (const w of workers) w.child.kill('SIGKILL');
  });

  it('listens on loopback and says the protocol is unauthenticated', () => {
    const [w] = workers;
    expect(w!.banner).toContain(`listening on ${w!.endpoint}`);
    expect(w!.banner).toMatch(/unauthenticated/);
    expect(w!.banner).toMatch(/CPU/);
  });

  it('mm run --rpc answers exactly as mm run', () => {
    const args = ['run', '-m', tiny.llm, '--mmproj', tiny.mmproj, '-t', '1', '-q', '--image'];
    for (const [image, prompt] of [
      [sample(0), 'Describe the image.'],
      [sample(2), 'What shape is it?'],
    ] as const) {
      const local = mm([...args, image, '-p', prompt]);
      const remote = mm([
        ...args,
        image,
        '-p',
        prompt,
        '--rpc',
        workers.map((w) => w.endpoint).join(','),
      ]);
      expect(local.code).toBe(0);
      expect(remote.err).toBe('');
      expect(remote.code).toBe(0);
      expect(remote.out).toBe(local.out);
      // the encoder and projector on a worker too
      const placed = mm([
        ...args,
        image,
        '-p',
        prompt,
        '--rpc',
        workers[0]!.endpoint,
        '--mmproj-rpc',
        workers[1]!.endpoint,
      ]);
      expect(placed.err).toBe('');
      expect(placed.out).toBe(local.out);
    }
  }, 30_000);

  it('SIGTERM stops a worker with exit code 0', async () => {
    const w = await worker();
    const code = await new Promise<number | null>((resolve) => {
      w.child.once('exit', (c) => resolve(c));
      w.child.kill('SIGTERM');
    });
    expect(code).toBe(0);
  }, 15_000);

  it('bad flags and unknown devices are clear errors', () => {
    expect(mm(['run', '-m', tiny.llm, '-p', 'x', '--rpc', 'nohost']).code).toBe(2);
    const two = mm([
      'run',
      '-m',
      tiny.llm,
      '--mmproj',
      tiny.mmproj,
      '-p',
      'x',
      '--mmproj-rpc',
      'a:1,b:2',
    ]);
    expect(two.code).toBe(2);
    expect(two.err).toMatch(/--mmproj-rpc takes one host:port/);
    expect(mm(['run', '-m', tiny.llm, '-p', 'x', '--mmproj-rpc', 'a:1']).err).toMatch(
      /give --mmproj too/,
    );
    const serve = mm(['serve', '-m', tiny.llm, '--mmproj', tiny.mmproj, '--mmproj-rpc', 'a']);
    expect(serve.code).toBe(2);
    expect(serve.err).toMatch(/--mmproj-rpc takes one host:port, got 'a'/);
    const dev = mm(['rpc-worker', '--device', 'NoSuchDevice', '--port', '1']);
    expect(dev.code).toBe(1);
    expect(dev.err).toMatch(
      /MM_INVALID_ARGUMENT: no ggml device named 'NoSuchDevice'; available: CPU/,
    );
    expect(mm(['rpc-worker', '--port', '70000']).code).toBe(2);
    expect(mm(['rpc-worker', '--help']).out).toMatch(/no authentication/);
  });

  it('a port in use is MM_IO', () => {
    const r = mm(['rpc-worker', '--port', workers[0]!.endpoint.split(':')[1]!]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/MM_IO: cannot listen on 127\.0\.0\.1:\d+: the port is in use/);
  });
});
