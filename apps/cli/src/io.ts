/** Where a command writes: the answer to stdout, everything else (logs, progress) to stderr. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

/** Exit codes of `mm` (documented in the README). */
export const ExitCode = {
  ok: 0,
  /** A typed mm error (bad file, bad model pair, ...). The message names the code. */
  error: 1,
  /** Wrong usage: unknown command or flag, missing argument. */
  usage: 2,
  /** Aborted by Ctrl-C. */
  aborted: 130,
} as const;

export class UsageError extends Error {}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}
