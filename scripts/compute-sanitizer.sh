#!/usr/bin/env bash
# NVIDIA compute-sanitizer over the CUDA code (run on the GPU machine, from the repo root, after
# the package is built/installed there, e.g. `bash scripts/device-cuda.sh build sanitize`):
#   memcheck  (out-of-bounds / misaligned device accesses, API errors, device-memory leaks),
#   racecheck (shared-memory hazards), initcheck (reads of uninitialised device memory),
#   synccheck (invalid __syncthreads / warp-sync use)
# over two workloads: the per-kernel CUDA tests (`pytest -m cuda -k ops`: every kernel against its
# CPU twin) and an engine run (tiny synthetic model: prefill, decode, generate, captures, in q8 and
# f32 modes). Usage:
#   bash scripts/compute-sanitizer.sh [TOOL ...]     (default: memcheck racecheck initcheck synccheck)
# Results: $OUT/sanitizer-<tool>-<workload>.log (the sanitizer's report), .out (the program's
# output), and $OUT/sanitizer-summary.txt (one line per run: tool, workload, exit status, error
# count). Exit status 0 only when every run finished with no sanitizer error.
#   SANITIZER_PYTEST_K   pytest -k expression of the ops workload (default "ops")
#   SANITIZER_TIMEOUT    seconds per run (default 540: one tool per device call fits its 10 min)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
tools=${*:-memcheck racecheck initcheck synccheck}
CS=$(command -v compute-sanitizer || true)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [ -z "$CS" ] && [ -x "$c" ] && CS=$c
done
if [ -z "$CS" ]; then echo "compute-sanitizer not found (CUDA toolkit)"; exit 2; fi
"$CS" --version > "$OUT/sanitizer-version.txt" 2>&1
"$CS" --help > "$OUT/sanitizer-help.txt" 2>&1
python3 -c "import qwen3moe, sys; sys.exit(0 if qwen3moe.cuda_available() else 1)" \
  || { echo "qwen3moe has no usable CUDA backend here"; exit 2; }

ENGINE=$(mktemp /tmp/sanitize-engine-XXXX.py)
cat > "$ENGINE" <<'PY'
# Engine workload: the CUDA backend end to end on a tiny synthetic model, compared with the CPU.
import tempfile, numpy as np, qwen3moe
from qwen3moe.testing import write_model
p = write_model(tempfile.mkdtemp() + "/tiny.gguf", "tiny", seed=5, types="Q4_K_M")
prompt = [3, 17, 42, 9, 100, 7, 64, 21, 5, 88, 13, 250]
for act in ("q8", "f32"):
    with qwen3moe.load(p, device="cuda", n_ctx=128, activations=act) as g, \
         qwen3moe.load(p, n_ctx=128, activations=act, threads=2) as c:
        a = g.forward(prompt, capture="all", logits="all")
        b = c.forward(prompt, capture="all", logits="all")
        assert np.array_equal(a.logits.view(np.uint32), b.logits.view(np.uint32)), act
        for t in (5, 6, 7):
            assert np.array_equal(g.decode(t).logits.view(np.uint32), c.decode(t).logits.view(np.uint32))
        assert g.generate(prompt, max_tokens=8) == c.generate(prompt, max_tokens=8)
print("engine workload ok")
PY

declare -A opts=(
  [memcheck]="--tool memcheck --leak-check full --check-api-memory-access yes"
  [racecheck]="--tool racecheck --racecheck-report all"
  [initcheck]="--tool initcheck"
  [synccheck]="--tool synccheck"
)
K=${SANITIZER_PYTEST_K:-ops}
status=0
: > "$OUT/sanitizer-summary.txt"
for tool in $tools; do
  [ -n "${opts[$tool]:-}" ] || { echo "unknown tool $tool"; exit 2; }
  for wl in ops engine; do
    log="$OUT/sanitizer-$tool-$wl.log"
    if [ $wl = ops ]; then
      cmd=(python3 -m pytest -q -x -p no:cacheprovider -m cuda -k "$K" tests_py/test_cuda_ops.py)
    else
      cmd=(python3 "$ENGINE")
    fi
    echo "== $(date +%T) $tool $wl"
    # --error-exitcode: a sanitizer finding fails the run even when the program itself passes.
    timeout "${SANITIZER_TIMEOUT:-540}" "$CS" ${opts[$tool]} --error-exitcode 86 --print-limit 200 --log-file "$log" \
      "${cmd[@]}" > "$OUT/sanitizer-$tool-$wl.out" 2>&1
    rc=$?
    errs=$(grep -Eo "ERROR SUMMARY: [0-9]+ error" "$log" | grep -Eo "[0-9]+" | tail -1)
    hazards=$(grep -Eo "RACECHECK SUMMARY: [0-9]+ hazard" "$log" | grep -Eo "[0-9]+" | tail -1)
    line="$tool $wl rc=$rc errors=${errs:-?}${hazards:+ hazards=$hazards}"
    echo "$line" | tee -a "$OUT/sanitizer-summary.txt"
    tail -3 "$OUT/sanitizer-$tool-$wl.out"
    [ $rc = 0 ] || status=1
  done
done
rm -f "$ENGINE"
exit $status
