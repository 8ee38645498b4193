import type { ModelInfo, SystemInfo } from './addon-types.js';
import { callNative, runNative } from './call.js';
import { type AddonCandidate, addonLoadedFrom, loadAddon } from './load.js';

export type {
  NativeFusedAddon,
  NativeFusedInfo,
  NativeFusedItem,
  NativeFusedMedia,
} from './addon-fused-types.js';
export type {
  NativeGenAddon,
  NativeGenAudio,
  NativeGenAudioInfo,
  NativeGenFrame,
  NativeGenLoadOptions,
  NativePocketTtsInfo,
  NativeQwen3TtsInfo,
} from './addon-gen-types.js';
export type {
  NativeRpcAddon,
  NativeRpcDevice,
  NativeRpcWorkerOptions,
} from './addon-rpc-types.js';
export type {
  CpuBackendInfo,
  DeviceInfo,
  ModelInfo,
  NativeAddon,
  NativeAudioAddon,
  NativeAudioEncoder,
  NativeAudioEncoderInfo,
  NativeAudioTowerFacts,
  NativeContext,
  NativeContextParams,
  NativeDecodeInput,
  NativeGenerateResult,
  NativeMelChunks,
  NativeMelParams,
  NativeMmprojInfo,
  NativeModel,
  NativeOperation,
  NativePadStyle,
  NativePcm,
  NativePreprocessParams,
  NativeProjector,
  NativeProjectorInfo,
  NativeProjectorTrainer,
  NativeResizeAlgo,
  NativeRgbImage,
  NativeSamplingParams,
  NativeScheduleEnd,
  NativeScheduleItem,
  NativeScheduleRequest,
  NativeScheduler,
  NativeScheduleStats,
  NativeSliceLayout,
  NativeSliceTemplate,
  NativeTensor,
  NativeTrainAddon,
  NativeTrainSample,
  NativeTrainStepResult,
  NativeVisionAddon,
  NativeVisionEncoder,
  NativeVisionEncoderInfo,
  NativeVisionFacts,
  SystemInfo,
} from './addon-types.js';
export { callNative, runNative } from './call.js';
export type { AddonCandidate, AddonSource } from './load.js';
export {
  addonCandidates,
  addonLoadedFrom,
  loadAddon,
  machineCpuFeatures,
  prebuiltPackageNames,
  sourceBuildCommand,
} from './load.js';

/** `SystemInfo` plus which mm.node was loaded and from where. */
export interface SystemInfoWithAddon extends SystemInfo {
  addon: AddonCandidate;
}

/**
 * The llama.cpp commit, ggml backends and devices, the CPU variant loaded (and why), CPU
 * features, thread count, and which mm.node was loaded.
 */
export function systemInfo(): SystemInfoWithAddon {
  const info = callNative(() => loadAddon().systemInfo());
  return { ...info, addon: addonLoadedFrom() as AddonCandidate };
}

export interface ProbeModelOptions {
  /** Load only the vocabulary, not the weights. */
  vocabOnly?: boolean;
  signal?: AbortSignal;
}

/**
 * Loads a text-model GGUF with llama.cpp, reads its facts and frees it again. Low level: the
 * file is handed to llama.cpp as is, so validate untrusted files first (`@mm/backbone-gguf`
 * does).
 */
export async function probeModel(
  path: string,
  options: ProbeModelOptions = {},
): Promise<ModelInfo> {
  const info = await runNative(
    () => loadAddon().probeModel(path, { vocabOnly: options.vocabOnly ?? false }),
    options.signal,
  );
  // An abort that came after llama.cpp's last progress check still wins.
  if (options.signal?.aborted) throw options.signal.reason;
  return info;
}
