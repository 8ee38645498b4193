import { join } from 'node:path';
import { compareVectors, repoRoot, tinyShapesPaths } from '@mm/testing';

/** The trained tiny-shapes model bundled with the demo (a copy of ../shared/models/tiny-shapes). */
export const tinyShapesDir = join(repoRoot(), 'apps', 'demo', 'models', 'tiny-shapes');
export const tinyShapesMmproj = join(tinyShapesDir, 'mmproj-tiny-shapes.gguf');
export const tinyShapesSamples = Array.from({ length: 8 }, (_, i) =>
  join(tinyShapesDir, 'samples', `sample_00${i}.png`),
);
/** The 200-image test set exists only in ../shared (not bundled). */
export const sharedTinyShapes = tinyShapesPaths();

/** Parity thresholds of the issue: max |diff| <= 1e-3 and cosine >= 0.9999. */
export const MAX_ABS_DIFF = 1e-3;
export const MIN_COSINE = 0.9999;

export function parity(ours: ArrayLike<number>, ref: ArrayLike<number>) {
  return compareVectors(ours, ref);
}

export function fmt(n: number): string {
  return n === 0 ? '0' : n < 1e-3 ? n.toExponential(2) : n.toFixed(6);
}
