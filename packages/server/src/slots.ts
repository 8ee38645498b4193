import { HttpError } from './http-error.js';

/**
 * N slots and a bounded FIFO queue. `acquire()` resolves with a free slot, waits in line while all
 * are busy, and throws 429 when the line is full. A waiter whose signal aborts leaves the line.
 */
export class SlotPool<T> {
  readonly #free: T[];
  readonly #size: number;
  readonly #maxQueue: number;
  readonly #waiting: { resolve: (slot: T) => void; reject: (e: unknown) => void }[] = [];

  constructor(slots: readonly T[], maxQueue: number) {
    this.#free = [...slots];
    this.#size = slots.length;
    this.#maxQueue = maxQueue;
  }

  get size(): number {
    return this.#size;
  }

  get inUse(): number {
    return this.#size - this.#free.length;
  }

  get queued(): number {
    return this.#waiting.length;
  }

  get maxQueue(): number {
    return this.#maxQueue;
  }

  acquire(signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    const slot = this.#free.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    if (this.#waiting.length >= this.#maxQueue) {
      return Promise.reject(
        new HttpError(429, `the server is busy: ${this.#waiting.length} requests are waiting`, {
          type: 'rate_limit_error',
          code: 'queue_full',
        }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        resolve: (s: T) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(s);
        },
        reject,
      };
      const onAbort = () => {
        const i = this.#waiting.indexOf(waiter);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  release(slot: T): void {
    const next = this.#waiting.shift();
    if (next) next.resolve(slot);
    else this.#free.push(slot);
  }
}
