export { BENCH_LLAMA_1B, benchDir, benchLlama } from './bench-models.js';
export {
  FIXTURE_GENERATOR_VERSION,
  fixturePath,
  fixturesDir,
  tinyLlamaFixture,
  tinyLlamaFixtureName,
} from './fixtures.js';
export {
  encodeBmp,
  encodeGif,
  encodeJpeg,
  encodePng,
  type JpegOptions,
  mutateImageBytes,
  type RgbImage,
  syntheticImage,
} from './images.js';
export {
  benchMmproj,
  MMPROJ_FAMILIES,
  type MmprojFamily,
  REALISTIC_CLIP_L14_336,
  type ResolvedTinyMmprojOptions,
  resolveTinyMmprojOptions,
  type TinyMmprojOptions,
  type TinyMmprojPair,
  tinyMmprojBuffer,
  tinyMmprojFixture,
  tinyMmprojFixtureName,
  tinyMmprojPair,
  tinyMmprojSpec,
  visionOutput,
  writeTinyMmproj,
} from './mmproj.js';
export {
  compareVectors,
  type MtmdDecoderPos,
  type MtmdLayoutChunk,
  type MtmdLayoutOptions,
  type MtmdLayoutResult,
  type MtmdMediaChunk,
  MtmdOracleError,
  type MtmdOracleOptions,
  type MtmdOracleResult,
  type MtmdTextChunk,
  mtmdOracleBinary,
  runMtmdLayout,
  runMtmdOracle,
} from './mtmd-oracle.js';
export {
  type MtmdCliOptions,
  mtmdCli,
  oracleDir,
  oracleTool,
  type RefGenerateResult,
  refGenerate,
} from './oracle.js';
export {
  repoRoot,
  type TinyShapesPaths,
  tinyShapesDir,
  tinyShapesPaths,
} from './paths.js';
export { Prng } from './prng.js';
export {
  CHATML_TEMPLATE,
  llamaSpec,
  type ResolvedTinyLlamaOptions,
  resolveTinyLlamaOptions,
  TINY_LLAMA_SPECIAL_IDS,
  type TinyLlamaOptions,
  type TinyLlamaVocab,
  TokenType,
  tinyLlamaBuffer,
  tinyLlamaSpec,
  tinyLlamaVocab,
  type WeightSource,
  writeTinyLlama,
} from './tiny-llama.js';
