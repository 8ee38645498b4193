import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTinyShapesDataset } from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { readTrainData } from './train-data.js';

const dir = mkdtempSync(join(tmpdir(), 'mm-train-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readTrainData (LLaVA-style JSONL)', () => {
  it('reads a generated tiny-shapes file whole', async () => {
    const { jsonl, records } = await writeTinyShapesDataset(dir, {
      count: 12,
      seed: 9,
      kind: 'it',
    });
    const { samples, problems } = await readTrainData(jsonl);
    expect(problems).toEqual([]);
    expect(samples.length).toBe(12);
    expect(samples[3]).toEqual({
      line: 4,
      image: join(dir, records[3]!.image),
      turns: [
        {
          question: records[3]!.conversations[0]!.value.replace('<image>\n', ''),
          answer: records[3]!.conversations[1]!.value,
        },
      ],
    });
  });

  it('reports each bad line with its number and keeps the rest', async () => {
    const { records } = await writeTinyShapesDataset(dir, { count: 3, seed: 10, kind: 'pt' });
    const good = records[0]!;
    const lines = [
      JSON.stringify(good),
      '{not json',
      JSON.stringify({ ...good, image: 'nowhere.png' }),
      JSON.stringify({
        ...good,
        conversations: [{ from: 'human', value: 'no marker' }, good.conversations[1]],
      }),
      JSON.stringify({
        ...good,
        conversations: [good.conversations[0], { from: 'gpt', value: '  ' }],
      }),
      JSON.stringify({ image: good.image }),
      '',
      JSON.stringify({
        ...good,
        conversations: [{ from: 'human', value: '<image><image>x' }, good.conversations[1]],
      }),
      JSON.stringify(records[1]),
      JSON.stringify({
        ...good,
        conversations: [good.conversations[0], { from: 'gpt', value: 'word '.repeat(300) }],
      }),
    ];
    const path = join(dir, 'mixed.jsonl');
    writeFileSync(path, lines.join('\n'));
    const { samples, problems } = await readTrainData(path, {
      maxTokens: 200,
      countTokens: (t) => t.split(/\s+/).filter(Boolean).length,
    });
    expect(samples.map((s) => s.line)).toEqual([1, 9]);
    expect(problems.map((p) => [p.line, p.kind])).toEqual([
      [2, 'bad_json'],
      [3, 'missing_image'],
      [4, 'no_marker'],
      [5, 'empty_answer'],
      [6, 'bad_record'],
      [8, 'several_markers'],
      [10, 'answer_too_long'],
    ]);
    expect(problems[1]!.message).toMatch(/^line 3: the picture 'nowhere.png' does not exist/);
  });

  it('a file that cannot be read is MM_FILE_NOT_FOUND', async () => {
    await expect(readTrainData(join(dir, 'absent.jsonl'))).rejects.toMatchObject({
      code: 'MM_FILE_NOT_FOUND',
    });
    await expect(readTrainData('')).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
  });
});
