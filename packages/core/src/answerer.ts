import {
  type Context,
  type ScheduleResult,
  Scheduler,
  type SchedulerStats,
  TextStream,
} from '@mm/backbone-gguf';
import { checkSignal, ErrorCode, MmError } from '@mm/errors';
import {
  type ChatOptions,
  type ChatResult,
  type ChatStats,
  chatStats,
  samplingOf,
} from './chat.js';
import type { ModelComponents } from './components.js';
import { type PromptChunk, preparePrompt, reusablePrefix, scheduleItems } from './media.js';
import type { Message } from './messages.js';

/** What `pickSequence` weighs of each sequence. */
export interface SequenceChoice {
  busy: boolean;
  /** When a request last took it (0: never). */
  lastUsed: number;
  /** Prompt positions its cells would give the request. */
  keep: number;
}

/**
 * The free sequence a request takes: the one whose cells give it the most positions; on a tie the
 * one with the most busy neighbours (ids one below and one above), then the least recently used.
 * Each sequence has its own KV stream, and llama.cpp puts rows of several sequences in one ubatch
 * only when their ids are consecutive: every gap between busy sequences costs each decode step one
 * more pass over the weights. Least recently used alone scatters the busy ones (2.2 to 2.5 runs of
 * consecutive ids per step at 3 to 6 of 8 sequences busy, answers of random length); neighbours
 * first keep them in one run. -1 when every sequence is busy.
 */
export function pickSequence(seqs: readonly SequenceChoice[]): number {
  const neighbours = (i: number) =>
    (seqs[i - 1]?.busy === true ? 1 : 0) + (seqs[i + 1]?.busy === true ? 1 : 0);
  let best = -1;
  for (const [i, s] of seqs.entries()) {
    if (s.busy) continue;
    const b = seqs[best];
    if (
      b === undefined ||
      s.keep > b.keep ||
      (s.keep === b.keep &&
        (neighbours(i) > neighbours(best) ||
          (neighbours(i) === neighbours(best) && s.lastUsed < b.lastUsed)))
    ) {
      best = i;
    }
  }
  return best;
}

/** What a sequence's KV cells hold, as prompt chunks (the last text grows with the answer). */
interface Sequence {
  held: PromptChunk[];
  busy: boolean;
  lastUsed: number;
}

/**
 * Answers conversations on the sequences of one context through the native scheduler
 * (@mm/backbone-gguf's `Scheduler`): the prompt is prepared here (media decoded, encoded and
 * projected, or taken from the embedding cache), then the scheduler thread decodes it and
 * generates, batched with whatever else runs on the context. MultimodalModel uses one sequence;
 * @mm/server's engine one per parallel request.
 *
 * A request takes the free sequence whose cells share the longest prefix with its prompt (whole
 * media spans and equal text tokens, as llama-server picks a slot by similarity; on a tie the one
 * beside busy sequences, then the least recently used: `pickSequence`) and decodes only the rest.
 */
export class Answerer {
  readonly components: ModelComponents;
  readonly context: Context;
  readonly scheduler: Scheduler;
  /** KV cells each sequence holds. */
  readonly perSequence: number;
  readonly #seqs: Sequence[];
  #clock = 0;
  #reused = 0;

