export { defaultCacheDir, type RepoManifest } from './cache.js';
export type { FileProgress } from './download.js';
export { defaultEndpoint, resolveEndpoint } from './http.js';
export {
  type PulledFile,
  type PullModelOptions,
  type PullProgress,
  type PullResult,
  pullModel,
} from './pull.js';
export { parseRepoRef, type RepoRef } from './repo-ref.js';
export { type HubFile, type Selection, selectFiles } from './select.js';
