import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import {
  type ChatOptions,
  type ChatResult,
  type ChatStream,
  type Message,
  MultimodalModel,
} from '@mm/core';
import { ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { BatchedEngine } from './batched-engine.js';
import { EventLoopLagMonitor } from './event-loop-lag.js';
import { HttpError, toHttpError } from './http-error.js';
import { useTurnTakingJsonParser } from './json-body.js';
import { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
import {
  type ChatRequest,
  finishReason,
  parseChatRequest,
  timings,
  usage,
} from './openai-shapes.js';
import { fetchRemoteMedia } from './remote-image.js';
import { SlotPool } from './slots.js';
import { type SpeechServeOptions, SpeechService, sendSpeech } from './speech.js';
import { parseSpeechRequest } from './speech-shapes.js';
import { loadStaticFiles, type StaticFile } from './static-files.js';
import { nextTurn } from './turns.js';

/** What answers one request at a time: a MultimodalModel (or anything shaped like one). */
export interface ChatSlot {
  chat(messages: readonly Message[], options?: ChatOptions): Promise<ChatResult>;
  stream(messages: readonly Message[], options?: ChatOptions): ChatStream;
  dispose(): void;
}

export interface ServeOptions {
  /** Text-model GGUF. */
  model: string;
  /** Render chat templates with llama.cpp's Jinja engine (default true, as llama-server). */
  jinja?: boolean;
  /** mmproj GGUF (media encoder + projector). */
  mmproj?: string;
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** Requests answered at the same time (default 1); more wait in a bounded queue. */
  parallel?: number;
  /**
   * 'batch' (default): one context, continuous batching (one decode per step for all running
   * requests). 'slots': one MultimodalModel per slot, each decoding on its own.
   */
  engine?: 'batch' | 'slots';
  /** When set, /v1/* needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** CPU threads in all (default: all hardware threads); each slot gets threads / parallel. */
  threads?: number;
  /** KV cache positions per slot (default: the model's, at most 4096). */
  contextSize?: number;
  /**
   * ggml RPC workers ('host:port', `mm rpc-worker`) that take the chat model's layers; the encoder
   * stays here. A lost worker fails that model's requests (MM_RPC_LOST); the server keeps running.
   */
  rpc?: readonly string[];
  /**
   * A ggml RPC worker ('host:port') whose first device runs the mmproj's encoders and projectors
   * (mm's own graphs), as `mmprojRpc` of `@mm/core`.
   */
  mmprojRpc?: string;
  /** The id clients send as `model` (default: the model file's name without `.gguf`). */
  modelId?: string;
  limits?: Partial<ServerLimits>;
  /** Folder served at `/` (default: the web demo of @mm/demo); false serves nothing. */
  staticDir?: string | false;
  /** Fastify's logger (default off). */
  logger?: boolean;
  /** A text-to-speech model beside the chat model: `POST /v1/audio/speech`. */
  speech?: SpeechServeOptions;
}

export interface MmServer {
  readonly app: FastifyInstance;
  /** `http://host:port`. */
  readonly url: string;
  readonly modelId: string;
  readonly pool: SlotPool<ChatSlot>;
  /** The speech model, when one is served. */
  readonly speech: SpeechService | undefined;
  /** Stops accepting requests, waits for those in flight, frees the models. */
  close(): Promise<void>;
}

/** The web demo's folder inside @mm/demo, or undefined when it is not installed. */
export function defaultStaticDir(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve('@mm/demo/package.json');
    const dir = join(dirname(pkg), 'web');
    return existsSync(join(dir, 'index.html')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Loads `parallel` slots of the model and starts listening. */
export async function startServer(options: ServeOptions): Promise<MmServer> {
  const parallel = options.parallel ?? 1;
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64)
    throw new MmInvalidArgumentError('parallel', 'must be an integer in [1, 64]');
  const threads = options.threads ?? (await import('node:os')).availableParallelism();
  const components = {
    model: options.model,
    mmproj: options.mmproj,
    maxImagePixels: options.limits?.maxImagePixels ?? DEFAULT_LIMITS.maxImagePixels,
    maxAudioSeconds: options.limits?.maxAudioSeconds ?? DEFAULT_LIMITS.maxAudioSeconds,
    jinja: options.jinja ?? true,
    rpc: options.rpc,
    mmprojRpc: options.mmprojRpc,
  };
  const speech =
    options.speech &&
    (await SpeechService.load(options.speech, {
      threads,
      maxQueue: options.limits?.maxQueue ?? DEFAULT_LIMITS.maxQueue,
    }));
  try {
    return await startChat(options, parallel, threads, components, speech);
  } catch (e) {
    speech?.dispose();
    throw e;
  }
}

async function startChat(
  options: ServeOptions,
  parallel: number,
  threads: number,
  components: Parameters<typeof MultimodalModel.load>[0],
  speech: SpeechService | undefined,
): Promise<MmServer> {
  if ((options.engine ?? 'batch') === 'batch') {
    const engine = await BatchedEngine.load({
      ...components,
      parallel,
      threads,
      contextSize: options.contextSize,
    });
    try {
      return await listen(engine.slots(), options, () => engine.stats(), speech);
    } catch (e) {
      engine.dispose();
      throw e;
    }
  }
  const perSlot = Math.max(1, Math.floor(threads / parallel));
  const slots: ChatSlot[] = [];
  try {
    for (let i = 0; i < parallel; i++) {
      slots.push(
        await MultimodalModel.load({
          ...components,
          threads: perSlot,
          contextSize: options.contextSize,
        }),
      );
    }
  } catch (e) {
    for (const s of slots) s.dispose();
    throw e;
  }
  try {
    return await listen(slots, options, undefined, speech);
  } catch (e) {
    for (const s of slots) s.dispose();
    throw e;
  }
}

/**
 * Serves already-loaded slots and speech model (the server owns them from here on and disposes
 * them on close).
 */
export async function listen(
  slots: readonly ChatSlot[],
  options: ServeOptions,
  batchStats?: () => object,
  speech?: SpeechService,
): Promise<MmServer> {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const modelId = options.modelId ?? basename(options.model).replace(/\.gguf$/i, '');
  const pool = new SlotPool<ChatSlot>(slots, limits.maxQueue);
  const staticDir = options.staticDir === undefined ? defaultStaticDir() : options.staticDir;
  const files: Map<string, StaticFile> = staticDir ? loadStaticFiles(staticDir) : new Map();
  const created = Math.floor(Date.now() / 1000);
  const counters = { served: 0, failed: 0, aborted: 0 };
  if (speech && speech.modelId === modelId) {
    throw new MmInvalidArgumentError(
      'speech.modelId',
      `'${modelId}' is already the chat model's id: give the speech model another`,
    );
  }

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.bodyLimit,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });
  // a burst of JSON bodies is parsed one per turn of the event loop (see json-body.ts)
  useTurnTakingJsonParser(app);

  app.setErrorHandler((error: unknown, _request, reply) => {
    const e = error as { statusCode?: number; code?: string; message?: string };
    const h =
      error instanceof HttpError || MmError.isInstance(error)
        ? toHttpError(error)
        : typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500
          ? new HttpError(e.statusCode, e.message ?? 'bad request', {
              code: e.code?.replace(/^FST_ERR_/, '').toLowerCase() ?? null,
            })
          : toHttpError(error);
    counters.failed++;
    reply.status(h.status).type('application/json').send(h.toJSON());
  });
  app.setNotFoundHandler((request, reply) => {
    const h = new HttpError(404, `no route ${request.method} ${request.url}`, {
      type: 'not_found_error',
      code: 'not_found',
    });
    reply.status(404).send(h.toJSON());
  });

  if (options.apiKey !== undefined) {
    // Compared as hashes in constant time: the reply time says nothing about the key.
    const digest = (s: string) => createHash('sha256').update(s).digest();
    const expected = digest(`Bearer ${options.apiKey}`);
    app.addHook('onRequest', async (request) => {
      if (!request.url.startsWith('/v1/')) return;
      const given = request.headers.authorization;
      if (given === undefined || !timingSafeEqual(digest(given), expected)) {
        throw new HttpError(401, 'a valid API key is needed: Authorization: Bearer <key>', {
          type: 'authentication_error',
          code: 'invalid_api_key',
        });
      }
    });
  }

  // Event-loop lag since the start or the last `/health?reset_lag=1` (which reads, then resets).
  const lag = new EventLoopLagMonitor();
  app.addHook('onClose', async () => lag.dispose());
  app.get<{ Querystring: { reset_lag?: string } }>('/health', async (request) => ({
    status: 'ok',
    model: modelId,
    slots: { total: pool.size, in_use: pool.inUse },
    queue: { depth: pool.queued, max: pool.maxQueue },
    requests: { served: counters.served, failed: counters.failed, aborted: counters.aborted },
    event_loop: lag.take(request.query.reset_lag === '1'),
    ...(batchStats && { batch: batchStats() }),
    ...(speech && { speech: speech.info() }),
  }));

  const modelObject = { id: modelId, object: 'model', created, owned_by: 'mm' };
  const models = [modelObject];
  if (speech) models.push({ id: speech.modelId, object: 'model', created, owned_by: 'mm' });
  app.get('/v1/models', async () => ({ object: 'list', data: models }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    const m = models.find((o) => o.id === request.params.id);
    if (!m) throw unknownModel(request.params.id);
    return m;
  });

  /**
   * Runs a request's work under one signal, aborted when the client goes away or the request
   * takes longer than the server allows; counts and maps what it throws.
   */
  const guarded = async (
    request: FastifyRequest,
    reply: FastifyReply,
    work: (signal: AbortSignal) => Promise<void>,
  ): Promise<FastifyReply> => {
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort(new MmError(ErrorCode.MM_ABORTED, 'the request timed out'));
    }, limits.requestTimeoutMs);
    const onClose = () => {
      if (!reply.raw.writableFinished)
        ac.abort(new MmError(ErrorCode.MM_ABORTED, 'the client went away'));
    };
    reply.raw.on('close', onClose);
    try {
      await work(ac.signal);
      counters.served++;
    } catch (e) {
      const h = toHttpError(e, timedOut);
      if (h.status === 500) request.log.error(e);
      if (h.status === 499) counters.aborted++;
      if (!reply.sent) throw h;
      counters.failed++;
    } finally {
      clearTimeout(timer);
      reply.raw.off('close', onClose);
    }
    return reply;
  };

  app.post('/v1/chat/completions', async (request, reply) => {
    const arrived = performance.now();
    // its body was parsed on a turn of the event loop of its own (json-body.ts); checking and
    // decoding its pictures' base64 takes the next
    await nextTurn();
    const req = parseChatRequest(request.body, limits);
    // the parsed request holds what it needs (pictures as bytes): the JSON body, with its large
    // base64 strings, is let go now rather than at the end of a long answer
    (request as { body: unknown }).body = undefined;
    if (req.model !== modelId) {
      if (speech && req.model === speech.modelId) {
        throw wrongKind(req.model, 'a speech model: use POST /v1/audio/speech');
      }
      throw unknownModel(req.model);
    }
    return guarded(request, reply, async (signal) => {
      await fetchRemoteMedia(req, limits, signal);
      const slot = await pool.acquire(signal);
      const queuedMs = performance.now() - arrived;
      try {
        const options = { ...req.options, signal };
        if (req.stream) {
          await streamAnswer(slot.stream(req.messages, options), req, reply, modelId, queuedMs);
        } else {
          const r = await slot.chat(req.messages, options);
          reply.send({
            id: `chatcmpl-${randomUUID()}`,
            object: 'chat.completion',
            created: Math.floor(Date.now() / 1000),
            model: modelId,
            choices: [
              {
                index: 0,
                message: { role: 'assistant', content: r.text, refusal: null },
                logprobs: null,
                finish_reason: finishReason(r.stats),
              },
            ],
            usage: usage(r.stats),
            timings: timings(r.stats, queuedMs),
          });
        }
      } finally {
        pool.release(slot);
      }
    });
  });

  app.post('/v1/audio/speech', async (request, reply) => {
    if (!speech) {
      throw new HttpError(404, 'this server has no speech model (mm serve --tts-model)', {
        type: 'not_found_error',
        code: 'no_speech_model',
      });
    }
    const req = parseSpeechRequest(request.body, speech.limits, speech.voices);
    if (req.model !== speech.modelId) {
      if (req.model === modelId) throw wrongKind(req.model, 'not a speech model');
      throw unknownModel(req.model);
    }
    return guarded(request, reply, async (signal) => {
      const model = await speech.pool.acquire(signal);
      try {
        await sendSpeech(speech, model, req, reply, signal);
      } finally {
        speech.pool.release(model);
      }
    });
  });

  if (files.size > 0) {
    app.get('/*', async (request, reply) => {
      const path = request.url.split('?')[0] ?? '/';
      const file = files.get(path);
      if (!file) {
        throw new HttpError(404, `no file ${path}`, { type: 'not_found_error', code: 'not_found' });
      }
      reply.type(file.type).header('cache-control', 'no-cache').send(file.body);
    });
  }

  await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8080 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 8080);
  const host = options.host ?? '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let closed = false;
  return {
    app,
    url,
    modelId,
    pool,
    speech,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      for (const s of slots) s.dispose();
      speech?.dispose();
    },
  };
}

