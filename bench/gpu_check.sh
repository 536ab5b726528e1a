#!/usr/bin/env bash
# bench/gpu_check.sh — everything a lent GPU machine should check, in one command.
#
#   bash bench/gpu_check.sh            # on a machine with an NVIDIA GPU, nvcc and torch with CUDA
#   bash bench/gpu_check.sh --dry-run  # anywhere: the same stages, GPU parts stubbed (CPU variants)
#
# Stages, in this order, each under its own time limit and all together under a budget of
# GPU_CHECK_BUDGET_S seconds (default 300); a stage's failure is recorded and the next one runs:
#   env        nvidia-smi, nvcc, compute-sanitizer, Python/torch/CUDA versions, the GPU
#   build      libnuwa_plugins.so for the GPU's own architecture (CMake, Release, all cores)
#   tests      every test file marked gpu (tests/plugins/test_3dna_cuda_kernel.py: the CUDA
#              kernels vs the PyTorch oracle), pass/fail/skip counts
#   memcheck   compute-sanitizer memcheck on one small test per kernel kind ("unavailable" where
#              the sanitizer is missing or refuses the device, as on the gVisor H200)
#   racecheck  compute-sanitizer racecheck on the same subset (idem)
#   decode     bench/decode.py --device cuda: torch eager decode step, batch 1 and 64, ms/token
#   attention  bench/attention.py: fused 3DNA vs FlexAttention vs dense SDPA (DESIGN §11 sizes);
#              last because it is the longest (torch.compile of FlexAttention)
#
# Results land under $OUT (a new temp folder when OUT is unset) after every stage, at most six
# files: summary.md, summary.json (stage, status, seconds, one-line detail), gpu_check.log (every
# stage's full output, appended as it runs), attention.md (bench/attention.py's results section),
# decode_cuda.json (bench/decode.py --device cuda --json), build_info.txt. Statuses: ok, failed,
# timeout, unavailable (a tool the machine lacks or refuses; not a failure), skipped (budget
# spent). Exit code 0 when no stage failed, timed out or was skipped, else 1.
#
# The import package `nuwa` is the repository root: a symlink <work>/src/nuwa -> the repository and
# PYTHONPATH=<work>/src make it importable without installing (our pyproject pins a torch the
# GPU machine does not have). Wheels in <repo>/.whl (e.g. a missing pytest or hypothesis) are
# installed with --no-index --no-deps into <work>/site first. Environment knobs: OUT, PYTHON
# (default python3), GPU_CHECK_BUDGET_S, GPU_CHECK_STAGES (a subset, e.g. "build attention", run
# in the fixed order; default all), NUWA_GPU_CHECK_BUILD_DIR (default
# <repo>/build/gpu-check-sm<arch>, kept between calls on a warm machine), NUWA_GPU_CHECK_MODEL (a
# model directory for the decode stage; default the demo checkpoint), NUWA_CUDA_ARCH (e.g. 90;
# default: the GPU's compute capability).
set -u -o pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
REPO="$(cd "$(dirname "$SELF")/.." && pwd)"
STAGES=(env build tests memcheck racecheck decode attention)
# the longest each stage may take (seconds); the budget clips them further
declare -A STAGE_MAX=([env]=30 [build]=150 [tests]=120 [memcheck]=45 [racecheck]=45 [decode]=90
  [attention]=180)
# one small test per kernel kind (generic, decode, tiled), FP16, for the sanitizers
SANITIZER_NODE="tests/plugins/test_3dna_cuda_kernel.py::test_cuda_kernel_matches_oracle"
SANITIZER_K="(odd-grid or ring-two-queries) and float16 and not bfloat16"

