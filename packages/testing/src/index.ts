export {
  FIXTURE_GENERATOR_VERSION,
  fixturePath,
  fixturesDir,
  tinyLlamaFixture,
  tinyLlamaFixtureName,
} from './fixtures.js';
export {
  repoRoot,
  sharedDir,
  sharedModelsDir,
  type TinyShapesPaths,
  tinyShapesPaths,
} from './paths.js';
export { Prng } from './prng.js';
export {
  CHATML_TEMPLATE,
  type ResolvedTinyLlamaOptions,
  resolveTinyLlamaOptions,
  TINY_LLAMA_SPECIAL_IDS,
  type TinyLlamaOptions,
  type TinyLlamaVocab,
  TokenType,
  tinyLlamaBuffer,
  tinyLlamaSpec,
  tinyLlamaVocab,
  writeTinyLlama,
} from './tiny-llama.js';
export { oracleDir, oracleTool, type RefGenerateResult, refGenerate } from './oracle.js';
