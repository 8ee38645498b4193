import { join } from 'node:path';
import { compareVectors, tinyShapesPaths } from '@mm/testing';

/** The trained tiny-shapes model bundled with the demo. */
const tinyShapes = tinyShapesPaths();
export const tinyShapesDir = tinyShapes.dir;
export const tinyShapesMmproj = tinyShapes.mmproj;
export const tinyShapesSamples = Array.from({ length: 8 }, (_, i) =>
  join(tinyShapes.samples, `sample_00${i}.png`),
);

/** Parity thresholds of the issue: max |diff| <= 1e-3 and cosine >= 0.9999. */
export const MAX_ABS_DIFF = 1e-3;
export const MIN_COSINE = 0.9999;

export function parity(ours: ArrayLike<number>, ref: ArrayLike<number>) {
  return compareVectors(ours, ref);
}

export function fmt(n: number): string {
  return n === 0 ? '0' : n < 1e-3 ? n.toExponential(2) : n.toFixed(6);
}
