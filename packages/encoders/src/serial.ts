/**
 * Runs async operations one at a time, in call order. An encoder's native graph serves one
 * computation at a time; queueing here (not in a native lock) keeps libuv's worker threads free.
 */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
