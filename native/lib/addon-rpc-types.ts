// ---- ggml RPC worker: napi/addon_rpc.cpp ------------------------------------------------------

/** A device a worker serves. */
export interface NativeRpcDevice {
  /** ggml's name for it ("CPU", "CUDA0", ...). */
  name: string;
  description: string;
}

export interface NativeRpcWorkerOptions {
  /** IPv4 address to listen on. */
  host: string;
  port: number;
  /** CPU threads of a served CPU device. */
  threads: number;
  /** ggml device names; [] serves the CPU. */
  devices: string[];
  /** ggml's tensor cache folder (a worker then keeps large tensors between clients). */
  cacheDir?: string;
}

export interface NativeRpcAddon {
  /** The devices a worker with these names would serve; MM_INVALID_ARGUMENT lists the available ones. */
  rpcWorkerDevices(names: string[]): NativeRpcDevice[];
  /**
   * Starts ggml's RPC server on a native thread of its own. It serves until the process ends;
   * onExit is called (with an MmError-shaped error) only when it could not start.
   */
  startRpcWorker(options: NativeRpcWorkerOptions, onExit: (error: Error) => void): void;
}
