import { systemInfo } from '@mm/native';
import { type CliIo, ExitCode, formatBytes } from '../io.js';
import {
  AUDIO_FAMILIES,
  fusedAudioProjectorTypes,
  fusedProjectorTypes,
  markers,
  VISION_FAMILIES,
} from './families.js';

export const infoHelp = `mm info [--json]

Shows which mm.node was loaded (prebuilt package, local build or MM_NATIVE_PATH), the ggml
CPU variant chosen for this machine and why, the llama.cpp commit, backends and devices, CPU
features and the thread count. MM_CPU_VARIANT=<name> forces a variant (e.g. haswell).`;

export function runInfo(io: CliIo, json: boolean): number {
  const info = systemInfo();
  if (json) {
    const fused = fusedProjectorTypes();
    io.out(
      `${JSON.stringify(
        {
          ...info,
          visionFamilies: VISION_FAMILIES,
          fusedProjectorTypes: fused,
          audioFamilies: AUDIO_FAMILIES,
          fusedAudioProjectorTypes: fusedAudioProjectorTypes(),
        },
        null,
        2,
      )}\n`,
    );
    return ExitCode.ok;
  }
  const on = Object.entries(info.cpuFeatures)
    .filter(([, v]) => v !== '0')
    .map(([k, v]) => (v === '1' ? k : `${k}=${v}`));
  const cpu = info.cpuBackend;
  const addon = info.addon;
  const variants = cpu.variants
    .map(
      (v) => `${v.name === cpu.chosen ? '*' : ''}${v.name}${v.score > 0 ? `(${v.score})` : '(-)'}`,
    )
    .join(' ');
  const lines = [
    `addon              ${addon.path}`,
    `  from             ${addon.source === 'prebuilt' ? `prebuilt package ${addon.package}` : addon.source === 'env' ? 'MM_NATIVE_PATH' : 'local build of @mm/native (build/bin)'}`,
    `cpu backend        ${cpu.chosen}${cpu.forced ? ' (forced by MM_CPU_VARIANT)' : ''}: ${cpu.reason}`,
    `  build            ${cpu.build === 'all' ? 'portable: every CPU variant, chosen at run time' : 'native: compiled for the building machine'}`,
    `  variants         ${variants}  (score for this CPU; - = unsupported, * = loaded)`,
    ...(cpu.otherBackends.length ? [`  also loaded      ${cpu.otherBackends.join(', ')}`] : []),
    `llama.cpp commit   ${info.llamaCommit}`,
    `backends           ${info.backends.join(', ')}`,
    'devices',
    ...info.devices.map(
      (d) =>
        `  ${d.name.padEnd(10)} ${d.type.padEnd(5)} ${d.description}${d.memoryTotal ? ` (${formatBytes(d.memoryTotal)})` : ''}`,
    ),
    `cpu                ${info.cpuModel || 'unknown'}`,
    `cpu features       ${on.join(' ') || 'none'}`,
    `hardware threads   ${info.hardwareThreads}`,
    `gpu offload        ${info.supportsGpuOffload ? 'yes' : 'no'}`,
    `mmap / mlock       ${info.supportsMmap ? 'yes' : 'no'} / ${info.supportsMlock ? 'yes' : 'no'}`,
    'vision families    (own graphs; mm inspect <mmproj> tells which a file takes)',
    ...VISION_FAMILIES.map(
      (f) =>
        `  ${f.family.padEnd(17)}${f.encoder.padEnd(8)} ${f.resolution}; markers ${markers(f.imageBegin, f.imageEnd)}; ${f.causal ? 'causal' : 'non-causal'} span`,
    ),
    "fused (libmtmd)    (libmtmd's own encoder + projector, one stage; its markers and tiles)",
    ...wrapList(fusedProjectorTypes(), 96).map((l) => `  ${l}`),
    'audio families     (own graphs; 16 kHz mono, 30 s log-mel chunks)',
    ...AUDIO_FAMILIES.map(
      (f) =>
        `  ${f.family.padEnd(17)}${f.encoder.padEnd(8)} ${f.rows}; markers ${markers(f.audioBegin, f.audioEnd)}`,
    ),
    "fused audio        (libmtmd's own audio encoder + projector)",
    ...wrapList(fusedAudioProjectorTypes(), 96).map((l) => `  ${l}`),
  ];
  io.out(`${lines.join('\n')}\n`);
  return ExitCode.ok;
}

/** Comma-separated items in lines of at most `width` characters. */
function wrapList(items: readonly string[], width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const it of items) {
    const next = line ? `${line}, ${it}` : it;
    if (next.length > width && line) {
      lines.push(`${line},`);
      line = it;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}
