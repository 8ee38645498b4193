import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GgufMetadata, gv, writeGguf } from '@mm/gguf';
import { projectorTypes } from '@mm/projectors';
import {
  LONG_TAIL_FAMILIES,
  LONG_TAIL_TEST_IMAGE_SIZES,
  type LongTailFamily,
  tinyLongTailMmprojSpec,
  tinyLongTailPair,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';
import { expectRunsLikeMtmdCli } from './run-families.test-util.js';

// The long tail through the CLI: projector types mm has no own graph for run libmtmd's fused
// encoder + projector inside mm.node. `mm run` prints llama-mtmd-cli's greedy answer (without the
// whitespace the first token may start with: mm run's answer-only stdout), `mm inspect` says which
// path a file takes, `mm info` lists the fused types.

const lines = (out: string) => out.split('\n');
const row = (out: string, key: string) =>
  lines(out)
    .find((l) => l.startsWith(`${key.padEnd(20)} `))
    ?.slice(21);

describe.each(LONG_TAIL_FAMILIES)(
  'mm run with a %s model (libmtmd fused)',
  (family: LongTailFamily) => {
    it('prints only the answer, equal to llama-mtmd-cli --temp 0, on 2 picture sizes', {
      timeout: 600_000,
    }, async () => {
      const files = await tinyLongTailPair({ family });
      await expectRunsLikeMtmdCli(files, LONG_TAIL_TEST_IMAGE_SIZES[family], {
        label: family,
        stderr: /prompt tokens .* image\), encode \(libmtmd, fused\) .* tok\/s/,
        binaryTimeout: 300_000,
      });
    });

    it('mm inspect says the file takes the fused path', { timeout: 60_000 }, async () => {
      const { mmproj } = await tinyLongTailPair({ family });
      const r = await runMain(['inspect', mmproj]);
      expect(r.code, r.err).toBe(0);
      expect(row(r.out, 'projector')).toBe(family);
      expect(row(r.out, 'mm')).toBe(
        `libmtmd (fused): ${family} (libmtmd's encoder + projector, one stage)`,
      );
      expect(row(r.out, 'layout')).toMatch(/^libmtmd's/);
      const j = JSON.parse((await runMain(['inspect', '--json', mmproj])).out);
      expect(j.mm).toEqual({
        path: 'libmtmd (fused)',
        family,
        inputSize: 64,
        patchSize: 8,
        visionWidth: 32,
        visionBlocks: 2,
        projectionDim: 64,
      });
    });
  },
);

describe('mm inspect and mm info on the long tail', () => {
  it('a broken long-tail file is refused with the reason; an unknown type lists both paths', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mm-inspect-lt-'));
    const broken = tinyLongTailMmprojSpec({ family: 'qwen3vl_merger' });
    broken.tensors = (broken.tensors ?? []).filter((t) => t.name !== 'v.blk.1.attn_qkv.bias');
    await writeGguf(join(dir, 'broken.gguf'), broken);
    const b = JSON.parse((await runMain(['inspect', '--json', join(dir, 'broken.gguf')])).out);
    expect(b.mm).toMatchObject({
      path: 'refused',
      error: { code: 'MM_GGUF_INVALID', message: expect.stringContaining('v.blk.1.attn_qkv.bias') },
    });
    const unknown = tinyLongTailMmprojSpec({ family: 'pixtral' });
    (unknown.metadata as GgufMetadata).set('clip.projector_type', gv.string('tardis_merger'));
    await writeGguf(join(dir, 'unknown.gguf'), unknown);
    const u = await runMain(['inspect', join(dir, 'unknown.gguf')]);
    expect(u.code).toBe(0);
    expect(row(u.out, 'mm')).toMatch(
      /^not supported by mm: MM_UNSUPPORTED_FAMILY: .*'tardis_merger'.*own graphs: .*; through libmtmd \(fused\): .*pixtral/,
    );
  });

  it('mm info lists the fused types apart from the own families', async () => {
    const r = await runMain(['info']);
    expect(r.code).toBe(0);
    const at = lines(r.out).findIndex((l) => l.startsWith('fused (libmtmd)'));
    expect(at).toBeGreaterThan(0);
    const after = lines(r.out).slice(at + 1);
    const end = after.findIndex((l) => !l.startsWith('  '));
    const listed = after
      .slice(0, end < 0 ? after.length : end)
      .join(' ')
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    const j = JSON.parse((await runMain(['info', '--json'])).out);
    expect(listed).toEqual(j.fusedProjectorTypes);
    for (const f of LONG_TAIL_FAMILIES) expect(j.fusedProjectorTypes).toContain(f);
    const own = j.visionFamilies.map((f: { family: string }) => f.family);
    for (const t of j.fusedProjectorTypes) {
      expect(own).not.toContain(t);
      expect(projectorTypes().fused).toContain(t);
    }
  });
});
