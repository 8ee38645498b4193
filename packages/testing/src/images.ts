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

/** Luma (0..255) of pixel i, as a JPEG encoder computes it. */
function luma(img: RgbImage, i: number): number {
  const r = img.data[i * 3] as number;
  const g = img.data[i * 3 + 1] as number;
  const b = img.data[i * 3 + 2] as number;
  return Math.max(0, Math.min(255, Math.round(0.299 * r + 0.587 * g + 0.114 * b)));
}

/** A deterministic alpha / low-byte pattern for the channels stb drops or rounds away. */
function pattern(x: number, y: number): number {
  return (x * 37 + y * 101 + ((x * y) & 7) * 13) & 0xff;
}

export type PngColorType = 'grey' | 'rgb' | 'palette' | 'grey-alpha' | 'rgba';

export interface PngOptions {
  /** Default 'rgb'. Grey is the picture's luma; palette colours come from the picture quantised. */
  colorType?: PngColorType;
  /** Bits per sample: grey 1/2/4/8/16, palette 1/2/4/8, the others 8/16. Default 8. */
  bitDepth?: 1 | 2 | 4 | 8 | 16;
  /** Adam7 interlacing. */
  interlace?: boolean;
  /** Row filters: 'none' (default) or 'mixed' (rows cycle through None, Sub, Up, Average, Paeth). */
  filters?: 'none' | 'mixed';
  /** Palette images: a tRNS chunk with an alpha per entry. */
  transparency?: boolean;
}

const PNG_DEPTHS: Record<PngColorType, number[]> = {
  grey: [1, 2, 4, 8, 16],
  rgb: [8, 16],
  palette: [1, 2, 4, 8],
  'grey-alpha': [8, 16],
  rgba: [8, 16],
};

/** Palette of 2^depth entries and the index of each pixel. */
function pngPalette(img: RgbImage, depth: number): { palette: number[][]; index: Uint8Array } {
  const n = img.width * img.height;
  const index = new Uint8Array(n);
  const palette: number[][] = [];
  for (let i = 0; i < 1 << depth; i++) {
    if (depth === 8)
      palette.push([
        Math.round((((i >> 5) & 7) * 255) / 7),
        Math.round((((i >> 2) & 7) * 255) / 7),
        Math.round(((i & 3) * 255) / 3),
      ]);
    else if (depth === 4) palette.push([((i >> 3) & 1) * 255, ((i >> 1) & 3) * 85, (i & 1) * 255]);
    else palette.push([i * (255 >> depth) + 9, 200 - i * 40, 30 + i * 50]);
  }
  for (let i = 0; i < n; i++) {
    const r = img.data[i * 3] as number;
    const g = img.data[i * 3 + 1] as number;
    const b = img.data[i * 3 + 2] as number;
    if (depth === 8) index[i] = ((r >> 5) << 5) | ((g >> 5) << 2) | (b >> 6);
    else if (depth === 4) index[i] = ((r >> 7) << 3) | ((g >> 6) << 1) | (b >> 7);
    else index[i] = luma(img, i) >> (8 - depth);
  }
  return { palette, index };
}

/**
 * A PNG of any colour type and bit depth, optionally Adam7-interlaced and with every row filter.
 * The default (8-bit RGB, filter 0) holds the picture exactly.
 */
