import { synthWavFixture, tinyAudioPair, tinyGemma3Pair } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';

// mm bench --audio on the tiny audio fixtures: values only (BENCH.md: tests never check times).
// Needs the test-only reference tool mm-bench-audio: pretest builds it.

const num = String.raw`(\d+(?:\.\d+)?(?:e[-+]?\d+)?)`;

async function benchAudio(model: string, mmproj: string, audio: string, extra: string[] = []) {
  return runMain([
    'bench',
    '--audio',
    audio,
    '-m',
    model,
    '--mmproj',
    mmproj,
    '-t',
    '1',
    '-r',
    '2',
    ...extra,
  ]);
}

describe('mm bench --audio', () => {
  // 45 s: two 30 s chunks on both sides
  for (const projector of ['qwen2a', 'ultravox'] as const) {
    it(`${projector}: mel and encode ratios, embeddings within 1e-3 of libmtmd's`, async () => {
      const p = await tinyAudioPair({ projector });
      const r = await benchAudio(p.llm, p.mmproj, await synthWavFixture(45));
      expect(r.err).not.toContain('error');
      expect(r.code).toBe(0);
      expect(r.out).toContain(`(${projector}: width 80, 5 heads, 2 blocks, 80 mel bins)`);
      expect(r.out).toContain(
        `45.00 s at 16000 Hz: 2 chunks, ${2 * p.tokensPerChunk} x ${p.nEmbd} out`,
      );
      for (const line of [/^mel\s/m, /^encoder \+ projector\s/m, /^ {2}encoder\s/m]) {
        expect(r.out).toMatch(line);
      }
      for (const what of [
        'encode ratio (mm / libmtmd, encoder + projector)',
        'mel ratio (mm / libmtmd)',
      ]) {
        const m = new RegExp(
          `^${what.replace(/[()+/]/g, '\\$&')}: ${num}; per interleaved pair ${num} \\(${num}–${num}\\)$`,
          'm',
        ).exec(r.out);
        expect(m, what).not.toBeNull();
        const [ratio, pair, lo, hi] = m!.slice(1).map(Number) as [number, number, number, number];
        for (const x of [ratio, pair, lo, hi]) expect(Number.isFinite(x) && x > 0, what).toBe(true);
        expect(lo).toBeLessThanOrEqual(pair);
        expect(pair).toBeLessThanOrEqual(hi);
      }
      const d = new RegExp(
        `^embeddings vs libmtmd: max \\|diff\\| ${num}, cosine ${num} \\(2 chunks, ${2 * p.tokensPerChunk} rows\\)$`,
        'm',
      ).exec(r.out);
      expect(d).not.toBeNull();
      expect(Number(d![1])).toBeLessThanOrEqual(1e-3);
      expect(Number(d![2])).toBeGreaterThanOrEqual(0.9999);
    }, 300_000);
  }

  it('--json: the same figures, one chunk for 5 s', async () => {
    const p = await tinyAudioPair({ projector: 'qwen2a' });
    const r = await benchAudio(p.llm, p.mmproj, await synthWavFixture(5), ['--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.projectorType).toBe('qwen2a');
    expect(j.chunks).toBe(1);
    expect(j.rows).toBe(p.tokensPerChunk);
    expect(j.nEmbd).toBe(p.nEmbd);
    expect(j.reps).toBe(2);
    expect(j.threads).toBe(1);
    expect(j.maxAbsDiff).toBeLessThanOrEqual(1e-3);
    expect(j.cosine).toBeGreaterThanOrEqual(0.9999);
    for (const s of [
      j.ours.melMs,
      j.ours.encoderProjectorMs,
      j.ref.melMs,
      j.ref.encoderProjectorMs,
    ]) {
      expect(s.min).toBeLessThanOrEqual(s.median);
      expect(s.median).toBeLessThanOrEqual(s.max);
    }
    for (const x of [j.ratio, j.melRatio]) expect(Number.isFinite(x) && x > 0).toBe(true);
  }, 120_000);

  it('an mmproj without an audio encoder is refused with the reason', async () => {
    const p = await tinyGemma3Pair();
    const r = await benchAudio(p.llm, p.mmproj, await synthWavFixture(5));
    expect(r.code).toBe(1);
    expect(r.err).toContain('MM_MODALITY_UNSUPPORTED');
    expect(r.err).toContain('mm bench --audio needs an mmproj with an audio encoder');
    expect(r.err).not.toContain('internal error');
  }, 60_000);

  it('an audio type on the fused path (voxtral) is refused with the reason', async () => {
    const p = await tinyAudioPair({ projector: 'voxtral' });
    const r = await benchAudio(p.llm, p.mmproj, await synthWavFixture(5));
    expect(r.code).toBe(1);
    expect(r.err).toContain('MM_UNSUPPORTED_FAMILY');
    expect(r.err).toContain("audio projector type 'voxtral' has no own graph in mm");
    expect(r.err).toContain("libmtmd's own graphs (the fused path)");
    expect(r.err).not.toContain('internal error');
  }, 60_000);

  it('a file that is not audio is a typed error from the bench tool', async () => {
    const p = await tinyAudioPair({ projector: 'ultravox' });
    const r = await benchAudio(p.llm, p.mmproj, p.llm);
    expect(r.code).toBe(1);
    expect(r.err).toContain('MM_AUDIO_DECODE');
    expect(r.err).not.toContain('internal error');
  }, 60_000);

  it('usage: -m and --mmproj are needed, --image is another bench, --reps >= 1', async () => {
    const wav = await synthWavFixture(5);
    const p = await tinyAudioPair({ projector: 'ultravox' });
    const noModel = await runMain(['bench', '--audio', wav]);
    expect(noModel.code).toBe(2);
    expect(noModel.err).toContain('--audio needs -m <model.gguf> and --mmproj');
    const both = await runMain([
      'bench',
      '--audio',
      wav,
      '--image',
      wav,
      '-m',
      p.llm,
      '--mmproj',
      p.mmproj,
    ]);
    expect(both.code).toBe(2);
    expect(both.err).toContain('--audio and --image are separate benches');
    const reps = await benchAudio(p.llm, p.mmproj, wav, ['-r', '0']);
    expect(reps.code).toBe(2);
    const help = await runMain(['bench', '--help']);
    expect(help.out).toContain('mm bench --audio <file> -m <model.gguf> --mmproj <mmproj.gguf>');
  }, 60_000);
});
