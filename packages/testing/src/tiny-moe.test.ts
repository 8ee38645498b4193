import { getString, getUint, readGgufFromBuffer } from '@mm/gguf';
import { describe, expect, it } from 'vitest';
import { tinyLlamaVocab } from './tiny-llama.js';
import {
  resolveTinyMoeOptions,
  routeFirstToken,
  tinyMoeBuffer,
  tinyMoeFixtureName,
  tinyMoeSpec,
} from './tiny-moe.js';

describe('tiny MoE text model', () => {
  it('is a llama file in Mixtral form: expert keys, router and stacked experts, no dense FFN', () => {
    const buf = tinyMoeBuffer({ seed: 2 });
    const f = readGgufFromBuffer(buf);
    expect(getString(f, 'general.architecture')).toBe('llama');
    expect(getUint(f, 'llama.expert_count')).toBe(4);
    expect(getUint(f, 'llama.expert_used_count')).toBe(2);
    const shapes = new Map(f.tensors.map((t) => [t.name, t.shape.map(Number)]));
    for (const l of [0, 1]) {
      expect(shapes.get(`blk.${l}.ffn_gate_inp.weight`)).toEqual([64, 4]);
      expect(shapes.get(`blk.${l}.ffn_gate_exps.weight`)).toEqual([64, 64, 4]);
      expect(shapes.get(`blk.${l}.ffn_up_exps.weight`)).toEqual([64, 64, 4]);
      expect(shapes.get(`blk.${l}.ffn_down_exps.weight`)).toEqual([64, 64, 4]);
      for (const dense of ['gate', 'up', 'down'])
        expect(shapes.has(`blk.${l}.ffn_${dense}.weight`)).toBe(false);
    }
    // deterministic in the options
    expect(Buffer.from(tinyMoeBuffer({ seed: 2 })).equals(Buffer.from(buf))).toBe(true);
    expect(Buffer.from(tinyMoeBuffer({ seed: 3 })).equals(Buffer.from(buf))).toBe(false);
    expect(tinyMoeFixtureName({ seed: 2 })).toBe(
      'tiny-moe-s2-x4-k2-rs4-l2-e64-h4-kv4-ff64-c256-r10000-eps0.00001-f32-tiny-moe-s2.gguf',
    );
  });

  it('routes: block 0 sends different first tokens to different experts', () => {
    const spec = tinyMoeSpec({});
    const o = resolveTinyMoeOptions({});
    const nVocab = tinyLlamaVocab().tokens.length;
    const picks = Array.from({ length: nVocab }, (_, t) => routeFirstToken(spec, t));
    const sets = new Map<string, number>();
    const top1 = new Array<number>(o.nExpert).fill(0);
    for (const p of picks) {
      expect(p).toHaveLength(o.nExpertUsed);
      const key = [...p].sort().join(',');
      sets.set(key, (sets.get(key) ?? 0) + 1);
      top1[p[0]!]!++;
    }
    console.log(`top-1 expert counts over ${nVocab} tokens: ${top1.join(' ')}; top-2 sets`, sets);
    // every expert is somebody's first choice, and most of the 6 pairs occur
    for (const n of top1) expect(n).toBeGreaterThan(nVocab / (4 * o.nExpert));
    expect(sets.size).toBeGreaterThanOrEqual(5);
    // a different seed routes the same tokens differently
    const other = tinyMoeSpec({ seed: 1 });
    const moved = picks.filter((p, t) => routeFirstToken(other, t)[0] !== p[0]).length;
    expect(moved).toBeGreaterThan(nVocab / 2);
  });

  it('refuses impossible expert counts', () => {
    expect(() => resolveTinyMoeOptions({ nExpert: 4, nExpertUsed: 5 })).toThrow(/nExpertUsed/);
    expect(() => resolveTinyMoeOptions({ nExpert: 1 })).toThrow(/nExpert/);
  });
});