export function encodePng(img: RgbImage, options: PngOptions = {}): Uint8Array {
  checkRgb(img);
  const colorType = options.colorType ?? 'rgb';
  const depth = options.bitDepth ?? 8;
  if (!PNG_DEPTHS[colorType]?.includes(depth)) {
    throw new MmInvalidArgumentError('bitDepth', `${depth} is not allowed for ${colorType}`);
  }
  const { width: W, height: H } = img;
  const channels = { grey: 1, rgb: 3, palette: 1, 'grey-alpha': 2, rgba: 4 }[colorType];
  const pal = colorType === 'palette' ? pngPalette(img, depth) : undefined;
  /** The samples of pixel (x, y), each < 2^depth. */
  const samples = (x: number, y: number): number[] => {
    const i = y * W + x;
    const wide = (v: number) => (depth === 16 ? (v << 8) | pattern(x, y) : v);
    const a = pattern(y, x);
    switch (colorType) {
      case 'palette':
        return [(pal as { index: Uint8Array }).index[i] as number];
      case 'grey':
        return [depth >= 8 ? wide(luma(img, i)) : luma(img, i) >> (8 - depth)];
      case 'grey-alpha':
        return [wide(luma(img, i)), wide(a)];
      default: {
        const rgb = [0, 1, 2].map((c) => wide(img.data[i * 3 + c] as number));
        return colorType === 'rgba' ? [...rgb, wide(a)] : rgb;
      }
    }
  };
  const bpp = Math.max(1, (channels * depth) / 8); // bytes per pixel for the filters
  const passes = options.interlace
    ? [
        [0, 0, 8, 8],
        [4, 0, 8, 8],
        [0, 4, 4, 8],
        [2, 0, 4, 4],
        [0, 2, 2, 4],
        [1, 0, 2, 2],
        [0, 1, 1, 2],
      ]
    : [[0, 0, 1, 1]];
  const rows: Uint8Array[] = [];
  let filterIndex = 0;
  for (const [x0, y0, dx, dy] of passes as [number, number, number, number][]) {
    const pw = Math.ceil((W - x0) / dx);
    const ph = Math.ceil((H - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    const rowBytes = Math.ceil((pw * channels * depth) / 8);
    let prev = new Uint8Array(rowBytes);
    for (let py = 0; py < ph; py++) {
      const raw = new Uint8Array(rowBytes);
      let bit = 0;
      for (let px = 0; px < pw; px++) {
        for (const v of samples(x0 + px * dx, y0 + py * dy)) {
          if (depth === 16) {
            raw[bit >> 3] = v >> 8;
            raw[(bit >> 3) + 1] = v & 0xff;
          } else if (depth === 8) raw[bit >> 3] = v;
          else raw[bit >> 3] = (raw[bit >> 3] as number) | (v << (8 - depth - (bit & 7)));
          bit += depth;
        }
      }
      const type = options.filters === 'mixed' ? filterIndex++ % 5 : 0;
      const row = new Uint8Array(1 + rowBytes);
      row[0] = type;
      for (let k = 0; k < rowBytes; k++) {
        const a = k >= bpp ? (raw[k - bpp] as number) : 0;
        const b = prev[k] as number;
        const c = k >= bpp ? (prev[k - bpp] as number) : 0;
        let pred = 0;
        if (type === 1) pred = a;
        else if (type === 2) pred = b;
        else if (type === 3) pred = (a + b) >> 1;
        else if (type === 4) {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        }
        row[1 + k] = ((raw[k] as number) - pred) & 0xff;
      }
      rows.push(row);
      prev = raw;
    }
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, W);
  dv.setUint32(4, H);
  const typeCode = { grey: 0, rgb: 2, palette: 3, 'grey-alpha': 4, rgba: 6 }[colorType];
  ihdr.set([depth, typeCode, 0, 0, options.interlace ? 1 : 0], 8);
  const chunks = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
  ];
  if (pal) {
    chunks.push(pngChunk('PLTE', new Uint8Array(pal.palette.flat())));
    if (options.transparency) {
      chunks.push(pngChunk('tRNS', new Uint8Array(pal.palette.map((_, i) => (i * 53) & 0xff))));
    }
  }
  chunks.push(pngChunk('IDAT', new Uint8Array(deflateSync(concat(rows)))));
  chunks.push(pngChunk('IEND', new Uint8Array(0)));
  return concat(chunks);
}

// ---- BMP ---------------------------------------------------------------------------------

export interface BmpOptions {
  /** 24 (default), 32, 16 (5-5-5, or 5-6-5 with bitfields), or 8 / 4 / 1 with a palette. */
  bitsPerPixel?: 1 | 4 | 8 | 16 | 24 | 32;
  /** Rows stored top-down (a negative height). */
  topDown?: boolean;
  /** 'info' (BITMAPINFOHEADER, default), 'core' (OS/2, 12 bytes), 'v4' or 'v5'. */
  header?: 'core' | 'info' | 'v4' | 'v5';
  /** 16 / 32 bpp: explicit channel masks (BI_BITFIELDS). */
  bitfields?: boolean;
  /** 32 bpp with bitfields and a v4 / v5 header: an alpha mask and alpha values. */
  alpha?: boolean;
  /** Leave out the padding after the last row (some writers do; readers do not need it). */
  trimLastRowPadding?: boolean;
}

/** A BMP of any bit depth stb reads; the default is 24-bit bottom-up with BITMAPINFOHEADER. */
export function encodeBmp(img: RgbImage, options: BmpOptions = {}): Uint8Array {
  checkRgb(img);
  const bpp = options.bitsPerPixel ?? 24;
  const header = options.header ?? 'info';
  const hsz = { core: 12, info: 40, v4: 108, v5: 124 }[header];
  const bitfields = options.bitfields ?? false;
  const alpha = options.alpha ?? false;
  if (header === 'core' && (bpp === 16 || bpp === 32 || bitfields || options.topDown)) {
    throw new MmInvalidArgumentError('header', 'an OS/2 core header has 1/4/8/24 bpp, bottom-up');
  }
  if (bitfields && bpp !== 16 && bpp !== 32) {
    throw new MmInvalidArgumentError('bitfields', 'only for 16 and 32 bpp');
  }
  if (alpha && !(bpp === 32 && bitfields && (header === 'v4' || header === 'v5'))) {
    throw new MmInvalidArgumentError('alpha', 'needs 32 bpp, bitfields and a v4 / v5 header');
  }
  const { width: W, height: H } = img;
  const pal = bpp <= 8 ? pngPalette(img, bpp) : undefined;
  const palBytes = pal ? pal.palette.length * (header === 'core' ? 3 : 4) : 0;
  const maskBytes = bitfields && header === 'info' ? 12 : 0;
  const offset = 14 + hsz + maskBytes + palBytes;
  const stride = Math.ceil((W * bpp) / 32) * 4;
  const trim = options.trimLastRowPadding ? stride - Math.ceil((W * bpp) / 8) : 0;
  const size = offset + stride * H - trim;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  out[0] = 0x42;
  out[1] = 0x4d;
  dv.setUint32(2, size, true);
  dv.setUint32(10, offset, true);
  dv.setUint32(14, hsz, true);
  if (header === 'core') {
    dv.setUint16(18, W, true);
    dv.setUint16(20, H, true);
    dv.setUint16(22, 1, true);
    dv.setUint16(24, bpp, true);
  } else {
    dv.setInt32(18, W, true);
    dv.setInt32(22, options.topDown ? -H : H, true);
    dv.setUint16(26, 1, true);
    dv.setUint16(28, bpp, true);
    dv.setUint32(30, bitfields ? 3 : 0, true);
    dv.setUint32(34, stride * H, true);
  }
  const masks =
    bpp === 16
      ? bitfields
        ? [0xf800, 0x07e0, 0x001f, 0]
        : [0x7c00, 0x03e0, 0x001f, 0]
      : [0x00ff0000, 0x0000ff00, 0x000000ff, alpha ? 0xff000000 : 0];
  if (maskBytes) for (let i = 0; i < 3; i++) dv.setUint32(54 + 4 * i, masks[i] as number, true);
  if (hsz >= 108) {
    for (let i = 0; i < 4; i++) dv.setUint32(54 + 4 * i, masks[i] as number, true);
    dv.setUint32(70, 0x73524742, true); // 'sRGB'
  }
  if (pal) {
    const entry = header === 'core' ? 3 : 4;
    pal.palette.forEach(([r, g, b], i) => {
      out.set([b as number, g as number, r as number], 14 + hsz + i * entry);
    });
  }
  for (let y = 0; y < H; y++) {
    const row = offset + (options.topDown ? y : H - 1 - y) * stride;
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      const r = img.data[i * 3] as number;
      const g = img.data[i * 3 + 1] as number;
      const b = img.data[i * 3 + 2] as number;
      if (bpp === 24) out.set([b, g, r], row + x * 3);
      else if (bpp === 32) out.set([b, g, r, alpha ? pattern(x, y) : 0], row + x * 4);
      else if (bpp === 16) {
        const v = bitfields
          ? ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)
          : ((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3);
        dv.setUint16(row + x * 2, v, true);
      } else {
        const v = (pal as { index: Uint8Array }).index[i] as number;
        const at = row + ((x * bpp) >> 3);
        out[at] = (out[at] as number) | (v << (8 - bpp - ((x * bpp) & 7)));
      }
    }
  }
  return out;
}

