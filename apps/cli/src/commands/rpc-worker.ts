import { startRpcWorker } from '@mm/backbone-gguf';
import { type CliIo, UsageError } from '../io.js';

export const rpcWorkerHelp = `mm rpc-worker [--host <ipv4>] [--port <n>] [--threads <n>] [--device <name>]...

Serves this machine's CPU (or the devices named) as a ggml RPC worker, as llama.cpp's rpc-server
does: other processes place a model's layers on it with --rpc host:port (mm run, chat, serve) or
the \`rpc\` load option. A worker serves one client process at a time. Runs until Ctrl-C / SIGTERM.

WARNING: the RPC protocol has no authentication and no encryption. Anyone who can reach the port
can run computations on this machine and read or overwrite the worker's memory. The worker
listens on 127.0.0.1 (this machine only) unless --host says otherwise; never expose it to an
untrusted network (use an SSH tunnel or a private network between your machines).

  -H, --host <ipv4>         address to listen on (default 127.0.0.1; 0.0.0.0: every interface)
  -p, --port <n>            TCP port (default 50052)
  -t, --threads <n>         CPU threads (default: all)
  -d, --device <name>       a ggml device to serve (repeatable; default CPU); \`mm info\` lists them
  -c, --cache <dir>         keep large tensors in this folder between clients (ggml's cache)`;

export const rpcWorkerFlags = {
  host: { type: 'string', short: 'H' },
  port: { type: 'string', short: 'p' },
  threads: { type: 'string', short: 't' },
  device: { type: 'string', short: 'd', multiple: true },
  cache: { type: 'string', short: 'c' },
} as const;

function intFlag(values: Record<string, unknown>, name: string, min: number, max: number) {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got '${String(v)}'`);
  return n;
}

/** Serves until the process is stopped; returns only when the worker cannot start. */
export async function runRpcWorker(io: CliIo, values: Record<string, unknown>): Promise<number> {
  const host = typeof values.host === 'string' ? values.host : '127.0.0.1';
  const worker = await startRpcWorker({
    host: host === 'localhost' ? '127.0.0.1' : host,
    port: intFlag(values, 'port', 1, 65535),
    threads: intFlag(values, 'threads', 1, 1024),
    devices: (values.device as string[] | undefined) ?? [],
    ...(typeof values.cache === 'string' && { cacheDir: values.cache }),
  });
  // Listening before the banner: whoever reads it may signal at once.
  const stop = new Promise<number>((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve(0));
  });
  const devices = worker.devices.map((d) => `${d.name} (${d.description})`).join(', ');
  io.err(
    `mm rpc-worker: listening on ${worker.endpoint}, serving ${devices}\n` +
      `  clients: --rpc ${worker.endpoint}  (one client process at a time)\n` +
      `  WARNING: the RPC protocol is unauthenticated and unencrypted: do not expose ${worker.endpoint} to untrusted networks\n`,
  );
  const code = await Promise.race([stop, worker.stopped]);
  // ggml's server cannot be stopped from inside (its thread keeps the process alive): exit.
  io.err('mm rpc-worker: stopped\n');
  process.exit(code);
}
