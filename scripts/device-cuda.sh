#!/usr/bin/env bash
# GPU-machine driver (run through the device tool from the repo root): build the package on
# the device, then run the requested steps, writing logs and JSON under $OUT.
#   steps: build  cudatests  fusedtests  optests  synthbg  waitsynth  benchtg  trace  profdec  synth30b  parity30b  bench30b
#          cpubench30b  cpuab  cpuprobe  cpuinfo  cpuprof  cputests  cpptests  profile  prefprof  ncuprefill  ncudecode  vram32k
#          sanitize (compute-sanitizer)  reliab
# Carried wheels for packages missing there (gguf) are expected in .whl/. CUDA_FLAGS (e.g.
# -lineinfo, for Nsight Compute's source view) is added to the CUDA compile flags.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
steps=${*:-build cudatests}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
M30=/tmp/coder30b.gguf
log() { echo "== $(date +%T) $*" | tee -a "$OUT/steps.log"; }
for step in $steps; do
  case $step in
    build)
      log build
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
      nproc
      python3 -m pip install -q --no-build-isolation --no-deps \
        -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90 -Ccmake.define.QWEN3MOE_WERROR=OFF -Cbuild-dir=build/device \
        ${CUDA_FLAGS:+"-Ccmake.define.CMAKE_CUDA_FLAGS=$CUDA_FLAGS"} . 2>&1 | tail -30 \
        || { echo "build failed"; exit 1; }
      python3 -c "import qwen3moe; print('cuda_available', qwen3moe.cuda_available())"
      ;;
    cudatests)
      log cudatests
      (cd tests_py && timeout ${CUDATESTS_TIMEOUT:-900} python3 -m pytest -m cuda -q --maxfail=10 -p no:cacheprovider . 2>&1 | tee "$OUT/cudatests.log" | tail -60)
      ;;
    synthbg)  # the 30B file written in the background (a new session: it outlives this call)
      log synthbg
      [ -f $M30 ] || [ -f /tmp/synth.pid ] || { setsid nohup python3 -m qwen3moe synth $M30.part --preset coder30b --data random -q \
        > /tmp/synth.log 2>&1 < /dev/null && mv $M30.part $M30 & echo $! > /tmp/synth.pid; }
      ;;
    waitsynth)
      log waitsynth
      for i in $(seq 1 300); do [ -f $M30 ] && break; sleep 2; done
      ls -la $M30 || { cat /tmp/synth.log; exit 1; }
      sync  # the file's writeback competes with the benchmarks for the memory bus and the cores
      ;;
    fusedtests)  # the fused decode against the CPU (the decode kernels' falsifiers)
      log fusedtests
      (cd tests_py && timeout ${FUSED_TIMEOUT:-400} python3 -m pytest -m cuda -q --maxfail=5 -p no:cacheprovider \
        -k "fused or decode or lm_head or memory or oom" test_parity_cuda.py 2>&1 | tee "$OUT/fusedtests.log" | tail -40)
      ;;
    benchtg)  # decode only, depth 0 and 4096
      log benchtg
      python3 -m qwen3moe bench -m $M30 --device cuda -p 0 -n 128 --depth ${TG_DEPTHS:-0,4096} -r 3 --json > "$OUT/bench-tg.json" 2> "$OUT/bench-tg.err"
      python3 -c "import json,sys; [print(r['n_prompt'], r['n_gen'], r['n_depth'], round(r['avg_ts'],1), round(r['stddev_ts'],1), r.get('median_ts')) for r in json.load(open(sys.argv[1]))]" "$OUT/bench-tg.json"
      tail -3 "$OUT/bench-tg.err"
      ;;
    optests)  # the op-level CUDA tests (OPTESTS_K narrows them, e.g. OPTESTS_K=router)
      log optests
      (cd tests_py && timeout 300 python3 -m pytest -m cuda -q -p no:cacheprovider ${OPTESTS_K:+-k "$OPTESTS_K"} \
        test_cuda_ops.py 2>&1 | tee "$OUT/optests.log" | tail -15)
      ;;
    cpuab)  # the CPU bench (pp64, tg32, 16 threads) with the defaults, then once per CPU_AB entry (VAR=value[,VAR=value])
      log cpuab
      for ab in default ${CPU_AB:-}; do
        (if [ "$ab" != default ]; then for kv in ${ab//,/ }; do export "$kv"; done; fi
         python3 -m qwen3moe bench -m $M30 --device cpu -t 16 -p 64 -n 32 -r ${CPU_REPS:-3} --json > "$OUT/bench-cpu-${ab//[^A-Za-z0-9]/_}.json" 2> /dev/null
         python3 -c "import json,sys; [print(sys.argv[2], r['n_prompt'], r['n_gen'], round(r['avg_ts'],2), round(r['stddev_ts'],2), r['peak_rss_bytes']) for r in json.load(open(sys.argv[1]))]" "$OUT/bench-cpu-${ab//[^A-Za-z0-9]/_}.json" "$ab")
      done
      ;;
    trace)  # the decode step's phase trace at depth 0 (bench/dec_trace.py)
      log trace
      python3 bench/dec_trace.py $M30 0 8 --json "$OUT/trace-d0.json" 2>&1 | grep -v "weights ->" | tail -45
      ;;
    profdec)  # per-kernel decode times without PDL overlap (32 steps at depth 0)
      log profdec
      QWEN3MOE_CUDA_PDL=0 python3 bench/cuda_profile.py $M30 0 0 32 2>&1 | tee "$OUT/profdec.log" | grep -v "^-" | head -24
      ;;
    synth30b)
      log synth30b
      [ -f $M30 ] || /usr/bin/time -v python3 -m qwen3moe synth $M30 --preset coder30b --data random -q 2>&1 | grep -E "Elapsed|Maximum resident|coder30b"
      ;;
    parity30b)
      log parity30b
      # PARITY_K narrows the selection (e.g. PARITY_K=PARITY_MODEL: the 30B cases only).
      (cd tests_py && QWEN3MOE_PARITY_MODEL=$M30 timeout 1500 python3 -m pytest -m cuda -q -x -s -p no:cacheprovider \
        ${PARITY_K:+-k "$PARITY_K"} test_parity_cuda.py 2>&1 | tee "$OUT/parity30b.log" | tail -60)
      ;;
    bench30b)
      log bench30b
      python3 -m qwen3moe bench -m $M30 --device cuda -p 512 -n 128 --depth 0,4096 -r 5 --json > "$OUT/bench-cuda.json" 2> "$OUT/bench-cuda.err"
      python3 -c "import json,sys; [print(r['n_prompt'], r['n_gen'], r['n_depth'], round(r['avg_ts'],1), round(r['stddev_ts'],1), r['peak_vram_bytes']) for r in json.load(open(sys.argv[1]))]" "$OUT/bench-cuda.json"
      tail -5 "$OUT/bench-cuda.err"
      ;;
    cpuprobe)  # the CPU itself: topology, read bandwidth by threads, one-core dot timing alone and on all cores at once
      log cpuprobe
      lscpu | tee "$OUT/lscpu.txt" | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA|MHz|L1d|L2|L3" ; numactl -H 2>/dev/null | head -4
      g++ -O2 -march=native -std=c++17 bench/mem_bw.cpp -lpthread -o /tmp/mem_bw && /tmp/mem_bw 8 1,2,4,8,12,16 | tee "$OUT/mem_bw.json"
      g++ -O2 -std=c++17 -Icpp bench/dot_bench.cpp build/device/libqwen3moe_cpu.a -lpthread -o /tmp/dot_bench \
        && { /tmp/dot_bench auto 5 > "$OUT/dot1.txt"; grep -E "tokens +(1|4|64) " "$OUT/dot1.txt";
             for c in $(seq 0 $(( $(nproc) - 1 ))); do taskset -c $c /tmp/dot_bench auto 5 > "$OUT/dotall-$c.txt" & done; wait
             echo "-- all cores at once (core 0, core $(( $(nproc) - 1 )))"; grep -E "tokens +(1|4|64) " "$OUT/dotall-0.txt"; grep -E "tokens +64 " "$OUT/dotall-$(( $(nproc) - 1 )).txt"; }
      ;;
    cpuinfo)  # ISA flags, memory limits, and whether AMX int8 tiles are usable (bench/amx_probe.cpp)
      log cpuinfo
      grep -o -w -E "avx512[a-z_0-9]*|amx[a-z_0-9]*|avx_vnni" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
      free -g; cat /sys/fs/cgroup/memory.max 2>/dev/null; g++ --version | head -1
      g++ -O2 -std=c++17 -mamx-tile -mamx-int8 -mavx512f bench/amx_probe.cpp -o /tmp/amx_probe && /tmp/amx_probe | tee "$OUT/amx.txt"
      ;;
    cpptests)  # the Catch2 suite on this machine's CPU (AVX-512, AMX); Catch2's headers carried in .catch2/
      log cpptests
      cmake -S . -B build/dtests -G "$(command -v ninja >/dev/null && echo Ninja || echo 'Unix Makefiles')" -DCMAKE_BUILD_TYPE=Release -DQWEN3MOE_BUILD_TESTS=ON -DQWEN3MOE_PYTHON=OFF \
            -DQWEN3MOE_CUDA=OFF -DQWEN3MOE_WERROR=OFF -DCMAKE_PREFIX_PATH="$PWD/.catch2" > "$OUT/cpptests-cmake.log" 2>&1 \
        && cmake --build build/dtests --parallel 16 > "$OUT/cpptests-build.log" 2>&1 && build/dtests/qwen3moe_tests 2>&1 | tail -4 \
        || { tail -20 "$OUT/cpptests-cmake.log" "$OUT/cpptests-build.log"; }
      ;;
    cputests)  # the CPU engine's exactness suites on this machine's CPU (AVX-512, AMX tiles where present)
      log cputests
      (cd tests_py && timeout ${CPUTESTS_TIMEOUT:-600} python3 -m pytest -q -p no:cacheprovider ${CPUTESTS:-test_quant.py test_model_cpu.py} 2>&1 | tee "$OUT/cputests.log" | tail -15)
      ;;
    tilesbench)  # one-core AMX tile kernel timing (bench/dot_bench.cpp tiles=1) against the AVX-512 dots
      log tilesbench
      L=build/device/libqwen3moe_cpu.a
      g++ -O2 -std=c++17 -Icpp bench/dot_bench.cpp $L -lpthread -o /tmp/db && { /tmp/db auto 3 1 0 | grep -E "tokens +(8|16|64) " | sed 's/^/avx512 /';
        /tmp/db auto 3 1 1 | grep -E "tokens +(4|8|16|64) " | sed 's/^/tiles /'; }
      for d in ${TILES_DIAG:-}; do
        g++ -O3 -std=c++17 -Icpp -ffp-contract=off -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mamx-tile -mamx-int8 -DDIAG=$d -c bench/tiles_diag_tmp.cpp -o /tmp/td$d.o \
          && g++ -O2 -std=c++17 -Icpp bench/dot_bench.cpp /tmp/td$d.o $L -lpthread -o /tmp/dbt$d && /tmp/dbt$d auto 3 1 1 | grep -E "tokens +(8|16|64) " | sed "s/^/tiles-diag$d /"
      done
      ;;
    cpuprof)  # the engine's op profile on 16 threads (bench/cpu_profile.py), CPU_PROF_ARGS appended
      log cpuprof
      python3 bench/cpu_profile.py $M30 --threads 16 ${CPU_PROF_ARGS:---no-variants} --json "$OUT/cpu-profile.json" > "$OUT/cpu-profile.txt" 2>&1
      grep -v -E "^ +experts\.(group|swiglu|combine)|^(embed|final_norm|lm_quantize|ffn_norm|ffn_quantize|attn_quantize|o_quantize) " "$OUT/cpu-profile.txt"
      ;;
    cpubench30b)
      log cpubench30b
      python3 -m qwen3moe bench -m $M30 --device cpu -t 16 -p 64 -n 32 -r 3 --json > "$OUT/bench-cpu.json" 2> "$OUT/bench-cpu.err"
      python3 -c "import json,sys; [print(r['n_prompt'], r['n_gen'], r['n_depth'], round(r['avg_ts'],2), round(r['stddev_ts'],2), r['peak_rss_bytes']) for r in json.load(open(sys.argv[1]))]" "$OUT/bench-cpu.json"
      tail -5 "$OUT/bench-cpu.err"
      ;;
    profile)
      log profile
      for spec in "0 0 32" "0 4096 32" "512 0 0"; do
        echo "-- cuda_profile $spec" | tee -a "$OUT/profile.log"
        python3 bench/cuda_profile.py $M30 $spec 2>&1 | tee -a "$OUT/profile.log" | grep -v "^-" | head -30
      done
      ;;
    prefprof)  # prefill only: the attention kernels alone, then pp512's kernels at depth 0 and 4096
      log prefprof
      python3 bench/attn_bench.py 512 0 4096 2>&1 | tee "$OUT/attn_bench.log"
      for spec in "512 0 0" "512 4096 0"; do
        echo "-- cuda_profile $spec" | tee -a "$OUT/prefprof.log"
        python3 bench/cuda_profile.py $M30 $spec 2>&1 | tee -a "$OUT/prefprof.log" | grep -v "^-" | head -30
      done
      ;;
    ncuprefill)  # Nsight Compute on ~one layer of a pp512 prefill (NCU_SKIP launches skipped; NCU_EXTRA: more ncu args)
      log ncuprefill
      timeout 400 ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats \
        --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
        --section ComputeWorkloadAnalysis --section InstructionStats ${NCU_EXTRA:-} \
        -k regex:"${NCU_K:-attn_tiled|matvec_mma_wide|matvec_tiled}" --launch-skip ${NCU_SKIP:-30} \
        --launch-count ${NCU_COUNT:-8} python3 bench/ncu_prefill.py $M30 512 0 > "$OUT/ncu-prefill.txt" 2>&1
      grep -E "attn_tiled|matvec_|Duration|Registers Per|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|No Eligible|stalled" "$OUT/ncu-prefill.txt" | head -${NCU_LINES:-120}
      ;;
    ncudecode)  # Nsight Compute stall reasons (PC samples, one pass) of the fused decode kernels, natural cache state
      log ncudecode
      timeout 500 ncu --clock-control none --cache-control none --replay-mode application \
        --metrics "regex:smsp__pcsamp_warps_issue_stalled_[a-z_]+$,smsp__inst_executed.sum,gpu__time_duration.sum" \
        -k regex:"${NCU_DK:-dec_}" --launch-skip ${NCU_DSKIP:-62} --launch-count ${NCU_DCOUNT:-6} \
        python3 bench/ncu_decode.py $M30 > "$OUT/ncu-decode.txt" 2>&1
      python3 bench/ncu_stalls.py "$OUT/ncu-decode.txt" | tee "$OUT/ncu-decode-summary.txt"
      ;;
    vram32k)
      log vram32k
      python3 bench/vram_probe.py $M30 32768 2>&1 | tee "$OUT/vram32k.log"
      ;;
    sanitize)
      log sanitize
      bash scripts/compute-sanitizer.sh 2>&1 | tee "$OUT/sanitize.log" | tail -40
      ;;
    reliab)
      log reliab
      (cd tests_py && timeout 900 python3 -m pytest -q -p no:cacheprovider test_reliability.py 2>&1 | tee "$OUT/reliab.log" | tail -30)
      ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
log done
