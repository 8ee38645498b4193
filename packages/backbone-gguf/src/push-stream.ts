import { MmInvalidArgumentError } from '@mm/errors';

/**
 * Values pushed by a running operation, consumed with `for await`, plus the operation's final
 * `result`. Iterating once is allowed. Once `watch`ed signal aborts, no queued value is handed
 * out any more (the iteration then ends with the operation's rejection, `signal.reason`).
 * The abort listener `watch` adds is removed as soon as the operation ends, however it ends, so
 * one long-lived signal can serve any number of streams.
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
  /** Signals passed to `watch`; each holds `#onAbort` until the operation ends. */
  readonly #watched: AbortSignal[] = [];
  readonly #onAbort = (): void => {
    this.#aborted = true;
    this.#wake?.();
  };

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
    if (signal === undefined || this.#watched.includes(signal)) return;
    this.#watched.push(signal);
    // Once the operation has ended nothing waits to be woken: the iteration reads
    // `signal.aborted` itself, so no listener is needed (and none would be removed).
    if (!this.#finished) signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Whether a watched signal has aborted (also one that aborts after the operation ended). */
  #isAborted(): boolean {
    return this.#aborted || this.#watched.some((s) => s.aborted);
  }

  /** Stops the operation early; `result` then resolves with what was made so far. */
  stop(): void {
    this.#stop?.();
  }

  #finish(error: unknown): void {
    this.#finished = true;
    this.#error = error;
    for (const s of this.#watched) s.removeEventListener('abort', this.#onAbort);
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.#iterating) throw new MmInvalidArgumentError('stream', 'can be iterated only once');
    this.#iterating = true;
    let completed = false;
    try {
      for (;;) {
        if (this.#isAborted()) {
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
