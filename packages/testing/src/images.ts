import { deflateSync } from 'node:zlib';
import { MmInvalidArgumentError } from '@mm/errors';
import { Prng } from './prng.js';

/**
 * Small image encoders for test fixtures (nothing is downloaded in tests): PNG, BMP, GIF and
 * baseline or progressive JPEG, from 8-bit RGB. They aim at valid files for decoders, not at
 * compression; the JPEG encoder uses flat quantisation and fixed-length Huffman codes.
 */

export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, row-major RGB. */
  data: Uint8Array;
}

function checkRgb(img: RgbImage): void {
  if (
    !Number.isSafeInteger(img.width) ||
    !Number.isSafeInteger(img.height) ||
    img.width <= 0 ||
    img.height <= 0 ||
    img.data.length !== img.width * img.height * 3
  ) {
    throw new MmInvalidArgumentError('image', 'must be a non-empty RGB image');
  }
}

/** A deterministic test picture: smooth gradients, a disc and per-pixel noise. */
export function syntheticImage(width: number, height: number, seed = 0): RgbImage {
  const rng = new Prng(seed);
  const data = new Uint8Array(width * height * 3);
  const cx = width * (0.3 + 0.4 * rng.uniform());
  const cy = height * (0.3 + 0.4 * rng.uniform());
  const r = Math.min(width, height) * (0.15 + 0.2 * rng.uniform());
  const tint = [rng.uniform(), rng.uniform(), rng.uniform()];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inDisc = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
      for (let c = 0; c < 3; c++) {
        const base = inDisc
          ? 255 * (tint[c] as number)
          : (255 * (c === 0 ? x / width : c === 1 ? y / height : 1 - x / width)) / 1.2;
        const v = base + 24 * (rng.uniform() - 0.5);
        data[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return { width, height, data };
}

// ---- PNG ---------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** An 8-bit RGB PNG (filter 0, zlib-compressed). */
export function encodePng(img: RgbImage): Uint8Array {
  checkRgb(img);
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, img.width);
  dv.setUint32(4, img.height);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const raw = new Uint8Array(img.height * (1 + img.width * 3));
  for (let y = 0; y < img.height; y++) {
    raw.set(
      img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3),
      y * (1 + img.width * 3) + 1,
    );
  }
  return concat([
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', new Uint8Array(deflateSync(raw))),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

// ---- BMP ---------------------------------------------------------------------------------

/** A 24-bit bottom-up BMP. */
export function encodeBmp(img: RgbImage): Uint8Array {
  checkRgb(img);
  const stride = Math.ceil((img.width * 3) / 4) * 4;
  const size = 54 + stride * img.height;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  out[0] = 0x42;
  out[1] = 0x4d;
  dv.setUint32(2, size, true);
  dv.setUint32(10, 54, true);
  dv.setUint32(14, 40, true);
  dv.setInt32(18, img.width, true);
  dv.setInt32(22, img.height, true);
  dv.setUint16(26, 1, true);
  dv.setUint16(28, 24, true);
  dv.setUint32(34, stride * img.height, true);
  for (let y = 0; y < img.height; y++) {
    const row = 54 + (img.height - 1 - y) * stride;
    for (let x = 0; x < img.width; x++) {
      const s = (y * img.width + x) * 3;
      out[row + x * 3] = img.data[s + 2] as number;
      out[row + x * 3 + 1] = img.data[s + 1] as number;
      out[row + x * 3 + 2] = img.data[s] as number;
    }
  }
  return out;
}

// ---- GIF ---------------------------------------------------------------------------------

/** A GIF89a with a 3-3-2 palette; LZW with a clear code every 250 pixels (9-bit codes only). */
export function encodeGif(img: RgbImage): Uint8Array {
  checkRgb(img);
  const head = new Uint8Array(13 + 768 + 10 + 1);
  const dv = new DataView(head.buffer);
  head.set([0x47, 0x49, 0x46, 0x38, 0x39, 0x61]);
  dv.setUint16(6, img.width, true);
  dv.setUint16(8, img.height, true);
  head[10] = 0xf7; // global colour table of 256 entries
  for (let i = 0; i < 256; i++) {
    head[13 + i * 3] = Math.round((((i >> 5) & 7) * 255) / 7);
    head[14 + i * 3] = Math.round((((i >> 2) & 7) * 255) / 7);
    head[15 + i * 3] = Math.round(((i & 3) * 255) / 3);
  }
  const d = 13 + 768;
  head[d] = 0x2c;
  dv.setUint16(d + 5, img.width, true);
  dv.setUint16(d + 7, img.height, true);
  head[d + 10] = 8; // LZW minimum code size
  const bytes: number[] = [];
  let acc = 0;
  let nbits = 0;
  const put = (code: number): void => {
    acc |= code << nbits;
    nbits += 9;
    while (nbits >= 8) {
      bytes.push(acc & 0xff);
      acc >>>= 8;
      nbits -= 8;
    }
  };
  const n = img.width * img.height;
  for (let i = 0; i < n; i++) {
    if (i % 250 === 0) put(256);
    const r = img.data[i * 3] as number;
    const g = img.data[i * 3 + 1] as number;
    const b = img.data[i * 3 + 2] as number;
    put(((r >> 5) << 5) | ((g >> 5) << 2) | (b >> 6));
  }
  put(257);
  if (nbits > 0) bytes.push(acc & 0xff);
  const blocks: number[] = [];
  for (let i = 0; i < bytes.length; i += 255) {
    const chunk = bytes.slice(i, i + 255);
    blocks.push(chunk.length, ...chunk);
  }
  blocks.push(0, 0x3b);
  return concat([head, new Uint8Array(blocks)]);
}

// ---- JPEG --------------------------------------------------------------------------------

const ZIGZAG = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
  13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52,
  45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/** Every AC symbol: EOB, ZRL and (run, size) for run 0..15, size 1..10; all coded on 8 bits. */
const AC_SYMBOLS = (() => {
  const s = [0x00, 0xf0];
  for (let run = 0; run < 16; run++)
    for (let size = 1; size <= 10; size++) s.push((run << 4) | size);
  return s;
})();
const AC_CODE = new Map(AC_SYMBOLS.map((sym, i) => [sym, i]));

class BitWriter {
  readonly out: number[] = [];
  private acc = 0;
  private n = 0;
  bits(value: number, count: number): void {
    for (let i = count - 1; i >= 0; i--) {
      this.acc = (this.acc << 1) | ((value >> i) & 1);
      this.n++;
      if (this.n === 8) {
        this.out.push(this.acc);
        if (this.acc === 0xff) this.out.push(0); // byte stuffing
        this.acc = 0;
        this.n = 0;
      }
    }
  }
  flush(): void {
    while (this.n !== 0) this.bits(1, 1);
  }
}

function magnitude(v: number): { size: number; bits: number } {
  const a = Math.abs(v);
  let size = 0;
  while (a >> size) size++;
  return { size, bits: v >= 0 ? v : v + (1 << size) - 1 };
}

export interface JpegOptions {
  /** Spectral-selection progressive JPEG (SOF2) instead of baseline (SOF0). */
  progressive?: boolean;
  /** Flat quantiser step (1..64). Default 6. */
  quant?: number;
}

/** A 4:4:4 YCbCr JFIF JPEG. */
export function encodeJpeg(img: RgbImage, options: JpegOptions = {}): Uint8Array {
  checkRgb(img);
  const q = Math.max(1, Math.min(64, Math.round(options.quant ?? 6)));
  const bw = Math.ceil(img.width / 8);
  const bh = Math.ceil(img.height / 8);
  // quantised coefficients in zigzag order: [component][block][64]
  const coef: Int16Array[][] = [[], [], []];
  const cos = Array.from({ length: 64 }, (_, i) =>
    Math.cos(((2 * (i >> 3) + 1) * (i & 7) * Math.PI) / 16),
  );
  for (let by = 0; by < bh; by++) {
    for (let bx = 0; bx < bw; bx++) {
      const planes = [new Float64Array(64), new Float64Array(64), new Float64Array(64)];
      for (let y = 0; y < 8; y++) {
        for (let x = 0; x < 8; x++) {
          const sx = Math.min(img.width - 1, bx * 8 + x);
          const sy = Math.min(img.height - 1, by * 8 + y);
          const s = (sy * img.width + sx) * 3;
          const r = img.data[s] as number;
          const g = img.data[s + 1] as number;
          const b = img.data[s + 2] as number;
          const p = y * 8 + x;
          (planes[0] as Float64Array)[p] = 0.299 * r + 0.587 * g + 0.114 * b - 128;
          (planes[1] as Float64Array)[p] = -0.168736 * r - 0.331264 * g + 0.5 * b;
          (planes[2] as Float64Array)[p] = 0.5 * r - 0.418688 * g - 0.081312 * b;
        }
      }
      for (let c = 0; c < 3; c++) {
        const f = planes[c] as Float64Array;
        const out = new Int16Array(64);
        for (let v = 0; v < 8; v++) {
          for (let u = 0; u < 8; u++) {
            let sum = 0;
            for (let y = 0; y < 8; y++) {
              for (let x = 0; x < 8; x++) {
                sum +=
                  (f[y * 8 + x] as number) *
                  (cos[x * 8 + u] as number) *
                  (cos[y * 8 + v] as number);
              }
            }
            const cu = u === 0 ? Math.SQRT1_2 : 1;
            const cv = v === 0 ? Math.SQRT1_2 : 1;
            // |coefficient| <= 1023: DC differences and AC values stay within the coded sizes
            out[v * 8 + u] = Math.max(
              -1023,
              Math.min(1023, Math.round((0.25 * cu * cv * sum) / q)),
            );
          }
        }
        const zz = new Int16Array(64);
        for (let k = 0; k < 64; k++) zz[k] = out[ZIGZAG[k] as number] as number;
        (coef[c] as Int16Array[]).push(zz);
      }
    }
  }

  const bytes: number[] = [0xff, 0xd8];
  const segment = (marker: number, body: number[]): void => {
    bytes.push(0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body);
  };
  segment(0xe0, [0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  segment(0xdb, [0, ...new Array(64).fill(q)]);
  const progressive = options.progressive ?? false;
  segment(progressive ? 0xc2 : 0xc0, [
    8,
    img.height >> 8,
    img.height & 0xff,
    img.width >> 8,
    img.width & 0xff,
    3,
    ...[1, 2, 3].flatMap((id) => [id, 0x11, 0]),
  ]);
  // DC: 12 symbols on 4 bits; AC: 162 symbols on 8 bits (table 0 for every component)
  const dcBits = new Array(16).fill(0);
  dcBits[3] = 12;
  const acBits = new Array(16).fill(0);
  acBits[7] = AC_SYMBOLS.length;
  segment(0xc4, [0x00, ...dcBits, ...Array.from({ length: 12 }, (_, i) => i)]);
  segment(0xc4, [0x10, ...acBits, ...AC_SYMBOLS]);

  const encodeAc = (w: BitWriter, zz: Int16Array, from: number, to: number): void => {
    let run = 0;
    for (let k = from; k <= to; k++) {
      const v = zz[k] as number;
      if (v === 0) {
        run++;
        continue;
      }
      while (run > 15) {
        w.bits(AC_CODE.get(0xf0) as number, 8);
        run -= 16;
      }
      const m = magnitude(v);
      w.bits(AC_CODE.get((run << 4) | m.size) as number, 8);
      w.bits(m.bits, m.size);
      run = 0;
    }
    if (run > 0) w.bits(AC_CODE.get(0x00) as number, 8);
  };
  const scan = (
    components: number[],
    ss: number,
    se: number,
    body: (w: BitWriter) => void,
  ): void => {
    segment(0xda, [components.length, ...components.flatMap((c) => [c + 1, 0x00]), ss, se, 0]);
    const w = new BitWriter();
    body(w);
    w.flush();
    bytes.push(...w.out);
  };
  const nBlocks = bw * bh;
  const dcScan = (w: BitWriter, comps: number[], withAc: boolean): void => {
    const pred = [0, 0, 0];
    for (let b = 0; b < nBlocks; b++) {
      for (const c of comps) {
        const zz = (coef[c] as Int16Array[])[b] as Int16Array;
        const m = magnitude((zz[0] as number) - (pred[c] as number));
        pred[c] = zz[0] as number;
        w.bits(m.size, 4);
        w.bits(m.bits, m.size);
        if (withAc) encodeAc(w, zz, 1, 63);
      }
    }
  };
  if (!progressive) {
    scan([0, 1, 2], 0, 63, (w) => dcScan(w, [0, 1, 2], true));
  } else {
    scan([0, 1, 2], 0, 0, (w) => dcScan(w, [0, 1, 2], false));
    for (const [ss, se] of [
      [1, 5],
      [6, 63],
    ] as const) {
      for (let c = 0; c < 3; c++) {
        scan([c], ss, se, (w) => {
          for (let b = 0; b < nBlocks; b++)
            encodeAc(w, (coef[c] as Int16Array[])[b] as Int16Array, ss, se);
        });
      }
    }
  }
  bytes.push(0xff, 0xd9);
  return new Uint8Array(bytes);
}

// ---- fuzzing -------------------------------------------------------------------------------

/**
 * A mutated copy of `bytes`: bit flips, byte overwrites, truncation, insertions, duplicated or
 * deleted ranges, or header fields set to extreme values. Deterministic in the PRNG state.
 */
export function mutateImageBytes(bytes: Uint8Array, rng: Prng): Uint8Array {
  let out: Uint8Array = new Uint8Array(bytes);
  const nOps = 1 + Math.floor(rng.uniform() * 3);
  for (let op = 0; op < nOps; op++) {
    const at = Math.floor(rng.uniform() * Math.max(1, out.length));
    switch (Math.floor(rng.uniform() * 8)) {
      case 0: // flip bits
        for (let i = 0; i < 1 + rng.uniform() * 8; i++) {
          const p = Math.floor(rng.uniform() * out.length);
          out[p] = (out[p] as number) ^ (1 << Math.floor(rng.uniform() * 8));
        }
        break;
      case 1: // overwrite bytes
        for (let i = 0; i < 1 + rng.uniform() * 16 && at + i < out.length; i++)
          out[at + i] = rng.nextU32() & 0xff;
        break;
      case 2: // truncate
        out = out.slice(0, at);
        break;
      case 3: // insert random bytes
        out = concat([
          out.subarray(0, at),
          new Uint8Array(
            Array.from({ length: 1 + (rng.nextU32() % 64) }, () => rng.nextU32() & 0xff),
          ),
          out.subarray(at),
        ]);
        break;
      case 4: // delete a range
        out = concat([
          out.subarray(0, at),
          out.subarray(Math.min(out.length, at + 1 + (rng.nextU32() % 128))),
        ]);
        break;
      case 5: // duplicate a range
        out = concat([
          out.subarray(0, at),
          out.subarray(at, at + 1 + (rng.nextU32() % 256)),
          out.subarray(at),
        ]);
        break;
      case 6: // extreme values in the header region (sizes, counts, lengths)
        {
          const p = Math.floor(rng.uniform() * Math.min(out.length, 64));
          const v = [0x00, 0xff, 0x7f, 0x80][rng.nextU32() % 4] as number;
          for (let i = 0; i < 4 && p + i < out.length; i++) out[p + i] = v;
        }
        break;
      default: // zero a range
        out.fill(0, at, at + 1 + (rng.nextU32() % 32));
    }
  }
  return out;
}
