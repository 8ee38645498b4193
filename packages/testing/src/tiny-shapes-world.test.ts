import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  drawTinyShape,
  Prng,
  QUESTIONS,
  tinyShapesAnswer,
  tinyShapesItems,
  writeTinyShapesDataset,
} from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'mm-tiny-shapes-world-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tiny-shapes world', () => {
  it("answers as MODEL.md's table words them", () => {
    const s = { shape: 'circle', color: 'orange', position: 'center', size: 'small' } as const;
    expect(tinyShapesAnswer(s, 'describe')).toBe('an orange circle in the center.');
    expect(tinyShapesAnswer({ ...s, color: 'red', position: 'left' }, 'describe')).toBe(
      'a red circle on the left.',
    );
    expect(tinyShapesAnswer(s, 'color')).toBe('orange.');
    expect(tinyShapesAnswer(s, 'shape')).toBe('circle.');
    expect(tinyShapesAnswer({ ...s, position: 'top' }, 'position')).toBe('at the top.');
    expect(Object.values(QUESTIONS).flat().length).toBe(13);
  });

  it('draws the shape where the scene says, in its colour', () => {
    const img = drawTinyShape(
      { shape: 'square', color: 'blue', position: 'left', size: 'large' },
      new Prng(1),
    );
    const at = (x: number, y: number) => [
      ...img.data.subarray((y * 48 + x) * 3, (y * 48 + x) * 3 + 3),
    ];
    const [r, g, b] = at(12, 24);
    expect(b).toBeGreaterThan(180);
    expect(r).toBeLessThan(70);
    expect(g).toBeLessThan(110);
    // the right half is background (light)
    expect(Math.min(...at(40, 24))).toBeGreaterThan(200);
    const star = { shape: 'star', color: 'blue', position: 'left', size: 'large' };
    // @ts-expect-error: not a shape of the world
    expect(() => drawTinyShape(star, new Prng(1))).toThrow(/scene.shape/);
  });

  it('writes LLaVA-style PT and IT files', async () => {
    const pt = await writeTinyShapesDataset(dir, { count: 4, seed: 3, kind: 'pt' });
    const it2 = await writeTinyShapesDataset(dir, { count: 30, seed: 3, kind: 'it' });
    const lines = readFileSync(pt.jsonl, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toEqual(pt.records);
    const items = tinyShapesItems(4, 3);
    for (const [i, rec] of pt.records.entries()) {
      expect(rec.conversations[0]!.value).toBe('<image>\nDescribe the image.');
      expect(rec.conversations[1]!.value).toBe(tinyShapesAnswer(items[i]!.scene, 'describe'));
      // a PNG
      expect([...readFileSync(join(dir, rec.image)).subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);
    }
    const asked = new Set(it2.records.map((r) => r.conversations[0]!.value.split('\n')[1]));
    expect(asked.size).toBeGreaterThan(8);
  });
});
