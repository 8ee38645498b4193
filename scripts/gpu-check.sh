#!/usr/bin/env bash
# The CUDA check (issue 14): build mm.node with MM_GPU=cuda on a machine with an NVIDIA GPU, show
# that mm sees and uses the device, run the GPU parity tests and `mm bench` on the GPU.
#
#   scripts/gpu-check.sh pack   here, on a development machine with a complete checkout: writes
#                               what a bare GPU machine lacks into .dev/gpu/ (git-ignored through
#                               .git/info/exclude): node (xz), node_modules without the dev-only
#                               tools, the built dist/ folders, and the part of the vendored
#                               llama.cpp the build compiles (with its stamp, so vendor.mjs does
#                               not re-vendor); about 41 MiB
#   scripts/gpu-check.sh run    there, in the repository root (no network, no Node.js needed):
#                               unpacks .dev/gpu, builds (timed), then runs the checks; everything
#                               is logged to $OUT/log (default /tmp/gpu-check), figures as JSON
#                               beside it
#
# Environment for `run`: GPU_CHECK_BUDGET (seconds the whole run may take, default 560: stages
# that would not fit are skipped and said so), MM_CUDA_ARCHS (default 90-real, Hopper),
# MM_BUILD_JOBS (default: all cores), GPU_CHECK_REAL=0 to skip the realistic-shape bench,
# GPU_CHECK_ONLY=bench-tiny for the short run: build, mm info, `mm bench -g all` on tiny-shapes,
# then the backbone parity test if time is left (nothing else); GPU_CHECK_ONLY=parity: build, mm info,
# then the parity tests of mm's own graphs on the GPU against libmtmd on the same GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
carry=$root/.dev/gpu

pack() {
  mkdir -p "$carry"
  grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo '/.dev/' >>.git/info/exclude
  [ -s "$carry/node.xz" ] || xz -T0 -6 -c "$(command -v node)" >"$carry/node.xz"
  [ -s "$carry/node_modules.tar.xz" ] && [ "$carry/node_modules.tar.xz" -nt package-lock.json ] ||
    tar -cf - --exclude='node_modules/@biomejs' --exclude='node_modules/@turbo' \
    --exclude='node_modules/turbo' --exclude='node_modules/typescript' \
    --exclude='node_modules/playwright-core' --exclude='node_modules/prettier' \
    --exclude='node_modules/openai' --exclude='node_modules/@changesets' \
    --exclude='node_modules/@manypkg' --exclude='node_modules/.cache' \
      node_modules packages/*/node_modules apps/*/node_modules native/node_modules |
      xz -T0 -6 >"$carry/node_modules.tar.xz"
  tar -cf - packages/*/dist apps/*/dist native/dist | xz -T0 -6 >"$carry/dist.tar.xz"
  local skip=()
  for b in vulkan sycl metal cann musa opencl webgpu hexagon openvino zdnn zendnn virtgpu et; do
    skip+=("--exclude=llama.cpp/ggml/src/ggml-$b")
  done
  tar -C native/vendor -cf - "${skip[@]}" .stamp.json llama.cpp/CMakeLists.txt llama.cpp/LICENSE \
    llama.cpp/cmake llama.cpp/ggml llama.cpp/src llama.cpp/include llama.cpp/common \
    llama.cpp/tools/mtmd llama.cpp/tools/tts llama.cpp/tools/server llama.cpp/tools/ui \
    llama.cpp/tools/batched-bench llama.cpp/vendor \
    llama.cpp/licenses |
    xz -T0 -6 >"$carry/vendor.tar.xz"
  # the native sources of HEAD: built instead when the working tree's do not build (another
  # change half-way through)
  git archive --format=tar HEAD native/CMakeLists.txt native/src native/napi native/tools |
    xz -T0 -6 >"$carry/native-head.tar.xz"
  ls -l "$carry"
  du -sh "$carry"
}

