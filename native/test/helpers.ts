import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = join(nativeDir, '..');
/** The tiny trained model bundled with the demo (a copy of ../shared/models/tiny-shapes). */
export const tinyShapesDir = join(repoRoot, 'apps', 'demo', 'models', 'tiny-shapes');
export const tinyShapesLlm = join(tinyShapesDir, 'tiny-shapes-llm.gguf');
export const tinyShapesMmproj = join(tinyShapesDir, 'mmproj-tiny-shapes.gguf');
export const toolsDir = join(nativeDir, 'build', 'bin');

export function toolPath(name: string): string | undefined {
  const p = join(toolsDir, name);
  return existsSync(p) ? p : undefined;
}
