import { createHash } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { ErrorCode, MmError } from '@mm/errors';
import type { TrainStageResult } from './train-projector.js';

/** Where a run stands: enough to continue it bit for bit. */
export interface Checkpoint {
  /** Hash of the options and data the run was started with. */
  fingerprint: string;
  /** The next step to run: stage index and step within it. */
  stage: number;
  step: number;
  /** AdamW's step count in the current stage (bias correction). */
  optimizerSteps: number;
  results: TrainStageResult[];
  params: { name: string; ne: number[]; value: Float32Array; m: Float32Array; v: Float32Array }[];
}

const MAGIC = 'MMTRAIN1';

/** Writes a checkpoint (beside the path first, then renamed over it: never a torn file). */
export async function writeCheckpoint(path: string, ck: Checkpoint): Promise<void> {
  const { params, ...rest } = ck;
  const header = Buffer.from(
    JSON.stringify({ ...rest, params: params.map((p) => ({ name: p.name, ne: p.ne })) }),
    'utf8',
  );
  const pad = (4 - ((MAGIC.length + 4 + header.length) % 4)) % 4;
  const floats = params.flatMap((p) => [p.value, p.m, p.v]);
  const body = Buffer.alloc(
    MAGIC.length + 4 + header.length + pad + floats.reduce((n, f) => n + f.byteLength, 0),
  );
  body.write(MAGIC, 0, 'latin1');
  body.writeUInt32LE(header.length, MAGIC.length);
  header.copy(body, MAGIC.length + 4);
  let at = MAGIC.length + 4 + header.length + pad;
  for (const f of floats) {
    Buffer.from(f.buffer, f.byteOffset, f.byteLength).copy(body, at);
    at += f.byteLength;
  }
  await writeFile(`${path}.partial`, body);
  await rename(`${path}.partial`, path);
}

/** Reads a checkpoint; undefined when there is none; MM_INVALID_ARGUMENT when it is not one. */
export async function readCheckpoint(path: string): Promise<Checkpoint | undefined> {
  let b: Buffer;
  try {
    b = await readFile(path);
  } catch {
    return undefined;
  }
  const bad = (why: string): never => {
    throw new MmError(
      ErrorCode.MM_INVALID_ARGUMENT,
      `'${path}' is not a usable training checkpoint (${why})`,
    );
  };
  if (b.length < MAGIC.length + 4 || b.toString('latin1', 0, MAGIC.length) !== MAGIC)
    bad('bad magic');
  const len = b.readUInt32LE(MAGIC.length);
  if (MAGIC.length + 4 + len > b.length) bad('truncated header');
  let head: Omit<Checkpoint, 'params'> & { params: { name: string; ne: number[] }[] };
  try {
    head = JSON.parse(b.toString('utf8', MAGIC.length + 4, MAGIC.length + 4 + len));
  } catch {
    return bad('corrupt header');
  }
  if (!Array.isArray(head.params) || typeof head.fingerprint !== 'string') bad('corrupt header');
  const pad = (4 - ((MAGIC.length + 4 + len) % 4)) % 4;
  let at = MAGIC.length + 4 + len + pad;
  const take = (n: number) => {
    if (!Number.isSafeInteger(n) || n < 0 || at + n * 4 > b.length) bad('truncated data');
    const f = new Float32Array(b.buffer.slice(b.byteOffset + at, b.byteOffset + at + n * 4));
    at += n * 4;
    return f;
  };
  const params = head.params.map((p) => {
    const n = Array.isArray(p.ne) ? p.ne.reduce((a, x) => a * x, 1) : -1;
    return { name: p.name, ne: p.ne, value: take(n), m: take(n), v: take(n) };
  });
  if (at !== b.length) bad('trailing bytes');
  return { ...head, params };
}

/** A hash of what decides a run's result: files (by size, time and, for data, content) and options. */
export async function trainFingerprint(o: {
  model: string;
  mmproj: string;
  stages: { data: string }[];
  [k: string]: unknown;
}): Promise<string> {
  const h = createHash('sha256');
  for (const f of [o.model, o.mmproj]) {
    const s = await stat(f);
    h.update(`${f}\0${s.size}\0${s.mtimeMs}\0`);
  }
  for (const st of o.stages) h.update(await readFile(st.data));
  h.update(JSON.stringify(o));
  return h.digest('hex');
}
