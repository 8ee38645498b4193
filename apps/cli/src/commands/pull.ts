import { pullModel } from '@mm/core';
import { type CliIo, ExitCode, formatBytes, UsageError } from '../io.js';
import { downloadBar, interruptSignal } from '../model-options.js';

export const pullHelp = `mm pull <user>/<repo>[:quant] [options]

Downloads a GGUF text model and its mmproj from the Hugging Face Hub into the cache, choosing
files as llama.cpp's -hf does: the quant asked for (case-insensitive), else Q4_K_M, else Q8_0,
else the first model GGUF; the mmproj closest to it. Prints their paths on stdout.
  --no-mmproj               the text model only
  --offline                 resolve from the cache only, never the network (also MM_OFFLINE=1)
  --json                    print the result as JSON
  -q, --quiet               no progress on stderr

Files go to <cache>/hub/<user>/<repo>/, cache = MM_CACHE_DIR, $XDG_CACHE_HOME/mm or ~/.cache/mm.
Each is written to <name>.part, resumed after an interruption, checked against the sha256 the
hub recorded, then renamed. Cached files are used without the network when it fails.
Environment: HF_TOKEN (sent as a Bearer token), MM_HF_ENDPOINT or HF_ENDPOINT (another hub).
The same download runs for -hf on mm run, mm chat and mm serve.`;

export const pullFlags = {
  'no-mmproj': { type: 'boolean' },
  offline: { type: 'boolean' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

type Values = { [K in keyof typeof pullFlags]?: boolean };

export async function runPull(io: CliIo, ref: string, values: Values): Promise<number> {
  if (!ref.includes('/'))
    throw new UsageError(`'${ref}' is not <user>/<repo>[:quant]\n\n${pullHelp}`);
  const json = values.json === true;
  const quiet = values.quiet === true || json;
  const interrupt = interruptSignal();
  try {
    const started = performance.now();
    const r = await pullModel({
      repo: ref,
      mmproj: values['no-mmproj'] !== true,
      ...(values.offline === true && { offline: true }),
      signal: interrupt.signal,
      onProgress: downloadBar(io, !quiet),
    });
    if (r.networkError && !quiet) {
      io.err(`mm: ${r.networkError.code}: ${r.networkError.message}; using the cached files\n`);
    }
    if (json) {
      const { networkError, ...rest } = r;
      const out = networkError
        ? { ...rest, networkError: { code: networkError.code, message: networkError.message } }
        : rest;
      io.out(`${JSON.stringify(out, null, 2)}\n`);
      return ExitCode.ok;
    }
    for (const [i, part] of r.modelParts.entries()) {
      io.out(`${i === 0 ? 'model ' : '      '} ${part}\n`);
    }
    if (r.mmproj) io.out(`mmproj ${r.mmproj}\n`);
    if (!quiet) {
      const got = r.files.filter((f) => f.downloaded);
      const bytes = got.reduce((n, f) => n + f.size, 0);
      const seconds = (performance.now() - started) / 1000;
      io.err(
        `mm pull: ${r.repo}${r.tag ? `:${r.tag}` : ''} at ${r.commit.slice(0, 12)}: ` +
          (got.length === 0
            ? 'all files cached\n'
            : `downloaded ${got.length} file${got.length === 1 ? '' : 's'} (${formatBytes(bytes)}) in ${seconds.toFixed(1)} s\n`),
      );
    }
    return ExitCode.ok;
  } finally {
    interrupt.dispose();
  }
}
