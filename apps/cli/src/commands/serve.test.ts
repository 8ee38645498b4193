import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyShapesPaths } from '@mm/testing';
import { describe, expect, it } from 'vitest';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'mm.js');

describe('mm serve', () => {
  it("serves 6 parallel requests on loopback with libuv's default pool of 4 (no generation holds a worker), and stops on SIGTERM", async () => {
    const tiny = tinyShapesPaths();
    const child = spawn(
      process.execPath,
      [bin, 'serve', '-m', tiny.llm, '--mmproj', tiny.mmproj, '--port', '0', '--parallel', '6'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UV_THREADPOOL_SIZE: '' } },
    );
    let err = '';
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stderr.on('data', (d: Buffer) => {
          err += d.toString();
          const m = /on (http:\/\/127\.0\.0\.1:\d+) \(6 slots\)/.exec(err);
          if (m) resolve(m[1] as string);
        });
        child.on('exit', () => reject(new Error(`mm serve exited: ${err}`)));
      });
      const health = (await (await fetch(`${url}/health`)).json()) as {
        slots: { total: number };
      };
      expect(health.slots.total).toBe(6);
      const image = readFileSync(join(tiny.samples, 'sample_003.png')).toString('base64');
      const answers = JSON.parse(readFileSync(join(tiny.samples, 'answers.json'), 'utf8'));
      const want = answers.items[3].questions[0];
      // Six at once, more than libuv's 4 workers: generation runs on the native scheduler thread.
      const replies = await Promise.all(
        Array.from({ length: 6 }, async () => {
          const res = await fetch(`${url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              model: 'tiny-shapes-llm',
              messages: [
                {
                  role: 'user',
                  content: [
                    { type: 'image_url', image_url: { url: `data:image/png;base64,${image}` } },
                    { type: 'text', text: want.question },
                  ],
                },
              ],
            }),
          });
          return (await res.json()) as { choices: { message: { content: string } }[] };
        }),
      );
      for (const r of replies) expect(r.choices[0]?.message.content.trim()).toBe(want.answer);
    } finally {
      child.kill('SIGTERM');
    }
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await exited;
    clearTimeout(killer);
    expect(code).toBe(0);
    expect(err).toContain('mm serve: stopping');
  });
});
