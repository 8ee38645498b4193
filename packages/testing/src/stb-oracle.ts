import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './paths.js';

/**
 * Runner of the test-only image oracle (`native/tools/ref-stb-decode.cpp`, built by
 * `node native/scripts/build.mjs --oracle`): plain stb_image from the vendored llama.cpp, compiled
 * as libmtmd compiles it, decoding to RGB as libmtmd does.
 */

export type StbDecodeResult =
  | {
      ok: true;
      width: number;
      height: number;
      /** Channels stored in the file (stb's count). */
      channels: number;
      /** RGB, width * height * 3 bytes. */
      data: Uint8Array;
    }
  | { ok: false; reason: string };

/** Path of the oracle binary, or undefined when it has not been built. */
export function stbOracleBinary(): string | undefined {
  const p = join(repoRoot(), 'native', 'build', 'bin', 'mm-ref-stb-decode');
  return existsSync(p) ? p : undefined;
}

/** Decodes each image (bytes) with plain stb_image in one process; results in input order. */
export async function runStbDecode(images: Uint8Array[]): Promise<StbDecodeResult[]> {
  const bin = stbOracleBinary();
  if (bin === undefined) {
    throw new Error(
      'the stb_image oracle is not built: run `node native/scripts/build.mjs --oracle`',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'mm-stb-'));
  try {
    const files = images.map((bytes, i) => {
      const p = join(dir, `in${i}.img`);
      writeFileSync(p, bytes);
      return p;
    });
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        bin,
        ['--out-dir', dir, ...files],
        { maxBuffer: 64 * 1024 * 1024 },
        (err, out, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(out)),
      );
    });
    const rows = JSON.parse(stdout) as (
      | { ok: true; width: number; height: number; channels: number }
      | { ok: false; reason: string }
    )[];
    return rows.map((r, i) => {
      if (!r.ok) return r;
      return { ...r, data: new Uint8Array(readFileSync(join(dir, `img${i}.rgb`))) };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
