#!/usr/bin/env node
// @mm/native's prepack / postpack: the published package.json lists every platform package as an
// optional dependency at exactly @mm/native's version (npm installs the one that fits the machine),
// but the repository's does not, because those packages exist only once released: `npm ci` would
// fail on dependencies that are in no registry yet.
//   add      keep package.json aside (package.json.orig) and add optionalDependencies
//   restore  put the original back
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PLATFORMS } from './stage.mjs';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = join(nativeDir, 'package.json');
const orig = `${file}.orig`;
const command = process.argv[2];

if (command === 'add') {
  if (existsSync(orig)) renameSync(orig, file); // an interrupted pack left it behind
  const text = readFileSync(file, 'utf8');
  writeFileSync(orig, text);
  const pkg = JSON.parse(text);
  pkg.optionalDependencies = Object.fromEntries(
    PLATFORMS.map((id) => [`@mm/native-${id}`, pkg.version]),
  );
  writeFileSync(file, `${JSON.stringify(pkg, null, 2)}\n`);
} else if (command === 'restore') {
  if (existsSync(orig)) renameSync(orig, file);
} else {
  process.stderr.write('usage: release-manifest.mjs add|restore\n');
  process.exit(2);
}
