/**
 * Runs async operations one at a time, in call order. Native handles (a llama.cpp context, an
 * encoder's or a projector's graph) serve one computation at a time; queueing here rather than
 * behind a native lock keeps libuv's worker threads free. An operation that fails does not stop
 * the queue: the next one runs as if it had succeeded.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after everything queued before it; settles as `fn` does. */
  run<T>(fn: () => T | PromiseLike<T>): Promise<T> {
    const next = this.#tail.then(fn);
    this.#tail = next.catch(() => undefined);
    return next;
  }

  /**
   * Waits for everything queued before, then holds the queue until the returned release is called
   * (for an operation that outlives one call, such as a generation streamed to the caller).
   */
  async acquire(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const previous = this.#tail;
    this.#tail = previous.then(() => held);
    await previous;
    return release;
  }
}
