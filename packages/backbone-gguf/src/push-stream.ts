import { MmInvalidArgumentError } from '@mm/errors';

/**
 * Values pushed by a running operation, consumed with `for await`, plus the operation's final
 * `result`. Iterating once is allowed. Once `watch`ed signal aborts, no queued value is handed
 * out any more (the iteration then ends with the operation's rejection, `signal.reason`).
 * Breaking out of the loop calls `stop()` and waits for the operation to end, so whatever it
 * holds (a context) is free when the loop exits.
 */
export class PushStream<T, R> implements AsyncIterable<T> {
  /** Resolves when the operation ends; rejects like the iteration does. */
  readonly result: Promise<R>;
  readonly #queue: T[] = [];
  #wake: (() => void) | undefined;
  #finished = false;
  #aborted = false;
  #error: unknown;
  #iterating = false;
  #stop: (() => void) | undefined;

  /** @internal */
  constructor(
    run: (stream: PushStream<T, R>) => Promise<R>,
    mapError: (e: unknown) => unknown = (e) => e,
  ) {
    this.result = run(this).then(
      (r) => {
        this.#finish(undefined);
        return r;
      },
      (e) => {
        const err = mapError(e) ?? new Error('the operation failed');
        this.#finish(err);
        throw err;
      },
    );
    // Iterating callers see errors through the iterator; don't report them twice.
    this.result.catch(() => undefined);
  }

  /** @internal */
  push(value: T): void {
    this.#queue.push(value);
    this.#wake?.();
  }

  /** @internal what breaking out of the loop (or `stop()`) does. */
  onStop(fn: () => void): void {
    this.#stop = fn;
  }

  /** @internal */
  watch(signal: AbortSignal | undefined): void {
    signal?.addEventListener(
      'abort',
      () => {
        this.#aborted = true;
        this.#wake?.();
      },
      { once: true },
    );
  }

  /** Stops the operation early; `result` then resolves with what was made so far. */
  stop(): void {
    this.#stop?.();
  }

  #finish(error: unknown): void {
    this.#finished = true;
    this.#error = error;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.#iterating) throw new MmInvalidArgumentError('stream', 'can be iterated only once');
    this.#iterating = true;
    let completed = false;
    try {
      for (;;) {
        if (this.#aborted) {
          completed = true;
          await this.result;
          return;
        }
        if (this.#queue.length > 0) {
          yield this.#queue.shift() as T;
          continue;
        }
        if (this.#finished) {
          completed = true;
          if (this.#error !== undefined) throw this.#error;
          return;
        }
        await new Promise<void>((r) => {
          this.#wake = r;
        });
        this.#wake = undefined;
      }
    } finally {
      if (!completed) {
        this.stop();
        await this.result.catch(() => undefined);
      }
    }
  }
}
