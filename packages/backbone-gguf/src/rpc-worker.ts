import { createConnection, createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { ErrorCode, fromNative, MmError, MmInvalidArgumentError } from '@mm/errors';
import { callNative, loadAddon, type NativeRpcDevice } from '@mm/native';

export interface RpcWorkerOptions {
  /**
   * IPv4 address to listen on. Default 127.0.0.1 (this machine only). The protocol has no
   * authentication and no encryption: anyone who can reach the port can run computations on the
   * worker and read or overwrite its memory, so listen on another address only inside a trusted
   * network.
   */
  host?: string;
  /** TCP port (default 50052, llama.cpp's rpc-server default). */
  port?: number;
  /** CPU threads of the served CPU device (default: all hardware threads). */
  threads?: number;
  /** ggml device names to serve ("CPU", "CUDA0", ...); default: the CPU. */
  devices?: readonly string[];
  /** ggml's tensor cache folder: large tensors are kept there between clients (default none). */
  cacheDir?: string;
}

export interface RpcWorker {
  /** 'host:port', what clients pass in `rpc`. */
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;
  readonly devices: readonly NativeRpcDevice[];
  /**
   * Rejects with the typed error if the server stops (it only does when it could not start). The
   * server runs until the process ends: ggml's RPC server cannot be stopped from inside.
   */
  readonly stopped: Promise<never>;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

function portFree(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new MmError(
          ErrorCode.MM_IO,
          `cannot listen on ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.code === 'EADDRNOTAVAIL' ? 'not an address of this machine' : e.message}`,
          { cause: e },
        ),
      ),
    );
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve()));
  });
}

function tryConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host, port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * Serves this machine's devices to other processes as a ggml RPC worker (what llama.cpp's
 * `rpc-server` does, from the same vendored ggml): clients place model layers on it with `rpc`
 * load options or `--rpc`. Resolves once the worker accepts connections. One worker serves one
 * client process at a time. MM_INVALID_ARGUMENT for an unknown device (the message lists them),
 * MM_IO when the address cannot be listened on.
 */
export async function startRpcWorker(options: RpcWorkerOptions = {}): Promise<RpcWorker> {
  const host = options.host ?? '127.0.0.1';
  if (typeof host !== 'string' || !IPV4.test(host)) {
    throw new MmInvalidArgumentError('host', 'must be an IPv4 address (such as 127.0.0.1)');
  }
  const port = options.port ?? 50052;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new MmInvalidArgumentError('port', 'must be an integer in 1-65535');
  }
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) {
    throw new MmInvalidArgumentError('threads', 'must be an integer >= 1');
  }
  const devices = [...(options.devices ?? [])];
  if (!devices.every((d) => typeof d === 'string' && d.length > 0)) {
    throw new MmInvalidArgumentError('devices', 'must be an array of device names');
  }
  if (options.cacheDir !== undefined && typeof options.cacheDir !== 'string') {
    throw new MmInvalidArgumentError('cacheDir', 'must be a folder path');
  }
  const addon = loadAddon();
  const served = callNative(() => addon.rpcWorkerDevices(devices));
  await portFree(host, port);
  let fail: (e: Error) => void = () => {};
  let failed: Error | undefined;
  const stopped = new Promise<never>((_, reject) => {
    fail = reject;
  });
  stopped.catch(() => {}); // observed by whoever awaits it
  callNative(() =>
    addon.startRpcWorker(
      { host, port, threads, devices, ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}) },
      (e) => {
        failed = fromNative(e);
        fail(failed);
      },
    ),
  );
  // ggml binds on its thread: wait until it accepts (a connection it then drops) or gives up.
  const probeHost = host === '0.0.0.0' ? '127.0.0.1' : host;
  for (let i = 0; ; i++) {
    if (failed) throw failed;
    if (await tryConnect(probeHost, port)) break;
    if (i > 500) {
      throw new MmError(
        ErrorCode.MM_IO,
        `the ggml RPC worker did not start listening on ${host}:${port}`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return Object.freeze({ endpoint: `${host}:${port}`, host, port, devices: served, stopped });
}
