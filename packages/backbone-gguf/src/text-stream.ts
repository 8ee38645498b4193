/**
 * Turns token pieces (raw bytes, possibly cutting a UTF-8 sequence in two) into text deltas,
 * and finds stop sequences. Text that could be the start of a stop sequence is held back until
 * it is known not to be one, so a stop string never leaks into the output.
 */
export class TextStream {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  private held = '';
  private emitted = '';
  private stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  /** Whether a stop sequence was found. */
  get done(): boolean {
    return this.stopped;
  }

  /** All text given out so far. */
  get text(): string {
    return this.emitted;
  }

  /** Feeds one token's bytes; returns the text that can be given out now. */
  push(bytes: Uint8Array): string {
    if (this.stopped) return '';
    return this.release(this.held + this.decoder.decode(bytes, { stream: true }), false);
  }

  /** Flushes what is held (end of generation); returns the rest of the text. */
  end(): string {
    if (this.stopped) return '';
    return this.release(this.held + this.decoder.decode(), true);
  }

  private release(text: string, final: boolean): string {
    let cut = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.held = '';
      return this.give(text.slice(0, cut));
    }
    if (final || this.stops.length === 0) {
      this.held = '';
      return this.give(text);
    }
    // Hold back the longest suffix that is a prefix of some stop sequence.
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
        if (text.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.held = text.slice(text.length - keep);
    return this.give(text.slice(0, text.length - keep));
  }

  private give(t: string): string {
    this.emitted += t;
    return t;
  }
}
