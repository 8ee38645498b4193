// Installs mm as a user would: every public package packed with `npm pack`, the tarballs installed
// into a new project outside this repository, with no C/C++ compiler or CMake on PATH, then the
// tiny-shapes answers asked through @mm/core, through the `mm` bin and through `mm serve`.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { repoRoot } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = repoRoot();
const npmCli = join(
  dirname(process.execPath),
  '..',
  'lib',
  'node_modules',
  'npm',
  'bin',
  'npm-cli.js',
);
const platformPackage = `@mm/native-${process.platform}-${process.arch}`;
const prebuiltDir = join(root, 'native', 'platforms', `${process.platform}-${process.arch}`);
const canRun = existsSync(npmCli);

interface Packed {
  name: string;
  file: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: string[];
}

/** Every public workspace package, and the platform package staged for this machine. */
function publicPackages(): { name: string; dir: string }[] {
  const globs: string[] = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).workspaces;
  const dirs = globs.flatMap((g) =>
    g.endsWith('/*')
      ? readdirSync(join(root, g.slice(0, -2)))
          .map((d) => join(root, g.slice(0, -2), d))
          .filter((d) => existsSync(join(d, 'package.json')))
      : [join(root, g)],
  );
  return [...dirs, prebuiltDir]
    .map((dir) => ({ dir, pkg: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) }))
    .filter(({ pkg }) => pkg.private !== true)
    .map(({ dir, pkg }) => ({ name: pkg.name as string, dir }));
}

/**
 * A PATH that has node and a shell (npm runs lifecycle scripts with `sh`) and nothing else: no cc,
 * c++, gcc, g++, clang, cmake, make, ninja.
 */
function bareBin(dir: string): string {
  mkdirSync(dir, { recursive: true });
  symlinkSync(process.execPath, join(dir, 'node'));
  symlinkSync('/bin/sh', join(dir, 'sh'));
  return dir;
}

/** Runs npm (the CLI of the Node running the tests) in `cwd` with `env`. */
function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv, timeout = 300_000) {
  return spawnSync(process.execPath, [npmCli, ...args], { encoding: 'utf8', cwd, env, timeout });
}

/** `npm install` of tarballs, as quietly and offline-first as npm allows. */
const installArgs = ['install', '--no-audit', '--no-fund', '--prefer-offline'];

function onPath(path: string, cmd: string): boolean {
  return path.split(delimiter).some((d) => existsSync(join(d, cmd)));
}