# ---------------------------------------------------------------------------------------------
out=${OUT:-/tmp/gpu-check}
t0=$(date +%s)
budget=${GPU_CHECK_BUDGET:-560}
summary=()
left() { echo $((budget - ($(date +%s) - t0))); }
stamp() { echo "[gpu-check +$(($(date +%s) - t0))s $(date -u +%H:%M:%S)] $*"; }

# stage NAME NEEDS_SECONDS CMD...: runs CMD when NEEDS_SECONDS are left (with a timeout of what is
# left), logs its time and exit status
stage() {
  local name=$1 needs=$2
  shift 2
  local l
  l=$(left)
  if [ "$l" -lt "$needs" ]; then
    stamp "SKIP $name: $l s left, needs about $needs"
    summary+=("$name: skipped ($l s left)")
    return 99
  fi
  stamp "BEGIN $name"
  local s rc
  s=$(date +%s)
  timeout --kill-after=5 $((l - 5)) bash -c '"$@"' "$name" "$@"
  rc=$?
  stamp "END $name: rc $rc in $(($(date +%s) - s)) s"
  summary+=("$name: rc $rc, $(($(date +%s) - s)) s")
  return $rc
}

unpack() {
  mkdir -p .dev/bin
  xz -T0 -dc "$carry/node.xz" >.dev/bin/node && chmod +x .dev/bin/node
  tar -I 'xz -T0' -xf "$carry/node_modules.tar.xz"
  tar -I 'xz -T0' -xf "$carry/dist.tar.xz"
  mkdir -p native/vendor
  tar -I 'xz -T0' -C native/vendor -xf "$carry/vendor.tar.xz"
  # No repository travels: vendor.mjs checks the vendored commit with `git rev-parse HEAD` in
  # native/vendor/llama.cpp; this stand-in answers that (and nothing else) from vendor.lock.json.
  mkdir -p native/vendor/llama.cpp/.git
  local commit
  commit=$(sed -n 's/.*"commit": *"\([0-9a-f]*\)".*/\1/p' native/vendor.lock.json)
  cat >.dev/bin/git <<EOF
#!/bin/sh
case "\$*" in
  *"rev-parse HEAD") echo $commit ;;
  *"rev-parse --short HEAD") echo ${commit:0:8} ;;
  *) exit 1 ;;
esac
EOF
  chmod +x .dev/bin/git
}

# cuBLAS where CMake's FindCUDAToolkit does not look (a pip-installed toolkit): add its folders
find_cublas() {
  local nvcc inc
  nvcc=$(command -v nvcc || true)
  inc=$(dirname "$(dirname "$(readlink -f "${nvcc:-/usr/local/cuda/bin/nvcc}")")")/include
  if [ -f "$inc/cublas_v2.h" ]; then
    echo "cublas_v2.h in $inc"
    return
  fi
  local h l
  h=$(find /usr/local /usr/include /usr/lib /opt -name cublas_v2.h 2>/dev/null | head -1)
  l=$(find /usr/local /usr/lib /opt -name 'libcublas.so*' 2>/dev/null | head -1)
  echo "cublas_v2.h: ${h:-none}; libcublas: ${l:-none}"
  if [ -n "$h" ]; then export CPATH=$(dirname "$h")${CPATH:+:$CPATH}; fi
  if [ -n "$l" ]; then
    local d
    d=$(dirname "$l")
    export CMAKE_LIBRARY_PATH=$d${CMAKE_LIBRARY_PATH:+:$CMAKE_LIBRARY_PATH}
    export LIBRARY_PATH=$d${LIBRARY_PATH:+:$LIBRARY_PATH}
    export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
}

probe() {
  uname -a
  nproc
  free -g | head -2
  nvidia-smi || true
  nvcc --version || true
  cmake --version | head -1
  ninja --version || true
  gcc --version | head -1
  node --version
}

mm() { node apps/cli/bin/mm.js "$@"; }

