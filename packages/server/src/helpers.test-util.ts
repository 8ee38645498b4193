import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type MmServer, type ServeOptions, startServer } from './server.js';

/** The tiny-shapes copy that ships in @mm/demo (in the repo: a fresh clone has it). */
const dir = join(
  dirname(createRequire(import.meta.url).resolve('@mm/demo/package.json')),
  'models',
  'tiny-shapes',
);

export const tiny = {
  llm: join(dir, 'tiny-shapes-llm.gguf'),
  mmproj: join(dir, 'mmproj-tiny-shapes.gguf'),
  samples: join(dir, 'samples'),
};

export interface AnswerItem {
  image: string;
  questions: { kind: string; question: string; answer: string }[];
}

export function answers(): AnswerItem[] {
  return JSON.parse(readFileSync(join(tiny.samples, 'answers.json'), 'utf8')).items;
}

/** The expected answer to `question` about sample `index`. */
export function answerOf(index: number, question: string): string | undefined {
  return answers()[index]?.questions.find((q) => q.question === question)?.answer;
}

/** A server of tiny-shapes on loopback (a free port, 2 threads); `options` add to or override that. */
export function startTiny(options: Partial<ServeOptions> = {}): Promise<MmServer> {
  return startServer({ model: tiny.llm, mmproj: tiny.mmproj, port: 0, threads: 2, ...options });
}

export function dataUrl(image: string): string {
  return `data:image/png;base64,${readFileSync(join(tiny.samples, image)).toString('base64')}`;
}

/** An OpenAI user message: the image first, then the question (as tiny-shapes was trained). */
export function ask(url: string, question: string) {
  return [
    {
      role: 'user' as const,
      content: [
        { type: 'image_url' as const, image_url: { url } },
        { type: 'text' as const, text: question },
      ],
    },
  ];
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  // biome-ignore lint/suspicious/noExplicitAny: a test reads what it asserts on
): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed };
}

export interface Health {
  status: string;
  slots: { total: number; in_use: number };
  queue: { depth: number; max: number };
  requests: { served: number; failed: number; aborted: number };
  batch?: { steps: number; tokens: number; max_batch: number };
}

export async function health(base: string): Promise<Health> {
  return (await (await fetch(`${base}/health`)).json()) as Health;
}
