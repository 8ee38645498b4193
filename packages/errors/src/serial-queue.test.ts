import { describe, expect, it } from 'vitest';
import { SerialQueue } from './index.js';

const tick = () => new Promise<void>((r) => setTimeout(r, 1));

describe('SerialQueue', () => {
  it('runs operations one at a time, in call order, each settling as it does', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    let running = 0;
    const op =
      (name: string, fail = false) =>
      async () => {
        running++;
        expect(running).toBe(1);
        log.push(`${name}+`);
        await tick();
        log.push(`${name}-`);
        running--;
        if (fail) throw new Error(name);
        return name;
      };
    const a = q.run(op('a'));
    const b = q.run(op('b', true));
    const c = q.run(op('c'));
    const d = q.run(() => 'sync');
    await expect(a).resolves.toBe('a');
    await expect(b).rejects.toThrow('b');
    await expect(c).resolves.toBe('c');
    await expect(d).resolves.toBe('sync');
    expect(log).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
  });

  it('a synchronous throw rejects that call only', async () => {
    const q = new SerialQueue();
    await expect(
      q.run(() => {
        throw new TypeError('bad');
      }),
    ).rejects.toBeInstanceOf(TypeError);
    await expect(q.run(async () => 1)).resolves.toBe(1);
  });

  it('acquire() holds the queue until released, after what was queued before', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    const first = q.run(async () => {
      await tick();
      log.push('first');
    });
    const release = await q.acquire();
    log.push('held');
    const after = q.run(async () => log.push('after'));
    await tick();
    await tick();
    expect(log).toEqual(['first', 'held']);
    release();
    await Promise.all([first, after]);
    expect(log).toEqual(['first', 'held', 'after']);
  });
});
