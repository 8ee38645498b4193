#!/usr/bin/env node
// `npx @mm/native <command>`: what a user of the npm packages needs when no prebuilt addon fits.
//   build [--cpu native|all] [--gpu cuda] [--jobs N]   compile mm.node from source into this package
//   where                                               which mm.node would be loaded, and from where
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [command, ...rest] = process.argv.slice(2);

function flag(name) {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : undefined;
}

if (command === 'build') {
  const env = { ...process.env };
  const cpu = flag('--cpu');
  const gpu = flag('--gpu');
  const jobs = flag('--jobs');
  if (cpu) env.MM_CPU = cpu;
  if (gpu) env.MM_GPU = gpu;
  if (jobs) env.MM_BUILD_JOBS = jobs;
  const r = spawnSync(process.execPath, [join(here, 'build.mjs')], { env, stdio: 'inherit' });
  process.exit(r.status ?? 1);
} else if (command === 'where') {
  const { addonCandidates } = await import('../dist/load.js');
  for (const c of addonCandidates()) {
    process.stdout.write(
      `${c.present ? 'found  ' : 'missing'} ${c.source.padEnd(12)} ${c.package ?? ''} ${c.path}\n`,
    );
  }
} else {
  process.stderr.write(
    [
      'usage: npx @mm/native build [--cpu native|all] [--gpu cuda] [--jobs N]',
      '       npx @mm/native where',
      '',
      'build   compiles mm.node from source into this package (needs CMake >= 3.19 and a C++17',
      '        compiler; downloads the pinned llama.cpp source from the npm registry). --cpu native',
      '        (default) compiles for this machine; --cpu all builds every CPU variant.',
      'where   lists where mm.node is looked for, in order, and what is installed.',
      '',
    ].join('\n'),
  );
  process.exit(command === undefined || command === '--help' || command === '-h' ? 0 : 2);
}