usage() {
  sed -n '2,/^set -u/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# ---- helpers shared by the driver and the stages ---------------------------------------------

log() { printf '[gpu_check %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# The one-line detail and (optionally) the status a stage reports to the driver.
detail() {
  printf '%s' "$*" | tr '\t\n' '  ' >"$WORK/detail.$STAGE"
  printf '[detail] %s\n' "$*"
}
status() { printf '%s' "$1" >"$WORK/status.$STAGE"; }

# Show a command, then run it (dry-run: only show it).
gpu_cmd() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '(dry-run) would run:'
    printf ' %q' "$@"
    printf '\n'
    return 0
  fi
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

# the per-file counts that `pytest --collect-only -q` prints (with the -q of addopts), summed
collected_count() { awk -F': ' '/\.py: [0-9]+$/ {n += $2} END {print n + 0}' "$1"; }

# "144 passed, 20 skipped in 31.2s" -> that line (the last pytest summary line in the file)
pytest_summary() {
  grep -E '^[=]* ?[0-9]+ (passed|failed|skipped|error|errors|deselected)' "$1" | tail -n 1 |
    sed -e 's/=//g' -e 's/^ *//' -e 's/ *$//'
}

find_tool() {  # find_tool NAME CANDIDATE... -> the first executable found, or nothing
  local name=$1 c
  shift
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return
  fi
  for c in "$@"; do
    if [[ -x $c ]]; then
      printf '%s\n' "$c"
      return
    fi
  done
}

# ---- stages (each runs as `gpu_check.sh --stage NAME`, its output appended to the log) --------

stage_env() {
  echo "repository: $REPO"
  if git -C "$REPO" rev-parse --short HEAD >/dev/null 2>&1; then
    echo "commit: $(git -C "$REPO" rev-parse HEAD) ($(git -C "$REPO" status --porcelain | wc -l) changed paths)"
  else
    echo "commit: unknown (no .git in this copy)"
  fi
  uname -a
  echo "cpus: $(nproc)"
  echo "nvcc: ${NVCC:-not found}; compute-sanitizer: ${SANITIZER:-not found}; cmake: $(command -v cmake || echo 'not found'); ninja: $(command -v ninja || echo 'not found')"
  echo "wheels from .whl: $WHEELS"
  local smi=""
  if [[ $DRY_RUN == 1 ]]; then
    gpu_cmd nvidia-smi
    gpu_cmd nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader
    gpu_cmd nvcc --version
    gpu_cmd compute-sanitizer --version
  else
    gpu_cmd nvidia-smi
    smi="$(nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total \
      --format=csv,noheader 2>&1 | head -n 1)"
    echo "nvidia-smi query: $smi"
    if [[ -n ${NVCC:-} ]]; then gpu_cmd "$NVCC" --version; else echo "nvcc not found"; fi
    if [[ -n ${SANITIZER:-} ]]; then gpu_cmd "$SANITIZER" --version; fi
  fi
  local nvcc_version=""
  if [[ $DRY_RUN == 0 && -n ${NVCC:-} ]]; then
    nvcc_version=$("$NVCC" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  fi
  # Python side: versions, the GPU as torch sees it, the packages the stages need
  "$PYTHON" - "$DRY_RUN" "$WORK/detail.env" "$smi" "$nvcc_version" <<'PY'
import importlib.metadata as md
import platform
import sys

dry, detail_path, smi, nvcc = sys.argv[1] == "1", sys.argv[2], sys.argv[3], sys.argv[4]
import nuwa  # noqa: E402

print(f"python {sys.version.split()[0]} at {sys.executable} ({platform.machine()})")
print(f"nuwa imported from {nuwa.__file__}")
versions = {}
for name in ("torch", "triton", "numpy", "pytest", "hypothesis", "pytest-xdist", "cupy-cuda13x",
             "scikit-build-core", "onnxruntime"):
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        versions[name] = "missing"
print("packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
import torch  # noqa: E402

line = f"torch {torch.__version__} (CUDA {torch.version.cuda})"
ok = True
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU 0: {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.1f} GiB; {torch.cuda.device_count()} device(s) visible")
    line = f"{p.name} sm_{p.major}{p.minor} {p.total_memory / 2**30:.0f} GiB; {line}"
else:
    print("torch.cuda.is_available() is False")
    line = f"no GPU visible to torch; {line}"
    ok = dry
if smi:
    line += f"; nvidia-smi: {smi}"
line += f"; nvcc {nvcc or ('not run' if dry else 'not found')}; Python {sys.version.split()[0]}"
missing = [k for k in ("pytest", "hypothesis") if versions[k] == "missing"]
if missing:
    line += f"; MISSING {', '.join(missing)} (carry wheels in .whl: bench/README.md)"
    ok = False
if dry:
    line = "dry-run: " + line
with open(detail_path, "w") as f:
    f.write(line)
sys.exit(0 if ok else 1)
PY
}

stage_build() {
  local gen=() t0=$SECONDS
  if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
  local configure=(cmake -S "$REPO" -B "$BUILD_DIR" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH" "-DCMAKE_CUDA_COMPILER=${NVCC:-nvcc}"
    -DNUWA_ENABLE_TENSORRT=OFF -DCMAKE_CUDA_FLAGS=--resource-usage)
  local build=(cmake --build "$BUILD_DIR" -j "$(nproc)")
  if [[ $DRY_RUN == 1 ]]; then
    gpu_cmd "${configure[@]}"
    gpu_cmd "${build[@]}"
    echo "then: NUWA_PLUGINS_LIB=$NUWA_PLUGINS_LIB; build facts through nuwa.plugins.library"
    detail "dry-run: would build sm_$CUDA_ARCH into $BUILD_DIR (cmake + nvcc not run)"
    return 0
  fi
  if [[ -z ${NVCC:-} ]]; then
    detail "nvcc not found (PATH, /usr/local/cuda/bin): cannot build the CUDA kernels"
    return 1
  fi
  gpu_cmd "${configure[@]}" || { detail "cmake configure failed"; return 1; }
  gpu_cmd "${build[@]}" 2>&1 | tee "$WORK/build.out" || { detail "cmake build failed"; return 1; }
  local secs=$((SECONDS - t0))
  # ptxas --resource-usage: kernels that spill to local memory (when the .cu was recompiled)
  local spills="no ptxas report (nothing recompiled)"
  if grep -q 'ptxas info' "$WORK/build.out"; then
    spills="$(grep -cE '[1-9][0-9]* bytes spill (stores|loads)' "$WORK/build.out") ptxas spill line(s)"
  fi
  if command -v cuobjdump >/dev/null 2>&1; then
    gpu_cmd cuobjdump --list-elf "$NUWA_PLUGINS_LIB" || true
  fi
  "$PYTHON" - "$WORK/detail.build" "$secs" "$spills" "$OUT/build_info.txt" <<'PY'
import sys

from nuwa.plugins import library

detail_path, secs, spills, info_path = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
path = library.library_path()
info = library.build_info()
devices = library.cuda_device_count()
print(f"library: {path}\nbuild info: {info}\nCUDA compiled: {library.cuda_compiled()}; "
      f"devices seen by the library: {devices}")
with open(info_path, "w") as f:
    f.write(f"{path}\n{info}\ncuda devices seen by the library: {devices}\n")
ok = library.cuda_compiled() and devices > 0
line = f"{info}; {devices} device(s) seen; built in {secs}s; {spills}"
if not ok:
    line = "NOT usable (no CUDA compiled in, or the library sees no device): " + line
with open(detail_path, "w") as f:
    f.write(line)
sys.exit(0 if ok else 1)
PY
}

stage_tests() {
  local files=()
  mapfile -t files < <(cd "$REPO" && grep -rlE --include='test_*.py' 'pytest\.mark\.gpu' tests | sort)
  if [[ ${#files[@]} == 0 ]]; then
    detail "no test file marked gpu under tests/"
    return 1
  fi
  echo "gpu-marked test files: ${files[*]}"
  cd "$REPO" || return 1
  local pytest=("$PYTHON" -m pytest "${files[@]}" -m gpu -p no:cacheprovider)
  if [[ $DRY_RUN == 1 ]]; then
    gpu_cmd "${pytest[@]}" -rfEs --durations=15
    "${pytest[@]}" --collect-only -q 2>&1 | tee "$WORK/tests.out"
    local rc=$? n
    n=$(collected_count "$WORK/tests.out")
    detail "dry-run: $n gpu test(s) collected from ${files[*]} (not run)"
    [[ $rc == 0 && $n -gt 0 ]]
    return
  fi
  "${pytest[@]}" -rfEs --durations=15 2>&1 | tee "$WORK/tests.out"
  local rc=$? summary
  summary=$(pytest_summary "$WORK/tests.out")
  detail "${files[*]}: ${summary:-no pytest summary line (see gpu_check.log)}"
  if [[ $rc == 0 && $summary != *passed* ]]; then
    detail "no test passed (all skipped?): ${summary}"
    return 1
  fi
  return "$rc"
}

# memcheck / racecheck: compute-sanitizer over the small subset, after a probe that tells
# "the sanitizer cannot run here" (unavailable) from "it found something" (failed)
stage_sanitizer() {
  local tool=$1 extra=()
  [[ $tool == memcheck ]] && extra=(--leak-check no)
  cd "$REPO" || return 1
  local pytest=("$PYTHON" -m pytest "$SANITIZER_NODE" -k "$SANITIZER_K" -p no:cacheprovider -rfE)
  local sanitize=("${SANITIZER:-compute-sanitizer}" --tool "$tool" "${extra[@]}" --print-limit 20
    --error-exitcode 86)
  if [[ $DRY_RUN == 1 ]]; then
    gpu_cmd env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${sanitize[@]}" "${pytest[@]}"
    local listing="$WORK/sanitizer_subset.out" n  # collected once, for both tools
    [[ -s $listing ]] || "${pytest[@]}" --collect-only -q >"$listing" 2>&1
    cat "$listing"
    n=$(collected_count "$listing")
    detail "dry-run: $tool on $n test(s) selected by -k '$SANITIZER_K' (compute-sanitizer not run)"
    [[ $n -gt 0 ]]
    return
  fi
  if [[ -z ${SANITIZER:-} ]]; then
    status unavailable
    detail "compute-sanitizer not found"
    return 0
  fi
  # the probe: one tiny kernel, plain and then under the tool
  local probe="$WORK/sanitizer_probe"
  if [[ ! -x $probe ]]; then
    cat >"$probe.cu" <<'CU'
#include <cstdio>
__global__ void fill(int* p) { p[threadIdx.x] = static_cast<int>(threadIdx.x); }
int main() {
  int* p = nullptr;
  cudaError_t e = cudaMalloc(&p, 32 * sizeof(int));
  if (e != cudaSuccess) { std::printf("probe: cudaMalloc: %s\n", cudaGetErrorString(e)); return 1; }
  fill<<<1, 32>>>(p);
  e = cudaDeviceSynchronize();
  if (e != cudaSuccess) { std::printf("probe: kernel: %s\n", cudaGetErrorString(e)); return 1; }
  cudaFree(p);
  std::printf("probe ok\n");
  return 0;
}
CU
    gpu_cmd "${NVCC:-nvcc}" -arch="sm_$CUDA_ARCH" -o "$probe" "$probe.cu" ||
      { detail "could not compile the sanitizer probe"; return 1; }
  fi
  gpu_cmd "$probe" || { detail "the CUDA probe fails even without the sanitizer"; return 1; }
  local probe_out
  probe_out=$("$SANITIZER" --tool "$tool" --error-exitcode 86 "$probe" 2>&1)
  local probe_rc=$?
  echo "$probe_out"
  if [[ $probe_rc != 0 ]] || ! grep -q 'probe ok' <<<"$probe_out"; then
    status unavailable
    detail "compute-sanitizer $tool refused here: $(grep -m 1 -iE 'error|not supported' <<<"$probe_out" || echo "exit $probe_rc")"
    return 0
  fi
  # no caching allocator: every tensor its own cudaMalloc, so memcheck sees its exact bounds
  gpu_cmd env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${sanitize[@]}" "${pytest[@]}" 2>&1 |
    tee "$WORK/$tool.out"
  local rc=$? summary found
  summary=$(pytest_summary "$WORK/$tool.out")
  found=$(grep -m 1 -E '(ERROR|RACECHECK) SUMMARY' "$WORK/$tool.out" | sed 's/^=* *//')
  detail "${found:-no sanitizer summary line}; pytest: ${summary:-no summary line}"
  if [[ $rc == 86 ]]; then
    detail "compute-sanitizer $tool FOUND ERRORS: ${found}; pytest: ${summary}"
  fi
  return "$rc"
}

stage_decode() {
  cd "$REPO" || return 1
  local json="$OUT/decode_cuda.json" model=()
  [[ -n ${NUWA_GPU_CHECK_MODEL:-} ]] && model=(--model "$NUWA_GPU_CHECK_MODEL")
  if [[ $DRY_RUN == 1 ]]; then
    gpu_cmd "$PYTHON" bench/decode.py --device cuda --batch 1,64 --frames 16 --json "$json" \
      "${model[@]}"
    echo "CPU variant of the same code path:"
    OMP_NUM_THREADS=1 "$PYTHON" bench/decode.py --device cpu --batch 1,2 --frames 2 \
      --json "$json" "${model[@]}" || { detail "bench/decode.py --device cpu failed"; return 1; }
  else
    gpu_cmd "$PYTHON" bench/decode.py --device cuda --batch 1,64 --frames 16 --json "$json" \
      "${model[@]}" || { detail "bench/decode.py --device cuda failed"; return 1; }
  fi
  "$PYTHON" - "$json" "$WORK/detail.decode" "$DRY_RUN" <<'PY'
import json
import sys

r = json.load(open(sys.argv[1]))
rows = "; ".join(
    f"B={x['batch']}: {x['median_step_ms']:.3f} ms/step ({x['tokens_per_s']:.0f} tokens/s)"
    for x in r["rows"]
)
line = f"torch eager fp32 on {r['device_name']} ({r['device']}): {rows}"
if sys.argv[3] == "1":
    line = "dry-run, CPU variant: " + line
open(sys.argv[2], "w").write(line)
PY
}

stage_attention() {
  cd "$REPO" || return 1
  local md="$OUT/attention.md"
  if [[ $DRY_RUN == 1 ]]; then
    gpu_cmd "$PYTHON" bench/attention.py
    # its imports are those the tests stage collected; here only that it compiles
    "$PYTHON" -m py_compile bench/attention.py || { detail "bench/attention.py does not compile"; return 1; }
    printf '(dry-run: bench/attention.py was not run; its results section comes here)\n' >"$md"
    detail "dry-run: bench/attention.py compiles (not run: it needs a GPU)"
    return 0
  fi
  gpu_cmd "$PYTHON" bench/attention.py || { detail "bench/attention.py failed"; return 1; }
  sed -n '/<!-- BEGIN attention -->/,/<!-- END attention -->/p' bench/RESULTS.md >"$md"
  local verdicts
  verdicts=$(grep -E '^- (prefill|decode)' "$md" | sed 's/^- //' | paste -sd ';' -)
  detail "${verdicts:-no verdict lines in the results section}"
}

# ---- the driver -------------------------------------------------------------------------------

render_summary() {  # summary.json + summary.md from $WORK/stages.tsv (and the stage running now)
  "$PYTHON" - "$WORK" "$OUT" "$DRY_RUN" "$BUDGET" "$((SECONDS - START))" "$STARTED" <<'PY'
import json
import os
import sys
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
dry, budget, elapsed, started = sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
stages = []
tsv = work / "stages.tsv"
if tsv.exists():
    for line in tsv.read_text().splitlines():
        name, status, secs, detail = (line.split("\t") + ["", "", ""])[:4]
        stages.append(
            {"stage": name, "status": status, "seconds": int(secs), "detail": detail.strip()}
        )
current = work / "current"
if current.exists():
    name = current.read_text().strip()
    stages.append({"stage": name, "status": "running", "seconds": None,
                   "detail": "started; this summary was written before it finished"})
device = (work / "detail.env").read_text() if (work / "detail.env").exists() else ""
summary = {
    "mode": "dry-run" if dry else "gpu",
    "started_utc": started,
    "elapsed_s": elapsed,
    "budget_s": budget,
    "device": device,
    "stages": stages,
    "files": sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "summary.json"),
}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
lines = [
    f"# bench/gpu_check.sh ({summary['mode']})",
    "",
    f"Started {started} UTC, {elapsed} s of a {budget} s budget. Device: {device or 'n/a'}",
    "",
    "| stage | status | seconds | detail |",
    "|---|---|---:|---|",
]
for s in stages:
    secs = "" if s["seconds"] is None else str(s["seconds"])
    lines.append(f"| {s['stage']} | {s['status']} | {secs} | {s['detail'].replace('|', '/')} |")
(out / "summary.md").write_text("\n".join(lines) + "\n")
PY
}

run_stage() {
  local name=$1 max=${STAGE_MAX[$1]} left limit t0 rc secs st det
  left=$((BUDGET - (SECONDS - START)))
  limit=$((max < left ? max : left))
  if ((limit < 10)); then
    printf '%s\tskipped\t0\t%s\n' "$name" "budget of ${BUDGET}s spent" >>"$WORK/stages.tsv"
    log "stage $name: skipped (budget spent)"
    render_summary
    return
  fi
  log "stage $name (limit ${limit}s) ..."
  printf '%s\n' "$name" >"$WORK/current"
  render_summary
  printf '\n===== stage %s (limit %ss) %s =====\n' "$name" "$limit" "$(date -u +%FT%TZ)" >>"$LOG"
  t0=$SECONDS
  timeout --kill-after=10 "$limit" bash "$SELF" --stage "$name" >>"$LOG" 2>&1
  rc=$?
  secs=$((SECONDS - t0))
  det=$(cat "$WORK/detail.$name" 2>/dev/null || true)
  st=$(cat "$WORK/status.$name" 2>/dev/null || true)
  if [[ $rc == 124 || $rc == 137 ]]; then
    st=timeout
    det="killed at its ${limit}s limit${det:+; $det}"
  elif [[ $rc == 0 ]]; then
    st=${st:-ok}
  else
    st=failed
    det="exit $rc${det:+; $det}"
  fi
  printf '===== stage %s: %s in %ss =====\n' "$name" "$st" "$secs" >>"$LOG"
  printf '%s\t%s\t%s\t%s\n' "$name" "$st" "$secs" "$(tr '\t\n' '  ' <<<"$det")" >>"$WORK/stages.tsv"
  rm -f "$WORK/current"
  render_summary
  log "stage $name: $st (${secs}s) $det"
}

main() {
  DRY_RUN=0
  case "${1:-}" in
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      usage
      return 0
      ;;
    "") ;;
    *)
      echo "gpu_check.sh: unknown argument '$1' (use --dry-run, --help or nothing)" >&2
      return 2
      ;;
  esac
  PYTHON=${PYTHON:-python3}
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "gpu_check.sh: no Python interpreter '$PYTHON' (set PYTHON)" >&2
    return 2
  fi
  BUDGET=${GPU_CHECK_BUDGET_S:-300}
  if ! [[ $BUDGET =~ ^[0-9]+$ ]]; then
    echo "gpu_check.sh: GPU_CHECK_BUDGET_S must be a whole number of seconds, got '$BUDGET'" >&2
    return 2
  fi
  local selected=() name
  read -r -a selected <<<"${GPU_CHECK_STAGES:-${STAGES[*]}}"
  selected=("${selected[@]//,/ }")
  read -r -a selected <<<"${selected[*]}"
  for name in "${selected[@]}"; do
    if [[ -z ${STAGE_MAX[$name]:-} ]]; then
      echo "gpu_check.sh: GPU_CHECK_STAGES names an unknown stage '$name' (stages: ${STAGES[*]})" >&2
      return 2
    fi
  done
  START=$SECONDS
  STARTED=$(date -u +%FT%TZ)
  OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/nuwa-gpu-check-out.XXXXXX")}
  mkdir -p "$OUT" || return 2
  OUT=$(cd "$OUT" && pwd)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/nuwa-gpu-check.XXXXXX") || return 2
  trap 'rm -rf "$WORK"' EXIT
  LOG="$OUT/gpu_check.log"
  : >"$LOG"
  : >"$WORK/stages.tsv"

  # `import nuwa` = this repository, without installing it
  mkdir -p "$WORK/src"
  ln -s "$REPO" "$WORK/src/nuwa"
  PYTHONPATH="$WORK/src${PYTHONPATH:+:$PYTHONPATH}"
  WHEELS="none"
  local wheels=()
  mapfile -t wheels < <(compgen -G "$REPO/.whl/*.whl")
  if ((${#wheels[@]} > 0)); then
    if [[ $DRY_RUN == 1 ]]; then
      WHEELS="${#wheels[@]} in .whl (dry-run: not installed)"
    elif "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" "${wheels[@]}" >>"$LOG" 2>&1; then
      PYTHONPATH="$WORK/site:$PYTHONPATH"
      WHEELS="${#wheels[@]} installed from .whl"
    else
      WHEELS="installing .whl/*.whl FAILED (see gpu_check.log)"
    fi
  fi

  # tools pip put beside the interpreter (cmake, ninja) fill gaps in PATH
  PATH="$PATH:$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")"
  # CUDA tools: PATH, the usual toolkit folders, then pip's CUDA wheels (nvidia/cu13/bin)
  local pip_cuda_bin
  pip_cuda_bin=$("$PYTHON" -c 'import glob, sys
print(next(iter(sorted(d for p in sys.path for d in glob.glob(p + "/nvidia/cu1*/bin"))), ""))')
  NVCC=$(find_tool nvcc /usr/local/cuda/bin/nvcc "$pip_cuda_bin/nvcc")
  SANITIZER=$(find_tool compute-sanitizer "${NVCC:+$(dirname "$NVCC")/compute-sanitizer}" \
    /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
    "$pip_cuda_bin/compute-sanitizer")
  CUDA_ARCH=${NUWA_CUDA_ARCH:-}
  if [[ -z $CUDA_ARCH && $DRY_RUN == 0 ]] && command -v nvidia-smi >/dev/null 2>&1; then
    CUDA_ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null |
      head -n 1 | tr -d ' .')
  fi
  [[ $CUDA_ARCH =~ ^[0-9]+a?$ ]] || CUDA_ARCH=90
  BUILD_DIR=${NUWA_GPU_CHECK_BUILD_DIR:-$REPO/build/gpu-check-sm$CUDA_ARCH}
  NUWA_PLUGINS_LIB="$BUILD_DIR/libnuwa_plugins.so"
  export PATH DRY_RUN OUT WORK LOG PYTHON PYTHONPATH NVCC SANITIZER CUDA_ARCH BUILD_DIR \
    NUWA_PLUGINS_LIB WHEELS
  export PYTHONUNBUFFERED=1

  # placeholders, so the files are there whatever happens to their stages
  local unfinished="its stage did not finish: see summary.md and gpu_check.log"
  printf '(bench/attention.py results not written: %s)\n' "$unfinished" >"$OUT/attention.md"
  printf '{"status": "not written: %s"}\n' "$unfinished" >"$OUT/decode_cuda.json"
  printf '(library not built: %s)\n' "$unfinished" >"$OUT/build_info.txt"

  log "mode $([[ $DRY_RUN == 1 ]] && echo dry-run || echo gpu); results in $OUT; budget ${BUDGET}s; sm_$CUDA_ARCH; build dir $BUILD_DIR"
  for name in "${STAGES[@]}"; do  # in the fixed order, those selected
    if [[ " ${selected[*]} " == *" $name "* ]]; then run_stage "$name"; fi
  done
  # keep the log within what comes back (16 MiB a file): its head and tail
  if (($(stat -c %s "$LOG") > 15 * 1024 * 1024)); then
    { head -c 7M "$LOG"; printf '\n[... middle cut: the log was over 15 MiB ...]\n'; tail -c 7M "$LOG"; } \
      >"$WORK/log.cut" && mv "$WORK/log.cut" "$LOG"
    render_summary
  fi
  echo
  cat "$OUT/summary.md"
  echo
  log "done in $((SECONDS - START))s; files in $OUT: $(find "$OUT" -maxdepth 1 -type f -printf '%f\n' | sort | paste -sd ' ' -)"
  awk -F'\t' '$2 ~ /^(failed|timeout|skipped)$/ {bad = 1} END {exit bad}' "$WORK/stages.tsv"
}

if [[ ${1:-} == --stage ]]; then
  STAGE=$2
  case "$STAGE" in
    env | build | tests | decode | attention) "stage_$STAGE" ;;
    memcheck | racecheck) stage_sanitizer "$STAGE" ;;
    *)
      echo "gpu_check.sh: unknown stage '$STAGE'" >&2
      exit 2
      ;;
  esac
  exit $?
fi
main "$@"