bench_json() { # FILE ARGS...: mm bench --json into $out/FILE, its table into the log
  local f=$1
  shift
  mm bench --json "$@" >"$out/$f" || return $?
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const c = r.conditions;
    console.log(`${c.model.split("/").pop()} + ${c.mmproj.split("/").pop()}: threads ${c.threads}, GPU layers ${c.gpuLayers}, encoders on ${c.encoders ?? "?"}, backend ${c.backend}, ${c.reps} reps`);
    for (const x of r.rows) console.log(`  ${x.metric.padEnd(46)} ${x.ours.toFixed(2).padStart(10)} ${x.ref.toFixed(2).padStart(10)} ${x.ratio.toFixed(3).padStart(7)}`);
    const ie = r.imageEncode;
    console.log(`  encode spread: mm ${ie.oursMs.min.toFixed(2)}-${ie.oursMs.max.toFixed(2)} ms, libmtmd ${ie.refMs.min.toFixed(2)}-${ie.refMs.max.toFixed(2)} ms, pair ratio ${ie.pairRatio.median.toFixed(3)} (${ie.pairRatio.min.toFixed(3)}-${ie.pairRatio.max.toFixed(3)}), max |diff| ${ie.maxAbsDiff}`);
    console.log(`  second question TTFT ${r.secondQuestion.timeToFirstTokenMs.toFixed(2)} ms (cache hit ${r.secondQuestion.cacheHits}); event-loop max lag ${r.eventLoopMaxLagMs.toFixed(2)} ms; same answer as llama-mtmd-cli: ${r.sameAnswer}`);
  ' "$out/$f"
}

vitest() { # PKG FILE... (none: all of the package's)
  local pkg=$1
  shift
  (cd "$pkg" && node "$root/node_modules/vitest/vitest.mjs" run "$@")
}

real_models() {
  cat >.dev/gen-models.mjs <<'EOF'
import { BENCH_LLAMA_1B, benchLlama, benchMmproj, encodePng, REALISTIC_CLIP_L14_336, syntheticImage } from '@mm/testing';
import { writeFileSync } from 'node:fs';
const mmproj = await benchMmproj({ ...REALISTIC_CLIP_L14_336, projectionDim: BENCH_LLAMA_1B.nEmbd });
const model = await benchLlama(BENCH_LLAMA_1B);
writeFileSync('.dev/bench-336.png', encodePng(syntheticImage(336, 336, 7)));
writeFileSync('.dev/real-models.txt', `${model}\n${mmproj}\n`);
console.log(model, mmproj);
EOF
  node .dev/gen-models.mjs
}

