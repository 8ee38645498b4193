import { describe, expect, it } from 'vitest';
import { nextTurn } from './turns.js';

describe('nextTurn', () => {
  it('hands waiters out in order, one per turn of the event loop', async () => {
    const order: string[] = [];
    const waiters = ['a', 'b', 'c'].map((name) =>
      nextTurn().then(() => {
        order.push(name);
        // what a waiter queues as microtasks runs before the next waiter
        queueMicrotask(() => order.push(`${name}'`));
      }),
    );
    await Promise.all(waiters);
    expect(order).toEqual(['a', "a'", 'b', "b'", 'c', "c'"]);
  });

  it('lets a due timer run between two waiters', async () => {
    // start from a timer callback: the turn's check phase (the first waiter) comes before the
    // next timers phase, wherever the runner called this test from
    await new Promise((resolve) => setTimeout(resolve, 0));
    const order: string[] = [];
    const first = nextTurn().then(() => {
      order.push('first');
      const until = performance.now() + 3;
      while (performance.now() < until); // the 1 ms timer below is due by the next turn
    });
    const second = nextTurn().then(() => order.push('second'));
    const timer = new Promise<void>((resolve) =>
      setTimeout(() => {
        order.push('timer');
        resolve();
      }, 1),
    );
    await Promise.all([first, second, timer]);
    expect(order).toEqual(['first', 'timer', 'second']);
  });
});
