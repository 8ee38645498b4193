#!/usr/bin/env node
// Generates the TS constants and the C++ enum from codes.json (the one list of codes).
// `--check` exits 1 when a generated file is stale instead of writing it.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');
const root = join(pkg, '..', '..');

export function loadCodes() {
  const { codes } = JSON.parse(readFileSync(join(pkg, 'codes.json'), 'utf8'));
  for (const { code } of codes) {
    if (!/^MM_[A-Z0-9_]+$/.test(code)) throw new Error(`bad code name ${code}`);
  }
  return codes;
}

export function renderTs(codes) {
  const lines = [
    '// Generated from codes.json by scripts/generate.mjs. Do not edit.',
    '',
    'export const ErrorCode = {',
    ...codes.map(({ code }) => `  ${code}: '${code}',`),
    '} as const;',
    '',
    'export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];',
    '',
    '/** Numeric ids, equal to the C++ `mm::error_code` values. */',
    'export const ErrorCodeId: Readonly<Record<ErrorCode, number>> = {',
    ...codes.map(({ code }, i) => `  ${code}: ${i + 1},`),
    '};',
    '',
    'export const ErrorCodeMessage: Readonly<Record<ErrorCode, string>> = {',
    ...codes.map(({ code, message }) => `  ${code}: ${JSON.stringify(message)},`),
    '};',
    '',
  ];
  return lines.join('\n');
}

export function renderCpp(codes) {
  const name = (code) => code.slice(3).toLowerCase();
  const lines = [
    '// Generated from packages/errors/codes.json by packages/errors/scripts/generate.mjs.',
    '// Do not edit.',
    '#pragma once',
    '',
    'namespace mm {',
    '',
    'enum class error_code : int {',
    '    ok = 0,',
    ...codes.map(({ code }, i) => `    ${name(code)} = ${i + 1},`),
    '};',
    '',
    'inline const char * error_code_name(error_code c) {',
    '    switch (c) {',
    '        case error_code::ok: return "MM_OK";',
    ...codes.map(({ code }) => `        case error_code::${name(code)}: return "${code}";`),
    '    }',
    '    return "MM_INTERNAL";',
    '}',
    '',
    '}  // namespace mm',
    '',
  ];
  return lines.join('\n');
}

export const targets = {
  ts: join(pkg, 'src', 'codes.ts'),
  cpp: join(root, 'native', 'src', 'common', 'error_codes.h'),
};

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const codes = loadCodes();
  const check = process.argv.includes('--check');
  let stale = false;
  for (const [file, text] of [
    [targets.ts, renderTs(codes)],
    [targets.cpp, renderCpp(codes)],
  ]) {
    let old = '';
    try {
      old = readFileSync(file, 'utf8');
    } catch {}
    if (old === text) continue;
    if (check) {
      console.error(`stale: ${file} (run npm run generate -w @mm/errors)`);
      stale = true;
    } else {
      writeFileSync(file, text);
      console.log(`wrote ${file}`);
    }
  }
  process.exit(stale ? 1 : 0);
}