describe.skipIf(!canRun)(
  'npm install of the packed packages, in a project outside the repo',
  () => {
    const work = mkdtempSync(join(tmpdir(), 'mm-install-'));
    const project = join(work, 'project');
    const tarballs = join(work, 'tarballs');
    let env: NodeJS.ProcessEnv;
    let packed: Packed[] = [];
    let installSeconds = 0;
    const demo = () => join(project, 'node_modules', '@mm', 'demo', 'models', 'tiny-shapes');

    beforeAll(() => {
      mkdirSync(tarballs);
      mkdirSync(project);
      const path = bareBin(join(work, 'bin'));
      env = { ...process.env, PATH: path, MM_NATIVE_PATH: '', npm_config_update_notifier: 'false' };
      for (const k of Object.keys(env))
        if (k.startsWith('npm_') && k !== 'npm_config_update_notifier') delete env[k];
      for (const pkg of publicPackages()) {
        const r = npm(['pack', '--json', '--pack-destination', tarballs, pkg.dir], work, env);
        if (r.status !== 0) throw new Error(`npm pack ${pkg.name} failed: ${r.stderr}`);
        const [info] = JSON.parse(r.stdout) as {
          filename: string;
          size: number;
          unpackedSize: number;
          entryCount: number;
          files: { path: string }[];
        }[];
        if (!info) throw new Error(`npm pack ${pkg.name} printed nothing`);
        packed.push({
          name: pkg.name,
          file: join(tarballs, info.filename),
          size: info.size,
          unpackedSize: info.unpackedSize,
          entryCount: info.entryCount,
          files: info.files.map((f) => f.path),
        });
      }
      packed = packed.sort((a, b) => a.name.localeCompare(b.name));
      process.stderr.write(
        `packed ${packed.length} packages:\n${packed.map((p) => `  ${p.name.padEnd(24)} ${(p.size / 1024).toFixed(0).padStart(6)} KiB packed, ${(p.unpackedSize / 1024).toFixed(0).padStart(6)} KiB unpacked, ${p.entryCount} files`).join('\n')}\n`,
      );
      writeFileSync(
        join(project, 'package.json'),
        JSON.stringify({
          name: 'mm-user-project',
          version: '1.0.0',
          private: true,
          type: 'module',
        }),
      );
      const t0 = performance.now();
      const r = npm([...installArgs, ...packed.map((p) => p.file)], project, env);
      installSeconds = (performance.now() - t0) / 1000;
      process.stderr.write(`npm install took ${installSeconds.toFixed(1)} s\n`);
      if (r.status !== 0) throw new Error(`npm install failed: ${r.stdout}\n${r.stderr}`);
    }, 600_000);

    afterAll(() => rmSync(work, { recursive: true, force: true }));

    it('packs only what each package needs: no tests, no build folders, no sources of the prebuilt', () => {
      expect(packed.map((p) => p.name)).toContain(platformPackage);
      expect(packed.map((p) => p.name)).toEqual(
        expect.arrayContaining(['@mm/core', '@mm/native', '@mm/cli', '@mm/server', '@mm/demo']),
      );
      for (const p of packed) {
        for (const f of p.files) {
          expect(f, `${p.name}: ${f}`).not.toMatch(
            /\.test\.|test-util|(^|\/)build\/|(^|\/)vendor\/|\.tsbuildinfo$/,
          );
        }
      }
      const prebuilt = packed.find((p) => p.name === platformPackage) as Packed;
      expect(prebuilt.files).toContain('mm.node');
      expect(prebuilt.files.filter((f) => /ggml-cpu-/.test(f)).length).toBeGreaterThan(1);
      // ggml's RPC backend (mm rpc-worker, --rpc), loaded at run time beside the CPU variants
      expect(prebuilt.files.some((f) => /ggml-rpc\.(so|dylib|dll)$/.test(f))).toBe(true);
      expect(prebuilt.files.some((f) => /\.(cpp|h)$/.test(f))).toBe(false);
      const native = packed.find((p) => p.name === '@mm/native') as Packed;
      expect(native.files.some((f) => f.endsWith('.node') || f.endsWith('.so'))).toBe(false);
      expect(native.files).toContain('scripts/cli.mjs');
      const demoPkg = packed.find((p) => p.name === '@mm/demo') as Packed;
      expect(demoPkg.files.some((f) => f.includes('testset'))).toBe(false);
    });

    it('npm publish --dry-run passes for every public package, all at one version (changesets "fixed")', () => {
      const versions = new Set<string>();
      for (const pkg of publicPackages()) {
        versions.add(JSON.parse(readFileSync(join(pkg.dir, 'package.json'), 'utf8')).version);
        // --tag next: the public registry already holds unrelated @mm/* packages at higher
        // versions, and npm refuses to move their "latest" tag back (see README, Installing).
        const r = npm(
          ['publish', '--dry-run', '--access', 'public', '--tag', 'next'],
          pkg.dir,
          env,
          120_000,
        );
        expect(r.status, `${pkg.name}: ${r.stderr}`).toBe(0);
        expect(r.stderr, pkg.name).not.toContain('auto-corrected');
        expect(r.stdout + r.stderr).toContain(`${pkg.name}@`);
      }
      expect([...versions]).toHaveLength(1);
      const changesets = JSON.parse(readFileSync(join(root, '.changeset', 'config.json'), 'utf8'));
      expect(changesets.fixed).toEqual([['@mm/*']]);
      // The published @mm/native names every platform package at its own version (prepack).
      const native = packed.find((p) => p.name === '@mm/native') as Packed;
      const manifest = JSON.parse(
        spawnSync('tar', ['-xzOf', native.file, 'package/package.json'], { encoding: 'utf8' })
          .stdout,
      );
      expect(Object.keys(manifest.optionalDependencies).sort()).toEqual(
        ['darwin-arm64', 'linux-arm64', 'linux-x64', 'linux-x64-cuda', 'win32-x64'].map(
          (p) => `@mm/native-${p}`,
        ),
      );
      expect(new Set(Object.values(manifest.optionalDependencies))).toEqual(
        new Set([manifest.version]),
      );
      expect(readFileSync(join(root, 'native', 'package.json'), 'utf8')).not.toContain(
        'optionalDependencies',
      );
    }, 300_000);

    it('installs in under 60 s with no compiler or CMake on PATH, and no install scripts', () => {
      const path = env.PATH as string;
      for (const cmd of ['cc', 'c++', 'gcc', 'g++', 'clang', 'cmake', 'make', 'ninja']) {
        expect(onPath(path, cmd), cmd).toBe(false);
      }
      expect(installSeconds).toBeLessThan(60);
      const lock = JSON.parse(readFileSync(join(project, 'package-lock.json'), 'utf8'));
      const scripts = Object.entries(
        lock.packages as Record<string, { hasInstallScript?: boolean }>,
      )
        .filter(([, v]) => v.hasInstallScript)
        .map(([k]) => k);
      expect(scripts).toEqual([]);
      expect(
        existsSync(
          join(
            project,
            'node_modules',
            '@mm',
            `native-${process.platform}-${process.arch}`,
            'mm.node',
          ),
        ),
      ).toBe(true);
    });

    it('answers the tiny-shapes questions through @mm/core, from the prebuilt package', () => {
      const items = JSON.parse(readFileSync(join(demo(), 'samples', 'answers.json'), 'utf8'))
        .items as {
        image: string;
        questions: { question: string; answer: string }[];
      }[];
      const cases = items.slice(0, 4).map((it) => ({
        image: join(demo(), 'samples', it.image),
        question: it.questions[0]?.question as string,
        answer: it.questions[0]?.answer as string,
      }));
      const script = `
      import { MultimodalModel } from '@mm/core';
      import { systemInfo } from '@mm/native';
      const cases = ${JSON.stringify(cases)};
      const model = await MultimodalModel.load({ model: ${JSON.stringify(join(demo(), 'tiny-shapes-llm.gguf'))}, mmproj: ${JSON.stringify(join(demo(), 'mmproj-tiny-shapes.gguf'))}, threads: 2 });
      const answers = [];
      for (const c of cases) {
        const { text } = await model.chat([{ role: 'user', content: [{ type: 'image', image: c.image }, { type: 'text', text: c.question }] }], { temperature: 0 });
        answers.push(text.trim());
      }
      model.dispose();
      const info = systemInfo();
      console.log(JSON.stringify({ answers, addon: info.addon, cpu: info.cpuBackend }));
    `;
      writeFileSync(join(project, 'ask.mjs'), script);
      const r = spawnSync(process.execPath, ['ask.mjs'], {
        encoding: 'utf8',
        cwd: project,
        env,
        timeout: 120_000,
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.answers).toEqual(cases.map((c) => c.answer));
      expect(out.addon.source).toBe('prebuilt');
      expect(out.addon.package).toBe(platformPackage);
      expect(out.addon.path.startsWith(join(project, 'node_modules'))).toBe(true);
      expect(out.cpu.build).toBe('all');
      expect(out.cpu.variants.length).toBeGreaterThan(1);
    });

    it('answers through the mm bin (mm run) and mm demo', () => {
      const mm = join(project, 'node_modules', '.bin', 'mm');
      expect(existsSync(mm)).toBe(true);
      const r = spawnSync(
        process.execPath,
        [
          mm,
          'run',
          '-m',
          join(demo(), 'tiny-shapes-llm.gguf'),
          '--mmproj',
          join(demo(), 'mmproj-tiny-shapes.gguf'),
          '--image',
          join(demo(), 'samples', 'sample_000.png'),
          '-p',
          'Describe the image.',
          '--temp',
          '0',
          '-t',
          '2',
        ],
        { encoding: 'utf8', cwd: project, env, timeout: 120_000 },
      );
      expect(r.status).toBe(0);
      expect(r.stdout).toBe('a red circle on the left.\n');
      const d = spawnSync(process.execPath, [mm, 'demo', '--json'], {
        encoding: 'utf8',
        cwd: project,
        env,
        timeout: 120_000,
      });
      expect(d.status).toBe(0);
      const rows = JSON.parse(d.stdout).rows as { correct: boolean }[];
      expect(rows.length).toBe(32);
      expect(rows.filter((x) => x.correct).length).toBe(32);
    });

    it('answers through mm serve (OpenAI-compatible, image as a data URL)', async () => {
      const mm = join(project, 'node_modules', '.bin', 'mm');
      const child: ChildProcess = spawn(
        process.execPath,
        [
          mm,
          'serve',
          '-m',
          join(demo(), 'tiny-shapes-llm.gguf'),
          '--mmproj',
          join(demo(), 'mmproj-tiny-shapes.gguf'),
          '--port',
          '0',
          '-t',
          '2',
        ],
        { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let err = '';
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      try {
        const url = await new Promise<string>((resolve, reject) => {
          child.stderr?.on('data', (d: Buffer) => {
            err += d.toString();
            const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
            if (m) resolve(m[1] as string);
          });
          child.on('exit', () => reject(new Error(`mm serve exited: ${err}`)));
        });
        const image = readFileSync(join(demo(), 'samples', 'sample_002.png')).toString('base64');
        const res = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'tiny-shapes-llm',
            temperature: 0,
            messages: [
              {
                role: 'user',
                content: [
                  { type: 'image_url', image_url: { url: `data:image/png;base64,${image}` } },
                  { type: 'text', text: 'What shape is it?' },
                ],
              },
            ],
          }),
        });
        const body = (await res.json()) as { choices: { message: { content: string } }[] };
        expect(body.choices[0]?.message.content.trim()).toBe('triangle.');
        const page = await fetch(`${url}/`);
        expect(page.status).toBe(200);
      } finally {
        child.kill('SIGTERM');
      }
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      expect(await exited).toBe(0);
      clearTimeout(killer);
    });

    it('without the prebuilt package, fails with one clear error naming the packages and the build command', () => {
      const bare = join(work, 'bare');
      mkdirSync(bare);
      writeFileSync(
        join(bare, 'package.json'),
        JSON.stringify({ name: 'bare', version: '1.0.0', type: 'module' }),
      );
      const wanted = packed
        .filter((p) => p.name === '@mm/native' || p.name === '@mm/errors')
        .map((p) => p.file);
      const i = npm([...installArgs, '--omit=optional', ...wanted], bare, env);
      expect(i.status).toBe(0);
      const r = spawnSync(
        process.execPath,
        [
          '-e',
          "import('@mm/native').then((m) => m.systemInfo()).catch((e) => { console.log(JSON.stringify({ code: e.code, message: e.message })); })",
        ],
        { encoding: 'utf8', cwd: bare, env, timeout: 60_000 },
      );
      const out = JSON.parse(r.stdout);
      expect(out.code).toBe('MM_NATIVE_LOAD');
      expect(out.message).toContain(platformPackage);
      expect(out.message).toContain('npx @mm/native build');
      expect(out.message).toContain(`${process.platform}-${process.arch}`);
      expect(
        statSync(join(bare, 'node_modules', '@mm', 'native', 'scripts', 'cli.mjs')).isFile(),
      ).toBe(true);
    });

    it('then `npx @mm/native build` compiles it in the project (the source fallback) and it runs a model', () => {
      const bare = join(work, 'bare');
      // This one needs the compiler and CMake: the machine's own PATH.
      const withTools = { ...env, PATH: process.env.PATH };
      const npx = join(dirname(npmCli), 'npx-cli.js');
      const b = spawnSync(process.execPath, [npx, '@mm/native', 'build'], {
        encoding: 'utf8',
        cwd: bare,
        env: withTools,
        timeout: 1_800_000,
      });
      expect(b.status, b.stderr.slice(-3000)).toBe(0);
      expect(b.stderr).toMatch(/\[mm build\] mm\.node \[#+\] (\d+)\/\1 100%/);
      const llm = join(root, 'apps', 'demo', 'models', 'tiny-shapes', 'tiny-shapes-llm.gguf');
      const r = spawnSync(
        process.execPath,
        [
          '-e',
          `import('@mm/native').then(async (m) => { const i = m.systemInfo(); const model = await m.probeModel(${JSON.stringify(llm)}); console.log(JSON.stringify({ addon: i.addon, cpu: i.cpuBackend, arch: model.architecture, nLayer: model.nLayer })); })`,
        ],
        { encoding: 'utf8', cwd: bare, env, timeout: 60_000 },
      );
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.addon.source).toBe('local-build');
      expect(out.addon.path).toBe(
        join(bare, 'node_modules', '@mm', 'native', 'build', 'bin', 'mm.node'),
      );
      expect(out.cpu.build).toBe('native');
      expect(out.arch).toBe('llama');
      expect(out.nLayer).toBeGreaterThan(0);
    }, 1_800_000);
  },
);
