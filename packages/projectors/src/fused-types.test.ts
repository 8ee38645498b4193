import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { projectorTypes, SUPPORTED_PROJECTOR_FAMILIES } from './index.js';

// The fused path's list of projector types is mm's own (native/src/projectors/fused_media.cpp). It
// must be exactly what the vendored libmtmd sets up for pictures (mtmd.cpp's init_vision, the names
// of clip-impl.h's PROJECTOR_TYPE_NAMES), less the two types whose layout depends on the rest of the
// prompt: a llama.cpp bump that adds or drops a vision type fails here until the list follows.

const mtmd = join(repoRoot(), 'native', 'vendor', 'llama.cpp', 'tools', 'mtmd');

function libmtmdVisionTypes(): string[] {
  const impl = readFileSync(join(mtmd, 'clip-impl.h'), 'utf8');
  const names = new Map<string, string>();
  for (const m of impl.matchAll(/\{\s*(PROJECTOR_TYPE_[A-Z0-9_]+),\s*"([^"]+)"\s*\}/g)) {
    names.set(m[1] as string, m[2] as string);
  }
  const src = readFileSync(join(mtmd, 'mtmd.cpp'), 'utf8');
  const body = src.slice(src.indexOf('void init_vision()'), src.indexOf('void init_audio()'));
  const enums = new Set([...body.matchAll(/case (PROJECTOR_TYPE_[A-Z0-9_]+):/g)].map((m) => m[1]));
  const out: string[] = [];
  for (const e of enums) {
    const n = names.get(e as string);
    if (n !== undefined) out.push(n); // mlp_norm has no name of its own: files say mlp
  }
  // the legacy omni name, read as qwen2.5vl_merger for pictures (clip.cpp)
  if (names.has('PROJECTOR_TYPE_QWEN25O')) out.push(names.get('PROJECTOR_TYPE_QWEN25O') as string);
  return out;
}

/** The audio types mtmd.cpp's init_audio sets up, by name (qwen2.5o is read as qwen2a for audio). */
function libmtmdAudioTypes(): string[] {
  const impl = readFileSync(join(mtmd, 'clip-impl.h'), 'utf8');
  const names = new Map<string, string>();
  for (const m of impl.matchAll(/\{\s*(PROJECTOR_TYPE_[A-Z0-9_]+),\s*"([^"]+)"\s*\}/g)) {
    names.set(m[1] as string, m[2] as string);
  }
  const src = readFileSync(join(mtmd, 'mtmd.cpp'), 'utf8');
  const start = src.indexOf('void init_audio()');
  const body = src.slice(start, src.indexOf('audio_preproc->initialize()', start));
  return [...body.matchAll(/case (PROJECTOR_TYPE_[A-Z0-9_]+):/g)].map(
    (m) => names.get(m[1] as string) as string,
  );
}

describe('the fused projector types', () => {
  it("for audio are libmtmd's audio types but the speaker encoders of speech generation", () => {
    const audio = libmtmdAudioTypes();
    expect(audio.length).toBeGreaterThan(10);
    expect(audio).toContain('qwen2.5o');
    const { fusedAudio } = projectorTypes();
    expect([...fusedAudio].sort()).toEqual(
      audio.filter((t) => t !== 'qwen3tts_spkenc' && t !== 'pockettts_spkenc').sort(),
    );
    for (const t of ['ultravox', 'qwen2a', 'voxtral', 'qwen3a', 'musicflamingo', 'glma']) {
      expect(fusedAudio).toContain(t);
    }
  });

  it("are libmtmd's vision types but deepseek4v and hunyuanvl", () => {
    const vision = libmtmdVisionTypes();
    expect(vision.length).toBeGreaterThan(30);
    const { fused, own } = projectorTypes();
    expect([...fused].sort()).toEqual(
      vision.filter((t) => t !== 'deepseek4v' && t !== 'hunyuanvl').sort(),
    );
    expect(new Set(fused).size).toBe(fused.length);
    for (const t of ['pixtral', 'internvl', 'qwen3vl_merger']) expect(fused).toContain(t);
    // the own families are the projectors' registry
    for (const f of SUPPORTED_PROJECTOR_FAMILIES) expect(own).toContain(f);
  });
});