  constructor(components: ModelComponents, context: Context, perSequence: number) {
    this.components = components;
    this.context = context;
    this.perSequence = perSequence;
    this.scheduler = Scheduler.create(context);
    this.#seqs = Array.from({ length: context.sequences }, () => ({
      held: [],
      busy: false,
      lastUsed: 0,
    }));
  }

  /** The scheduler's counters, and the prompt positions served from cells another request left. */
  stats(): SchedulerStats & { reusedPositions: number } {
    return { ...this.scheduler.stats(), reusedPositions: this.#reused };
  }

  /** Forgets what the free sequences hold (their cells are dropped by the next request on them). */
  forget(): void {
    for (const s of this.#seqs) if (!s.busy) s.held = [];
  }

  #pick(chunks: readonly PromptChunk[], positions: number): { seq: number; keep: number } {
    const choices = this.#seqs.map((s) => ({
      busy: s.busy,
      lastUsed: s.lastUsed,
      keep: s.busy ? 0 : Math.min(reusablePrefix(s.held, chunks), positions - 1),
    }));
    const seq = pickSequence(choices);
    if (seq < 0) throw new MmError(ErrorCode.MM_INTERNAL, 'every sequence is busy');
    return { seq, keep: (choices[seq] as SequenceChoice).keep };
  }

  /** Answers `messages`; `onText` gets the deltas. The caller bounds how many run at once. */
  async respond(
    messages: readonly Message[],
    options: ChatOptions,
    onText?: (t: string) => void,
  ): Promise<ChatResult> {
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const start = performance.now();
    const { chunks, ...prompt } = await preparePrompt(
      this.components,
      messages,
      { positions: this.perSequence, what: this.#seqs.length > 1 ? 'a sequence' : 'the context' },
      signal,
    );
    signal?.throwIfAborted();
    const { seq, keep } = this.#pick(chunks, prompt.positions);
    const s = this.#seqs[seq] as Sequence;
    s.busy = true;
    s.lastUsed = ++this.#clock;
    s.held = [];
    const text = new TextStream(options.stop ?? []);
    let generated = 0;
    let firstToken = 0;
    const submitted = performance.now();
    try {
      const backbone = this.components.backbone;
      // a span of M-RoPE rows takes fewer positions than cells: the limit counts cells
      const limit = this.perSequence - (prompt.cells - prompt.positions);
      const req = this.scheduler.submit({
        seq,
        keep,
        items: scheduleItems(backbone, chunks, keep),
        maxTokens: Math.max(1, Math.min(options.maxTokens ?? this.perSequence, this.perSequence)),
        limit,
        sampling: samplingOf(options),
        onToken: (tok) => {
          if (text.done) return;
          if (firstToken === 0) firstToken = performance.now();
          generated++;
          const t = text.push(backbone.tokenBytes(tok));
          if (t) onText?.(t);
          if (text.done) req.cancel();
        },
      });
      const onAbort = () => req.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      let r: ScheduleResult;
      try {
        r = await req.result;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
      this.#reused += keep;
      if (r.prefilled) {
        const last = chunks[chunks.length - 1] as { kind: 'text'; tokens: Int32Array };
        const tail = new Int32Array(last.tokens.length + r.decoded);
        tail.set(last.tokens);
        tail.set(r.tokens.subarray(0, r.decoded), last.tokens.length);
        s.held = [...chunks.slice(0, -1), { kind: 'text', tokens: tail }];
      }
      if (r.stopReason === 'cancel' && !text.done) {
        throw signal?.reason ?? new MmError(ErrorCode.MM_ABORTED, 'the answer was cancelled');
      }
      const rest = text.end();
      if (rest) onText?.(rest);
      const reason: ChatStats['stopReason'] =
        text.done || r.stopReason === 'cancel' ? 'stop' : r.stopReason;
      return {
        text: text.text,
        stats: chatStats(
          prompt,
          { start, prefill: submitted + r.queueMs, firstToken, end: performance.now() },
          { cachedTokens: keep, generatedTokens: generated, stopReason: reason },
          // the tokens after a stop string may have been generated too: the timer's share of them
          {
            prefillMs: r.prefillMs,
            decodeMs:
              r.tokens.length > 1 ? (r.decodeMs * (generated - 1)) / (r.tokens.length - 1) : 0,
            // the decode steps' compute, for the tokens after the first that were kept
            decodeComputeMs:
              r.decoded > 0 ? (r.decodeComputeMs * Math.max(0, generated - 1)) / r.decoded : 0,
          },
        ),
      };
    } finally {
      s.busy = false;
    }
  }

  /** Stops the scheduler (running answers reject with MM_DISPOSED); the context stays. */
  dispose(): void {
    this.scheduler.dispose();
  }
}
