import {
  checkSignal,
  ErrorCode,
  MmDisposedError,
  MmError,
  MmInvalidArgumentError,
} from '@mm/errors';
import { readGguf } from '@mm/gguf';
import { callNative, loadAddon, type ModelInfo, type NativeModel, runNative } from '@mm/native';
import { Context, type ContextOptions } from './context.js';

export interface BackboneLoadOptions {
  /**
   * Layers to offload to the GPU (and to the `rpc` workers): a count, or 'all'. Default 0 (CPU);
   * 'all' when `rpc` is given.
   */
  gpuLayers?: number | 'all';
  /**
   * ggml RPC workers (`mm rpc-worker`, or llama.cpp's `rpc-server`) as 'host:port': the offloaded
   * layers are split across their devices (and this machine's GPUs) by free memory, as llama.cpp's
   * `--rpc` does. A worker serves one client process at a time; one that cannot be reached or does
   * not answer within 5 s is MM_RPC_CONNECT, one lost later fails calls with MM_RPC_LOST. The
   * protocol has no authentication: use workers on trusted networks only.
   */
  rpc?: readonly string[];
  /** Memory-map the file (default true). */
  mmap?: boolean;
  /** Load only the vocabulary (tokenizer, template), no weights. */
  vocabOnly?: boolean;
  /** Called with progress in [0, 1], at most ~20 times a second, and once with 1. */
  onProgress?: (progress: number) => void;
  signal?: AbortSignal;
}

export interface TokenizeOptions {
  /** Add BOS (and EOS where the model asks for it). Default: what the model's metadata says. */
  addBos?: boolean;
  /** Parse special-token text such as `<|im_start|>` into its token. Default false. */
  parseSpecial?: boolean;
}

export interface DetokenizeOptions {
  /** Drop BOS/EOS if the model adds them. Default false. */
  removeSpecial?: boolean;
  /** Render control tokens as their text. Default false. */
  unparseSpecial?: boolean;
}

export interface TokenAttributes {
  unknown: boolean;
  unused: boolean;
  normal: boolean;
  control: boolean;
  userDefined: boolean;
  byte: boolean;
  /** Generation stops at this token (EOS, EOT, ...). */
  endOfGeneration: boolean;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

export interface ChatTemplateOptions {
  /** End with the assistant turn's opening (default true). */
  addGenerationPrompt?: boolean;
  /** A Jinja template to use instead of the model's own. */
  template?: string;
  /**
   * Render with llama.cpp's Jinja engine (default true, as llama-server), or with false through
   * its built-in renderings of known templates, as llama-mtmd-cli and llama-cli do by default
   * (they differ for some templates, e.g. Qwen's default system message).
   */
  jinja?: boolean;
}

/**
 * Checks ggml RPC endpoints ('host:port', IPv4 address or host name, port 1-65535): the list, a copy,
 * or MM_INVALID_ARGUMENT. Nothing is connected to.
 */
export function checkRpcEndpoints(rpc: readonly string[] | undefined, name = 'rpc'): string[] {
  if (rpc === undefined) return [];
  if (!Array.isArray(rpc))
    throw new MmInvalidArgumentError(name, "must be an array of 'host:port'");
  const seen = new Set<string>();
  for (const e of rpc) {
    const m = typeof e === 'string' ? /^([^:\s]+):(\d{1,5})$/.exec(e) : null;
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      throw new MmInvalidArgumentError(
        name,
        `'${String(e)}' is not 'host:port' (an IPv4 address or host name, and a port in 1-65535)`,
      );
    }
    if (seen.has(e)) throw new MmInvalidArgumentError(name, `'${e}' is given twice`);
    seen.add(e);
  }
  return [...rpc];
}

function throttle(fn: (p: number) => void, hz: number): (p: number) => void {
  let last = 0;
  return (p) => {
    const now = performance.now();
    if (p >= 1 || now - last >= 1000 / hz) {
      last = now;
      try {
        fn(p);
      } catch {
        // a throwing progress callback must not break the load
      }
    }
  };
}

/**
 * A llama.cpp text model loaded from GGUF: tokenizer, chat template, and the factory of
 * contexts that decode tokens or embeddings. Dispose it when done (`dispose()` or `using`);
 * contexts already made keep working until they are disposed.
 */