run() {
  mkdir -p "$out"
  # stages run their function in a child bash under `timeout`
  export root carry out t0
  export -f stamp unpack find_cublas probe mm bench_json vitest real_models
  exec > >(tee -a "$out/log") 2>&1
  export PATH=$root/.dev/bin:/usr/local/cuda/bin:$PATH NO_COLOR=1 FORCE_COLOR=0
  export MM_GPU=${MM_GPU-cuda} MM_CUDA_ARCHS=${MM_CUDA_ARCHS:-90-real} MM_CPU=native
  export MM_BUILD_JOBS=${MM_BUILD_JOBS:-$(nproc)} MM_BENCH_DIR=${MM_BENCH_DIR:-/tmp/mm-bench}
  stamp "start; budget $budget s; MM_GPU=$MM_GPU MM_CUDA_ARCHS=$MM_CUDA_ARCHS jobs $MM_BUILD_JOBS"
  stage unpack 30 unpack || exit 1
  probe
  if ! node -e '
    const fs = require("fs"), crypto = require("crypto");
    const s = JSON.parse(fs.readFileSync("native/vendor/.stamp.json", "utf8"));
    const want = fs.readdirSync("native/patches").filter((f) => f.endsWith(".patch")).sort()
      .map((f) => ({ name: f, sha256: crypto.createHash("sha256").update(fs.readFileSync("native/patches/" + f)).digest("hex") }));
    if (JSON.stringify(s.patches) !== JSON.stringify(want)) { console.error("the carried llama.cpp was patched differently: run scripts/gpu-check.sh pack again"); process.exit(1); }'; then
    exit 1
  fi
  if [ -n "$MM_GPU" ]; then
    find_cublas
    # sample the GPU's load and memory every 0.5 s for the rest of the run: the proof of offload
    (nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv -lms 500 >"$out/smi.csv" 2>/dev/null &)
  fi
  # the addon (one CPU variant, -march=native, CUDA for the given architectures), timed
  # GPU_CHECK_LOCK=FILE: builds under flock FILE (a dry run on a shared development machine)
  local lock=()
  [ -n "${GPU_CHECK_LOCK:-}" ] && lock=(flock "$GPU_CHECK_LOCK")
  if ! stage build-mm.node 200 "${lock[@]}" node native/scripts/build.mjs; then
    stamp "the working tree's native sources did not build: building HEAD's"
    tar -I 'xz -T0' -xf "$carry/native-head.tar.xz"
    stage build-mm.node-head 100 "${lock[@]}" node native/scripts/build.mjs || exit 1
  fi
  # only the reference tools these checks use (build.mjs --oracle builds all of them)
  local tools=(llama-mtmd-cli mm-bench-vision mm-peak-rss mm-ref-generate)
  [ "${GPU_CHECK_ONLY:-}" = bench-tiny ] ||
    tools+=(mm-ref-mtmd-embed mm-ref-mtmd-gen mm-ref-mtmd-mel mm-ref-mtmd-audio-decode)
  stage build-tools 60 "${lock[@]}" cmake --build native/build --parallel "$MM_BUILD_JOBS" --target \
    "${tools[@]}"
  ls -l native/build/bin
  stage mm-info 20 mm info
  if [ "${GPU_CHECK_ONLY:-}" = bench-tiny ]; then
    stage bench-tiny-gpu 60 bench_json bench-tiny-gpu.json -g all -r 10
    stage parity-backbone 20 vitest packages/backbone-gguf src/parity.test.ts
    stamp "summary"
    printf '  %s\n' "${summary[@]}"
    [ -n "$MM_GPU" ] && nvidia-smi --query-gpu=name,memory.used --format=csv
    return 0
  fi
  # mm's own graphs on the GPU (their default in a GPU build) vs libmtmd on the same GPU
  # (MM_REF_GPU: the oracles' use_gpu), the usual tolerances: every vision family, then the tiled,
  # resampler and audio ones, and the speech decoders
  export MM_REF_GPU=1
  stage parity-projectors 60 vitest packages/projectors src/parity.test.ts
  [ "${GPU_CHECK_ONLY:-}" = parity ] || stage bench-tiny-gpu 45 bench_json bench-tiny-gpu.json -g all -r 10
  stage parity-more 60 vitest packages/projectors src/audio-parity.test.ts src/resampler.test.ts \
    src/idefics3.test.ts src/parity-dw-rank3.test.ts
  stage decoders 40 vitest packages/decoders
  unset MM_REF_GPU
  if [ "${GPU_CHECK_ONLY:-}" = parity ]; then
    stamp "summary"
    printf '  %s\n' "${summary[@]}"
    return 0
  fi
  if [ "${GPU_CHECK_REAL:-1}" != 0 ]; then
    stage real-models 90 real_models &&
      stage bench-real-gpu 70 bench_json bench-real-gpu.json -g all -r 10 \
        -m "$(sed -n 1p .dev/real-models.txt)" --mmproj "$(sed -n 2p .dev/real-models.txt)" \
        --image .dev/bench-336.png
  fi
  # greedy tokens vs llama.cpp's own generation (both on the CPU: the CUDA build's CPU path)
  stage parity-backbone 30 vitest packages/backbone-gguf src/parity.test.ts
  stage bench-tiny-cpu 60 bench_json bench-tiny-cpu.json -g 0 -r 10
  stamp "summary"
  printf '  %s\n' "${summary[@]}"
  [ -n "$MM_GPU" ] && nvidia-smi --query-gpu=name,memory.used --format=csv
  return 0
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *)
    echo "usage: scripts/gpu-check.sh pack|run" >&2
    exit 2
    ;;
esac