// ---- PNM and Radiance HDR ------------------------------------------------------------------

export interface PnmOptions {
  /** 'P6' (RGB, default) or 'P5' (grey: the picture's luma). */
  format?: 'P6' | 'P5';
  /** 255 (default) or 65535 (16-bit big-endian samples). */
  maxval?: 255 | 65535;
}

/** A binary PPM / PGM. */
export function encodePnm(img: RgbImage, options: PnmOptions = {}): Uint8Array {
  checkRgb(img);
  const format = options.format ?? 'P6';
  const maxval = options.maxval ?? 255;
  const channels = format === 'P6' ? 3 : 1;
  const wide = maxval > 255 ? 2 : 1;
  const head = new TextEncoder().encode(
    `${format}\n# mm test\n${img.width} ${img.height}\n${maxval}\n`,
  );
  const body = new Uint8Array(img.width * img.height * channels * wide);
  for (let i = 0; i < img.width * img.height; i++) {
    for (let c = 0; c < channels; c++) {
      const v = channels === 3 ? (img.data[i * 3 + c] as number) : luma(img, i);
      const at = (i * channels + c) * wide;
      if (wide === 2) {
        body[at] = v;
        body[at + 1] = pattern(i % img.width, Math.floor(i / img.width));
      } else body[at] = v;
    }
  }
  return concat([head, body]);
}

