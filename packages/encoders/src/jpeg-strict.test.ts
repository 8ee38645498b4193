import { MmError } from '@mm/errors';
import { encodeJpeg, type JpegOptions, runStbDecode, syntheticImage } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { Image } from './index.js';

/**
 * stb_image decodes a JPEG whose entropy-coded data is truncated, desynchronised or padded with
 * junk into a partly grey or garbled picture and reports success. mm checks every scan first and
 * refuses such files with MM_IMAGE_DECODE, without refusing valid ones.
 */

interface Segment {
  marker: number;
  /** Offset of the FF of the marker. */
  start: number;
  /** End of the segment; for a scan, the end of its entropy-coded data. */
  end: number;
  /** For a scan: where its entropy-coded data starts. */
  data?: number;
}

/** The marker segments of a JPEG, scans with their entropy-coded data. */
function segments(b: Uint8Array): Segment[] {
  const out: Segment[] = [];
  let i = 2;
  while (i + 1 < b.length) {
    const marker = b[i + 1] as number;
    if (marker === 0xd9) {
      out.push({ marker, start: i, end: i + 2 });
      break;
    }
    const len = ((b[i + 2] as number) << 8) | (b[i + 3] as number);
    if (marker !== 0xda) {
      out.push({ marker, start: i, end: i + 2 + len });
      i += 2 + len;
      continue;
    }
    const data = i + 2 + len;
    let j = data;
    while (!(b[j] === 0xff && b[j + 1] !== 0 && ((b[j + 1] as number) & 0xf8) !== 0xd0)) j++;
    out.push({ marker, start: i, end: j, data });
    i = j;
  }
  return out;
}

async function outcome(bytes: Uint8Array): Promise<string> {
  try {
    const img = await Image.fromBuffer(bytes);
    return `decoded ${img.width}x${img.height}`;
  } catch (e) {
    if (!MmError.isInstance(e)) throw e;
    return e.code;
  }
}

const picture = syntheticImage(24, 16, 11);
const variants: [string, JpegOptions][] = [
  ['baseline', {}],
  ['baseline 4:2:0', { subsampling: '420' }],
  ['progressive', { progressive: true }],
  ['progressive, successive approximation', { progressive: true, successiveApproximation: true }],
  ['baseline, restart interval 2', { restartInterval: 2 }],
  [
    'progressive, successive approximation, restart interval 1',
    { progressive: true, successiveApproximation: true, restartInterval: 1 },
  ],
];