let nativeOf: (backbone: Backbone) => NativeModel;

/**
 * @internal The native handle of a loaded Backbone, for the addon's other parts that run on the
 * same llama_model (libmtmd's fused media path in @mm/projectors). MM_DISPOSED after dispose().
 */
export function nativeModel(backbone: Backbone): NativeModel {
  if (!(backbone instanceof Backbone)) {
    throw new MmInvalidArgumentError('backbone', 'must be a Backbone from @mm/backbone-gguf');
  }
  return nativeOf(backbone);
}

export class Backbone {
  static {
    nativeOf = (b) => b.native;
  }
  readonly path: string;
  /** Facts read from the loaded model. */
  readonly info: Readonly<ModelInfo>;
  #native: NativeModel | undefined;
  readonly #lookups = new Map<string, number>();

  private constructor(path: string, native: NativeModel) {
    this.path = path;
    this.#native = native;
    this.info = Object.freeze(callNative(() => native.info()));
  }

  /**
   * Loads a text-model GGUF. The header is checked first (a corrupt or hostile file is
   * MM_GGUF_INVALID, an mmproj is MM_MODEL_LOAD); loading runs off the JS thread.
   */
  static async load(path: string, options: BackboneLoadOptions = {}): Promise<Backbone> {
    if (typeof path !== 'string' || path.length === 0) {
      throw new MmInvalidArgumentError('path', 'must be a non-empty string');
    }
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const rpc = checkRpcEndpoints(options.rpc);
    const gpuLayers =
      options.gpuLayers === 'all' ? -1 : (options.gpuLayers ?? (rpc.length > 0 ? -1 : 0));
    if (!Number.isInteger(gpuLayers) || gpuLayers < -1) {
      throw new MmInvalidArgumentError('gpuLayers', "must be a non-negative integer or 'all'");
    }
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
      throw new MmInvalidArgumentError('onProgress', 'must be a function');
    }
    // The TS reader checks the container (sizes, offsets, types) without reading weights.
    await readGguf(path, { llamaCpp: true, signal });
    // Progress comes through a thread-safe queue that may lag the result: after the load
    // settles, late events are dropped and a final 1 is reported if it was not yet.
    let settled = false;
    let last = -1;
    const report = options.onProgress ? throttle(options.onProgress, 20) : undefined;
    const onProgress = report
      ? (p: number) => {
          if (settled) return;
          last = p;
          report(p);
        }
      : undefined;
    const native = await runNative(
      () =>
        loadAddon().loadModel(
          path,
          {
            gpuLayers,
            mmap: options.mmap ?? true,
            vocabOnly: options.vocabOnly ?? false,
            ...(rpc.length > 0 ? { rpc } : {}),
          },
          onProgress,
        ),
      signal,
    ).finally(() => {
      settled = true;
    });
    if (signal?.aborted) {
      native.dispose();
      throw signal.reason;
    }
    if (report && last < 1) report(1);
    return new Backbone(path, native);
  }

  private get native(): NativeModel {
    if (!this.#native) throw new MmDisposedError('Backbone');
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  get nEmbd(): number {
    return this.info.nEmbd;
  }

  /**
   * Width of the embedding rows decode takes: nEmbd, wider for models fed extra features per row
   * (Qwen3-VL's deepstack: nEmbd × (1 + deepstack layers)).
   */
  get nEmbdInp(): number {
    return this.info.nEmbdInp ?? this.info.nEmbd;
  }

  get nVocab(): number {
    return this.info.nVocab;
  }

  get contextLength(): number {
    return this.info.nCtxTrain;
  }

  get bos(): number {
    return this.info.tokenBos;
  }

  get eos(): number {
    return this.info.tokenEos;
  }

  get chatTemplate(): string {
    return this.info.chatTemplate;
  }

  tokenize(text: string, options: TokenizeOptions = {}): Int32Array {
    if (typeof text !== 'string') throw new MmInvalidArgumentError('text', 'must be a string');
    const native = this.native;
    return callNative(() =>
      native.tokenize(text, options.addBos ?? this.info.addBos, options.parseSpecial ?? false),
    );
  }

  detokenize(tokens: ArrayLike<number>, options: DetokenizeOptions = {}): string {
    const native = this.native;
    return callNative(() =>
      native.detokenize(
        toInt32Array(tokens, 'tokens'),
        options.removeSpecial ?? false,
        options.unparseSpecial ?? false,
      ),
    );
  }

  /** The raw bytes of one token (a piece of a UTF-8 sequence for byte tokens). */
  tokenBytes(token: number, options: { special?: boolean } = {}): Uint8Array {
    const native = this.native;
    return callNative(() => native.tokenPiece(token, options.special ?? false));
  }

  /**
   * The token whose text (special tokens rendered) is exactly `text`, as libmtmd finds the
   * markers of tiled pictures; undefined when the vocabulary has none. Cached per text.
   */
  lookupToken(text: string): number | undefined {
    if (typeof text !== 'string') throw new MmInvalidArgumentError('text', 'must be a string');
    let t = this.#lookups.get(text);
    if (t === undefined) {
      const native = this.native;
      t = callNative(() => native.lookupToken(text));
      this.#lookups.set(text, t);
    }
    return t < 0 ? undefined : t;
  }

  /**
   * The input-embedding rows of these tokens, [n][nEmbd] (f32, converted from the file's
   * token_embd as llama.cpp converts it): what a talker sums to build a speech prompt.
   */
  tokenEmbeddings(tokens: ArrayLike<number>): Float32Array {
    const native = this.native;
    const ids = Int32Array.from(tokens as ArrayLike<number>);
    return callNative(() => native.tokenRows(ids));
  }

  tokenAttributes(token: number): TokenAttributes {
    const native = this.native;
    const { attr, eog } = callNative(() => native.tokenAttr(token));
    return {
      unknown: (attr & 1) !== 0,
      unused: (attr & 2) !== 0,
      normal: (attr & 4) !== 0,
      control: (attr & 8) !== 0,
      userDefined: (attr & 16) !== 0,
      byte: (attr & 32) !== 0,
      endOfGeneration: eog,
    };
  }

  isEndOfGeneration(token: number): boolean {
    return this.tokenAttributes(token).endOfGeneration;
  }

  /**
   * Renders messages with the model's own Jinja chat template (or `options.template`) through
   * llama.cpp's template engine. MM_CHAT_TEMPLATE when it cannot be rendered.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (!Array.isArray(messages)) throw new MmInvalidArgumentError('messages', 'must be an array');
    messages.forEach((m, i) => {
      if (typeof m?.role !== 'string' || typeof m?.content !== 'string') {
        throw new MmInvalidArgumentError(
          `messages[${i}]`,
          'must be { role: string, content: string }',
        );
      }
    });
    const native = this.native;
    if (!options.template && !this.info.chatTemplate) {
      throw new MmError(
        ErrorCode.MM_CHAT_TEMPLATE,
        `${this.path} has no chat template; pass options.template`,
      );
    }
    return callNative(() =>
      native.applyChatTemplate(
        messages.map((m) => ({ role: m.role, content: m.content })),
        options.addGenerationPrompt ?? true,
        options.template ?? '',
        options.jinja ?? true,
      ),
    );
  }

  /** GBNF for a JSON schema (llama.cpp's converter); MM_GRAMMAR when it cannot be converted. */
  jsonSchemaToGrammar(schema: object): string {
    return callNative(() => loadAddon().jsonSchemaToGrammar(JSON.stringify(schema)));
  }

  /** Makes a context (KV cache) on this model. */
  async createContext(options: ContextOptions = {}): Promise<Context> {
    const native = this.native;
    return Context.create(this, native, options);
  }

  /** Frees the model (contexts made from it keep it alive until they are disposed). A second call is MM_DISPOSED. */
  dispose(): void {
    const n = this.native;
    this.#native = undefined;
    n.dispose();
  }

  [Symbol.dispose](): void {
    if (!this.disposed) this.dispose();
  }
}

export function toInt32Array(tokens: ArrayLike<number>, name: string): Int32Array {
  if (tokens instanceof Int32Array) return tokens;
  if (tokens === null || typeof tokens !== 'object' || typeof tokens.length !== 'number') {
    throw new MmInvalidArgumentError(name, 'must be an Int32Array or an array of token ids');
  }
  const out = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (typeof t !== 'number' || !Number.isInteger(t)) {
      throw new MmInvalidArgumentError(`${name}[${i}]`, 'must be an integer token id');
    }
    out[i] = t;
  }
  return out;
}
