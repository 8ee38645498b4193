import { systemInfo } from '@mm/native';
import { type CliIo, ExitCode, formatBytes } from '../io.js';

export const infoHelp = `mm info [--json]

Shows the llama.cpp commit mm was built from, the ggml backends and devices, CPU features
and the thread count.`;

export function runInfo(io: CliIo, json: boolean): number {
  const info = systemInfo();
  if (json) {
    io.out(`${JSON.stringify(info, null, 2)}\n`);
    return ExitCode.ok;
  }
  const on = Object.entries(info.cpuFeatures)
    .filter(([, v]) => v !== '0')
    .map(([k, v]) => (v === '1' ? k : `${k}=${v}`));
  const lines = [
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
  ];
  io.out(`${lines.join('\n')}\n`);
  return ExitCode.ok;
}
