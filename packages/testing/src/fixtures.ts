import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MmInvalidArgumentError } from '@mm/errors';
import { encodePng, syntheticImage } from './images.js';
import { resolveTinyLlamaOptions, type TinyLlamaOptions, writeTinyLlama } from './tiny-llama.js';

/**
 * Version of the fixture generators. Bump it whenever a generator's output changes, so that
 * cached files from the old version are not reused.
 */
export const FIXTURE_GENERATOR_VERSION = 1;

/** `$MM_FIXTURES_DIR`, else `<tmpdir>/mm-fixtures`, then `v<generator version>`. */
export function fixturesDir(): string {
  const base = process.env['MM_FIXTURES_DIR'] || join(tmpdir(), 'mm-fixtures');
  return join(base, `v${FIXTURE_GENERATOR_VERSION}`);
}

const inFlight = new Map<string, Promise<string>>();

/**
 * The path of a cached fixture `name`, made by `generate(path)` when it is not there yet. The
 * generator writes to a temporary name that is then renamed, so a half-written file is never
 * reused and parallel test workers can race safely.
 */
export async function fixturePath(
  name: string,
  generate: (path: string) => Promise<void>,
): Promise<string> {
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) {
    throw new MmInvalidArgumentError('name', `'${name}' is not a plain file name`);
  }
  const dir = fixturesDir();
  const path = join(dir, name);
  if (existsSync(path)) return path;
  const pending = inFlight.get(path);
  if (pending !== undefined) return pending;
  const made = (async () => {
    mkdirSync(dir, { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await generate(tmp);
      renameSync(tmp, path);
    } finally {
      rmSync(tmp, { force: true });
    }
    return path;
  })();
  inFlight.set(path, made);
  try {
    return await made;
  } finally {
    inFlight.delete(path);
  }
}

/** File name of a tiny llama fixture: every resolved option is part of it. */
export function tinyLlamaFixtureName(options: TinyLlamaOptions = {}): string {
  const o = resolveTinyLlamaOptions(options);
  const name = o.name.replace(/[^A-Za-z0-9_-]/g, '_');
  return (
    `tiny-llama-s${o.seed}-l${o.nLayers}-e${o.nEmbd}-h${o.nHead}-kv${o.nHeadKv}-ff${o.nFf}` +
    `-c${o.nCtx}-r${o.ropeFreqBase}-eps${o.rmsEps}-${o.weightType.toLowerCase()}-${name}.gguf`
  );
}

/** A cached tiny llama model with these options (see writeTinyLlama). */
export function tinyLlamaFixture(options: TinyLlamaOptions = {}): Promise<string> {
  return fixturePath(tinyLlamaFixtureName(options), (path) => writeTinyLlama(path, options));
}

/** A cached PNG of `syntheticImage(width, height, seed)`. */
export function syntheticPngFixture(width: number, height: number, seed = 0): Promise<string> {
  return fixturePath(`synthetic-${width}x${height}-s${seed}.png`, (path) =>
    writeFile(path, encodePng(syntheticImage(width, height, seed))),
  );
}