function wrongKind(id: string, what: string): HttpError {
  return new HttpError(400, `the model '${id}' is ${what}`, {
    code: 'model_not_supported',
    param: 'model',
  });
}

function unknownModel(id: string): HttpError {
  return new HttpError(404, `the model '${id}' does not exist on this server`, {
    type: 'invalid_request_error',
    code: 'model_not_found',
    param: 'model',
  });
}

/**
 * SSE in OpenAI's chunk format. Nothing is sent before the first token (or the end): an error
 * while reading media or decoding the prompt is still a plain 4xx JSON reply.
 */
async function streamAnswer(
  stream: ChatStream,
  req: ChatRequest,
  reply: FastifyReply,
  modelId: string,
  queuedMs: number,
): Promise<void> {
  const it = stream[Symbol.asyncIterator]();
  let next: IteratorResult<string>;
  try {
    next = await it.next();
  } catch (e) {
    await it.return?.();
    throw e;
  }
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const raw = reply.hijack().raw;
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  const send = (choices: unknown[], extra: Record<string, unknown> = {}) => {
    if (raw.destroyed) return;
    const chunk = {
      id,
      object: 'chat.completion.chunk',
      created,
      model: modelId,
      choices,
      ...extra,
    };
    raw.write(`data: ${JSON.stringify(chunk)}\n\n`);
  };
  const delta = (d: Record<string, unknown>, finish: string | null = null) => ({
    index: 0,
    delta: d,
    logprobs: null,
    finish_reason: finish,
  });
  try {
    send([delta({ role: 'assistant', content: '' })]);
    while (!next.done) {
      send([delta({ content: next.value })]);
      next = await it.next();
    }
    const r = await stream.result;
    send([delta({}, finishReason(r.stats))], { timings: timings(r.stats, queuedMs) });
    if (req.includeUsage) send([], { usage: usage(r.stats) });
    if (!raw.destroyed) raw.end('data: [DONE]\n\n');
  } catch (e) {
    await it.return?.();
    const h = toHttpError(e);
    if (!raw.destroyed) raw.end(`data: ${JSON.stringify(h.toJSON())}\n\n`);
    throw e;
  }
}
