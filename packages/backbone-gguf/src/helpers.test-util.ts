import { tinyLlamaFixture, tinyShapesPaths } from '@mm/testing';

export const tinyShapes = tinyShapesPaths();

/** The two models every parity test runs on: a generated random one and the trained tiny-shapes. */
export async function testModels(): Promise<{ name: string; path: string }[]> {
  return [
    { name: 'generated tiny llama', path: await tinyLlamaFixture({ seed: 7 }) },
    { name: 'tiny-shapes-llm', path: tinyShapes.llm },
  ];
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}
