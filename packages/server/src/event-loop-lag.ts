import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

/** How late the event loop ran its timers, in ms, over one window (GET /health `event_loop`). */
export interface EventLoopLag {
  /** The sampling timer's period (lag below it is measured to within about this). */
  resolution_ms: number;
  /** When the window started (ms since the epoch). */
  since: number;
  /** Timer ticks in the window. */
  samples: number;
  mean_ms: number;
  p99_ms: number;
  max_ms: number;
}

/**
 * Event-loop lag from `perf_hooks.monitorEventLoopDelay`: a timer ticks every `resolutionMs`, and
 * the histogram records the time between ticks, so the lag is that minus the period (BENCH.md:
 * "the largest gap minus 1 ms"). Runs for the server's life; `take(reset)` reads a window and
 * optionally starts the next one.
 */
export class EventLoopLagMonitor {
  readonly #resolutionMs: number;
  readonly #histogram: IntervalHistogram;
  #since = Date.now();

  constructor(resolutionMs = 1) {
    this.#resolutionMs = resolutionMs;
    this.#histogram = monitorEventLoopDelay({ resolution: resolutionMs });
    this.#histogram.enable();
  }

  /** The figures since the last reset (or the start); with `reset`, a new window starts now. */
  take(reset = false): EventLoopLag {
    const h = this.#histogram;
    const samples = h.count;
    const lag = (ns: number) =>
      samples === 0 ? 0 : round(Math.max(0, ns / 1e6 - this.#resolutionMs));
    const out: EventLoopLag = {
      resolution_ms: this.#resolutionMs,
      since: this.#since,
      samples,
      mean_ms: lag(h.mean),
      p99_ms: lag(h.percentile(99)),
      max_ms: lag(h.max),
    };
    if (reset) {
      h.reset();
      this.#since = Date.now();
    }
    return out;
  }

  dispose(): void {
    this.#histogram.disable();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