/** A Radiance HDR (flat RGBE scanlines) holding the picture as linear light (sRGB-ish gamma 2.2). */
export function encodeHdr(img: RgbImage): Uint8Array {
  checkRgb(img);
  const head = new TextEncoder().encode(
    `#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y ${img.height} +X ${img.width}\n`,
  );
  const body = new Uint8Array(img.width * img.height * 4);
  for (let i = 0; i < img.width * img.height; i++) {
    const rgb = [0, 1, 2].map((c) => ((img.data[i * 3 + c] as number) / 255) ** 2.2);
    const max = Math.max(...rgb);
    if (max < 1e-32) continue;
    const e = Math.floor(Math.log2(max)) + 1;
    const scale = 256 / 2 ** e;
    for (let c = 0; c < 3; c++)
      body[i * 4 + c] = Math.min(255, Math.floor((rgb[c] as number) * scale));
    body[i * 4 + 3] = e + 128;
  }
  return concat([head, body]);
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
  /** Progressive JPEG (SOF2) instead of baseline (SOF0): spectral selection, DC scan first. */
  progressive?: boolean;
  /**
   * With `progressive`: successive approximation too. The DC and AC scans first send every
   * coefficient without its lowest bit (Al = 1), then refinement scans send that bit.
   */
  successiveApproximation?: boolean;
  /** Flat quantiser step (1..64). Default 6. */
  quant?: number;
  /** Chroma subsampling: '444' (default) or '420' (chroma at half resolution both ways). */
  subsampling?: '444' | '420';
  /** One grey component (the luma of the picture) instead of YCbCr. */
  grayscale?: boolean;
  /** Restart interval in MCUs (a DRI segment and RSTn markers in every scan); 0 = none (default). */
  restartInterval?: number;
}

interface JpegComponent {
  id: number;
  /** Sampling factors. */
  h: number;
  v: number;
  /** Size of the component plane in samples. */
  width: number;
  height: number;
  plane: Float64Array;
  /** Blocks of the interleaved MCU grid per row / column, and of the component on its own. */
  gridW: number;
  gridH: number;
  blocksW: number;
  blocksH: number;
  /** Quantised coefficients in zigzag order, one per block of the MCU grid. */
  coef: Int16Array[];
}

