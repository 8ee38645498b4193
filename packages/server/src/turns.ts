/**
 * One waiter per turn of the event loop, first come first served.
 *
 * Taking a request in is milliseconds of JS on the event loop: its picture's base64 checked and
 * decoded, the pixels hashed, the prompt templated and tokenized (a 336x336 PNG: ~3 ms). Requests
 * come in bursts: eight streamed answers that end in the same decode step bring eight new
 * requests in the same poll of the sockets, and their intakes would run back to back, with no
 * timer or socket write between them (at the realistic shape that was a 20-40 ms stall of the
 * event loop). `nextTurn()` hands waiters out one per turn (a chain of `setImmediate`s: one set
 * while immediates run waits for the next turn, after its timers and I/O).
 */
const waiting: Array<() => void> = [];
let pumping = false;

function pump(): void {
  waiting.shift()?.();
  if (waiting.length > 0) setImmediate(pump);
  else pumping = false;
}

/** Resolves on a later turn of the event loop than any earlier caller's. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => {
    waiting.push(resolve);
    if (!pumping) {
      pumping = true;
      setImmediate(pump);
    }
  });
}
