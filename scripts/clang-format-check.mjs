#!/usr/bin/env node
// Checks (or with --fix, applies) clang-format on mm's own C++ (never the vendored tree).
// Generated files are skipped. Without clang-format installed it says so and fails in CI only.
import { execFileSync, spawnSync } from 'node:child_process';

const fix = process.argv.includes('--fix');
const files = execFileSync('git', ['ls-files', 'native/src', 'native/napi', 'native/tools'], {
  encoding: 'utf8',
})
  .split('\n')
  .filter((f) => /\.(cpp|h|hpp|cc)$/.test(f) && !f.endsWith('error_codes.h'));

const probe = spawnSync('clang-format', ['--version'], { encoding: 'utf8' });
if (probe.status !== 0) {
  const msg =
    'clang-format is not installed (apt-get install clang-format); C++ formatting not checked';
  if (process.env.CI) {
    console.error(`error: ${msg}`);
    process.exit(1);
  }
  console.warn(`warning: ${msg}`);
  process.exit(0);
}
if (fix) {
  execFileSync('clang-format', ['-i', ...files], { stdio: 'inherit' });
  console.log(`clang-format: formatted ${files.length} files`);
  process.exit(0);
}
const r = spawnSync('clang-format', ['--dry-run', '--Werror', ...files], { encoding: 'utf8' });
if (r.status !== 0) {
  console.error(r.stderr.split('\n').slice(0, 40).join('\n'));
  console.error('clang-format: files need formatting; run `npm run format`');
  process.exit(1);
}
console.log(`clang-format: ${files.length} files ok`);
