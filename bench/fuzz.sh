#!/usr/bin/env bash
# Run one fuzz target for a fixed time:  bench/fuzz.sh TARGET SECONDS [extra libFuzzer flags]
#   gguf       libFuzzer + ASan/UBSan over the GGUF reader (tests_cpp/fuzz/fuzz-gguf.cpp; clang build
#              in build/fuzz, made here when missing)
#   tokenizer  atheris over the Python tokenizer (tests_py/fuzz/fuzz_tokenizer.py)
#   chat       atheris over chat-template rendering (tests_py/fuzz/fuzz_chat_template.py)
#   all        each of them for SECONDS
# The committed seed corpus is read-only input; new corpus entries go to
# $FUZZ_OUT/<target>/corpus and crash inputs to $FUZZ_OUT/<target>/ (default build/fuzz-out).
# Exit status: non-zero when the fuzzer found a crash (its input is named in the output; add it
# to the seed corpus and as a regression test). Python targets import qwen3moe: install the
# package, or run from a developer build (PYTHONPATH=python is set when python/qwen3moe/_core*
# exists).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:?usage: bench/fuzz.sh gguf|tokenizer|chat|all SECONDS [libFuzzer flags]}
SECONDS_=${2:?usage: bench/fuzz.sh TARGET SECONDS}
shift 2
OUTROOT=${FUZZ_OUT:-build/fuzz-out}
PY=${PYTHON:-python3}

run_one() {
  local t=$1 out="$OUTROOT/$1"
  shift
  mkdir -p "$out/corpus"
  case "$t" in
    gguf)
      if [ ! -x build/fuzz/fuzz-gguf ]; then
        cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
              -DQWEN3MOE_FUZZ=ON -DQWEN3MOE_CUDA=OFF -DQWEN3MOE_PYTHON=OFF >/dev/null
      fi
      cmake --build build/fuzz --target fuzz-gguf >/dev/null
      build/fuzz/fuzz-gguf "$out/corpus" tests_cpp/fuzz/corpus-gguf -max_total_time="$SECONDS_" \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$out/" "$@" ;;
    tokenizer|chat)
      local script=tests_py/fuzz/fuzz_tokenizer.py
      [ "$t" = chat ] && script=tests_py/fuzz/fuzz_chat_template.py
      if ls python/qwen3moe/_core*.so >/dev/null 2>&1; then export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"; fi
      $PY "$script" "$out/corpus" "tests_py/fuzz/corpus-$t" -max_total_time="$SECONDS_" \
        -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 -artifact_prefix="$out/" "$@" ;;
    *) echo "unknown fuzz target: $t (gguf, tokenizer, chat, all)" >&2; return 2 ;;
  esac
}

if [ "$TARGET" = all ]; then
  rc=0
  for t in gguf tokenizer chat; do run_one "$t" "$@" || rc=1; done
  exit $rc
fi
run_one "$TARGET" "$@"