/** A JFIF JPEG: YCbCr 4:4:4 or 4:2:0, or grey; baseline or progressive; optional restarts. */
export function encodeJpeg(img: RgbImage, options: JpegOptions = {}): Uint8Array {
  checkRgb(img);
  const q = Math.max(1, Math.min(64, Math.round(options.quant ?? 6)));
  const progressive = options.progressive ?? false;
  const successive = progressive && (options.successiveApproximation ?? false);
  const grey = options.grayscale ?? false;
  const sub = !grey && options.subsampling === '420' ? 2 : 1;
  const restart = options.restartInterval ?? 0;
  if (!Number.isInteger(restart) || restart < 0 || restart > 0xffff) {
    throw new MmInvalidArgumentError('restartInterval', `must be an integer in [0, 65535]`);
  }
  const { width: W, height: H } = img;

  // colour planes (level-shifted luma, chroma around 0)
  const planes = [new Float64Array(W * H), new Float64Array(W * H), new Float64Array(W * H)];
  for (let i = 0; i < W * H; i++) {
    const r = img.data[i * 3] as number;
    const g = img.data[i * 3 + 1] as number;
    const b = img.data[i * 3 + 2] as number;
    (planes[0] as Float64Array)[i] = 0.299 * r + 0.587 * g + 0.114 * b - 128;
    (planes[1] as Float64Array)[i] = -0.168736 * r - 0.331264 * g + 0.5 * b;
    (planes[2] as Float64Array)[i] = 0.5 * r - 0.418688 * g - 0.081312 * b;
  }
  const mcuX = Math.ceil(W / (8 * sub));
  const mcuY = Math.ceil(H / (8 * sub));
  const comps: JpegComponent[] = [];
  for (let c = 0; c < (grey ? 1 : 3); c++) {
    const f = c === 0 ? sub : 1; // sampling factor
    const d = sub / f; // downsampling
    const width = Math.ceil(W / d);
    const height = Math.ceil(H / d);
    let plane = planes[c] as Float64Array;
    if (d > 1) {
      const src = plane;
      plane = new Float64Array(width * height);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          let sum = 0;
          for (let dy = 0; dy < d; dy++) {
            for (let dx = 0; dx < d; dx++) {
              sum += src[Math.min(H - 1, y * d + dy) * W + Math.min(W - 1, x * d + dx)] as number;
            }
          }
          plane[y * width + x] = sum / (d * d);
        }
      }
    }
    comps.push({
      id: c + 1,
      h: f,
      v: f,
      width,
      height,
      plane,
      gridW: mcuX * f,
      gridH: mcuY * f,
      blocksW: Math.ceil(width / 8),
      blocksH: Math.ceil(height / 8),
      coef: [],
    });
  }

  // forward DCT + quantisation of every block of the MCU grid (edge samples repeated)
  const cos = Array.from({ length: 64 }, (_, i) =>
    Math.cos(((2 * (i >> 3) + 1) * (i & 7) * Math.PI) / 16),
  );
  for (const k of comps) {
    for (let by = 0; by < k.gridH; by++) {
      for (let bx = 0; bx < k.gridW; bx++) {
        const f = new Float64Array(64);
        for (let y = 0; y < 8; y++) {
          for (let x = 0; x < 8; x++) {
            const sx = Math.min(k.width - 1, bx * 8 + x);
            const sy = Math.min(k.height - 1, by * 8 + y);
            f[y * 8 + x] = k.plane[sy * k.width + sx] as number;
          }
        }
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
        for (let i = 0; i < 64; i++) zz[i] = out[ZIGZAG[i] as number] as number;
        k.coef.push(zz);
      }
    }
  }

  const bytes: number[] = [0xff, 0xd8];
  const segment = (marker: number, body: number[]): void => {
    bytes.push(0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body);
  };
  segment(0xe0, [0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  segment(0xdb, [0, ...new Array(64).fill(q)]);
  segment(progressive ? 0xc2 : 0xc0, [
    8,
    H >> 8,
    H & 0xff,
    W >> 8,
    W & 0xff,
    comps.length,
    ...comps.flatMap((k) => [k.id, (k.h << 4) | k.v, 0]),
  ]);
  // DC: 12 symbols on 4 bits; AC: 162 symbols on 8 bits (table 0 for every component)
  const dcBits = new Array(16).fill(0);
  dcBits[3] = 12;
  const acBits = new Array(16).fill(0);
  acBits[7] = AC_SYMBOLS.length;
  segment(0xc4, [0x00, ...dcBits, ...Array.from({ length: 12 }, (_, i) => i)]);
  segment(0xc4, [0x10, ...acBits, ...AC_SYMBOLS]);
  if (restart > 0) segment(0xdd, [restart >> 8, restart & 0xff]);

  /** AC coefficients from..to of a block, each shifted right by al (sign kept), with an EOB. */
  const encodeAc = (w: BitWriter, zz: Int16Array, from: number, to: number, al: number): void => {
    let run = 0;
    for (let k = from; k <= to; k++) {
      const c = zz[k] as number;
      const v = c < 0 ? -(-c >> al) : c >> al;
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
  /** A refinement of AC coefficients from..to to bit al (JPEG G.1.2.3), one EOB per block. */
  const refineAc = (w: BitWriter, zz: Int16Array, from: number, to: number, al: number): void => {
    const abs = (k: number) => Math.abs(zz[k] as number) >> al;
    let eob = 0; // the last coefficient that becomes non-zero in this scan
    for (let k = from; k <= to; k++) if (abs(k) === 1) eob = k;
    let run = 0;
    let corrections: number[] = [];
    const flushCorrections = () => {
      for (const b of corrections) w.bits(b, 1);
      corrections = [];
    };
    for (let k = from; k <= to; k++) {
      const a = abs(k);
      if (a === 0) {
        run++;
        continue;
      }
      while (run > 15 && k <= eob) {
        w.bits(AC_CODE.get(0xf0) as number, 8);
        flushCorrections();
        run -= 16;
      }
      if (a > 1) {
        corrections.push(a & 1); // already non-zero: its next bit
        continue;
      }
      w.bits(AC_CODE.get((run << 4) | 1) as number, 8);
      w.bits((zz[k] as number) < 0 ? 0 : 1, 1);
      flushCorrections();
      run = 0;
    }
    if (run > 0 || corrections.length > 0) {
      w.bits(AC_CODE.get(0x00) as number, 8);
      flushCorrections();
    }
  };

  /**
   * One scan over `members` (component indices): interleaved MCUs when there are several,
   * the component's own blocks in raster order when there is one; RSTn every `restart` MCUs.
   */
  const scan = (
    members: number[],
    ss: number,
    se: number,
    ah: number,
    al: number,
    block: (w: BitWriter, c: number, zz: Int16Array, pred: number[]) => void,
  ): void => {
    segment(0xda, [
      members.length,
      ...members.flatMap((c) => [(comps[c] as JpegComponent).id, 0x00]),
      ss,
      se,
      (ah << 4) | al,
    ]);
    const one = members.length === 1 ? (comps[members[0] as number] as JpegComponent) : undefined;
    const nMcu = one ? one.blocksW * one.blocksH : mcuX * mcuY;
    let w = new BitWriter();
    let pred = [0, 0, 0];
    let rst = 0;
    const emit = (): void => {
      w.flush();
      for (const b of w.out) bytes.push(b);
    };
    for (let m = 0; m < nMcu; m++) {
      if (restart > 0 && m > 0 && m % restart === 0) {
        emit();
        bytes.push(0xff, 0xd0 + rst);
        rst = (rst + 1) & 7;
        w = new BitWriter();
        pred = [0, 0, 0];
      }
      if (one) {
        const bx = m % one.blocksW;
        const by = Math.floor(m / one.blocksW);
        block(w, members[0] as number, one.coef[by * one.gridW + bx] as Int16Array, pred);
        continue;
      }
      const mx = m % mcuX;
      const my = Math.floor(m / mcuX);
      for (const c of members) {
        const k = comps[c] as JpegComponent;
        for (let y = 0; y < k.v; y++) {
          for (let x = 0; x < k.h; x++) {
            block(w, c, k.coef[(my * k.v + y) * k.gridW + mx * k.h + x] as Int16Array, pred);
          }
        }
      }
    }
    emit();
  };
  const dc = (w: BitWriter, c: number, zz: Int16Array, pred: number[], al: number): void => {
    const v = (zz[0] as number) >> al;
    const m = magnitude(v - (pred[c] as number));
    pred[c] = v;
    w.bits(m.size, 4);
    w.bits(m.bits, m.size);
  };
  const all = comps.map((_, c) => c);
  if (!progressive) {
    scan(all, 0, 63, 0, 0, (w, c, zz, pred) => {
      dc(w, c, zz, pred, 0);
      encodeAc(w, zz, 1, 63, 0);
    });
  } else {
    const al = successive ? 1 : 0;
    scan(all, 0, 0, 0, al, (w, c, zz, pred) => dc(w, c, zz, pred, al));
    for (const [ss, se] of [
      [1, 5],
      [6, 63],
    ] as const) {
      for (const c of all) scan([c], ss, se, 0, al, (w, _c, zz) => encodeAc(w, zz, ss, se, al));
    }
    if (successive) {
      scan(all, 0, 0, 1, 0, (w, _c, zz) => w.bits((zz[0] as number) & 1, 1));
      for (const c of all) scan([c], 1, 63, 1, 0, (w, _c, zz) => refineAc(w, zz, 1, 63, 0));
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