describe('strict JPEG decoding', () => {
  it.each(variants)('a valid %s JPEG decodes, as stb decodes it', async (_name, options) => {
    const bytes = encodeJpeg(picture, options);
    const img = await Image.fromBuffer(bytes);
    const [ref] = await runStbDecode([bytes]);
    expect(ref?.ok).toBe(true);
    expect([img.width, img.height]).toEqual([24, 16]);
    if (ref?.ok) expect(Buffer.from(img.data).equals(Buffer.from(ref.data))).toBe(true);
  });

  it.each(variants)(
    '%s: every truncation of the entropy-coded data is refused',
    async (name, options) => {
      const bytes = encodeJpeg(picture, options);
      const cuts: Uint8Array[] = [];
      for (const s of segments(bytes).filter((g) => g.marker === 0xda)) {
        for (let at = s.data as number; at < s.end; at += 3) {
          cuts.push(bytes.subarray(0, at));
          // ... also when the end-of-image marker follows the cut, which stb decodes happily
          cuts.push(new Uint8Array([...bytes.subarray(0, at), 0xff, 0xd9]));
        }
      }
      const stb = await runStbDecode(cuts);
      const codes = new Set<string>();
      for (const cut of cuts) codes.add(await outcome(cut));
      const stbDecoded = stb.filter((r) => r.ok).length;
      console.log(`${name}: ${cuts.length} truncations, all refused; stb decodes ${stbDecoded}`);
      expect([...codes]).toEqual(['MM_IMAGE_DECODE']);
      expect(stbDecoded).toBeGreaterThan(cuts.length / 4);
    },
  );

  it.each(variants)(
    '%s: single bit flips in the scans are refused unless harmless to the structure',
    async (name, options) => {
      const bytes = encodeJpeg(picture, options);
      const flips: Uint8Array[] = [];
      for (const s of segments(bytes).filter((g) => g.marker === 0xda)) {
        // one bit of every byte (all eight positions over consecutive bytes)
        for (let at = s.data as number; at < s.end; at++) {
          for (const bit of [(at * 3) % 8]) {
            const f = new Uint8Array(bytes);
            f[at] = (f[at] as number) ^ (1 << bit);
            flips.push(f);
          }
        }
      }
      const stb = await runStbDecode(flips);
      let refused = 0;
      let refusedStbDecoded = 0;
      for (const [i, f] of flips.entries()) {
        const o = await outcome(f);
        if (o === 'MM_IMAGE_DECODE') {
          refused++;
          if (stb[i]?.ok) refusedStbDecoded++;
        } else {
          // what passes is a complete, well-formed scan structure (a flipped coefficient bit)
          expect(o).toBe('decoded 24x16');
        }
      }
      console.log(
        `${name}: ${flips.length} bit flips, ${refused} refused (${((100 * refused) / flips.length).toFixed(1)}%), ` +
          `${refusedStbDecoded} of them decoded by stb`,
      );
      // the flips that pass change a coefficient's value bits, which no structural check can see
      expect(refused / flips.length).toBeGreaterThan(0.7);
      expect(refusedStbDecoded).toBeGreaterThan(0);
    },
  );

  it('junk, missing or misordered markers and missing scans are refused', async () => {
    const base = encodeJpeg(picture);
    const rst = encodeJpeg(picture, { restartInterval: 1 });
    const prog = encodeJpeg(picture, { progressive: true });
    const scansOf = (b: Uint8Array) => segments(b).filter((g) => g.marker === 0xda);
    const eoi = base.length - 2;
    const rstAt: number[] = [];
    for (let i = 0; i + 1 < rst.length; i++) {
      if (rst[i] === 0xff && ((rst[i + 1] as number) & 0xf8) === 0xd0) rstAt.push(i);
    }
    expect(rstAt.length).toBeGreaterThan(3);
    const swapped = new Uint8Array(rst);
    swapped[(rstAt[0] as number) + 1] = 0xd1;
    swapped[(rstAt[1] as number) + 1] = 0xd0;
    const [dc, ...ac] = scansOf(prog);
    const cases: [string, Uint8Array][] = [
      [
        'bytes after the last block',
        new Uint8Array([...base.subarray(0, eoi), 0x12, 0x34, 0xff, 0xd9]),
      ],
      [
        'a missing restart marker',
        new Uint8Array([...rst.subarray(0, rstAt[1]), ...rst.subarray((rstAt[1] as number) + 2)]),
      ],
      ['restart markers out of order', swapped],
      [
        'a restart marker in a file without restarts',
        new Uint8Array([...base.subarray(0, eoi), 0xff, 0xd0, 0xff, 0xd3, 0xff, 0xd9]),
      ],
      [
        'an unknown marker between scans',
        new Uint8Array([
          ...prog.subarray(0, (ac[0] as Segment).start),
          0xff,
          0xf0,
          0,
          4,
          1,
          2,
          ...prog.subarray((ac[0] as Segment).start),
        ]),
      ],
      [
        'no DC scan',
        new Uint8Array([
          ...prog.subarray(0, (dc as Segment).start),
          ...prog.subarray((dc as Segment).end),
        ]),
      ],
      [
        'no scan at all',
        new Uint8Array([...base.subarray(0, (scansOf(base)[0] as Segment).start), 0xff, 0xd9]),
      ],
      ['a second image header', new Uint8Array([...base.subarray(0, eoi), ...base.subarray(2)])],
    ];
    const stb = await runStbDecode(cases.map(([, b]) => b));
    const lenient: string[] = [];
    for (const [i, [name, bytes]] of cases.entries()) {
      expect([name, await outcome(bytes)]).toEqual([name, 'MM_IMAGE_DECODE']);
      if (stb[i]?.ok) lenient.push(name);
    }
    console.log(`refused by mm, decoded by stb: ${lenient.join('; ')}`);
    expect(lenient.length).toBeGreaterThanOrEqual(5);
    // a progressive JPEG with its DC scan only is complete (a blurry picture), as for stb
    const dcOnly = new Uint8Array([...prog.subarray(0, (ac[0] as Segment).start), 0xff, 0xd9]);
    expect(await outcome(dcOnly)).toBe('decoded 24x16');
  });
});
