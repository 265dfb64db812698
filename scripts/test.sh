#!/usr/bin/env bash
# The whole test suite (README command 2): installs what it needs, builds and installs the
# package, builds and runs the Catch2 suite, then runs pytest (GPU tests skip without a GPU).
#   QWEN3MOE_SKIP_ORACLES=1  skip installing torch/transformers/llama-cpp-python (their tests skip)
#   QWEN3MOE_SANITIZE=1      also build and run the Catch2 suite under ASan+UBSan
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Catch2 v2 from Debian, if not present.
if [ ! -f /usr/include/catch2/catch.hpp ]; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq catch2
  fi
fi

# The package itself (compiles the C++ core, and the CUDA backend where nvcc exists).
$PY -m pip install -q ".[test]"
if [ "${QWEN3MOE_SKIP_ORACLES:-0}" != 1 ]; then
  # Oracles: CPU torch (pinned: the CPU build), transformers, llama.cpp through llama-cpp-python.
  $PY -m pip install -q ".[oracle]"
fi

# Catch2 suite (CPU build; the CUDA per-op tests live in the pytest `cuda` suite).
cmake -S . -B build/tests -G Ninja -DCMAKE_BUILD_TYPE=Release -DQWEN3MOE_BUILD_TESTS=ON \
      -DQWEN3MOE_PYTHON=OFF -DQWEN3MOE_CUDA=OFF >/dev/null
cmake --build build/tests
build/tests/qwen3moe_tests

if [ "${QWEN3MOE_SANITIZE:-0}" = 1 ]; then
  cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQWEN3MOE_BUILD_TESTS=ON \
        -DQWEN3MOE_PYTHON=OFF -DQWEN3MOE_CUDA=OFF -DQWEN3MOE_SANITIZE=ON >/dev/null
  cmake --build build/asan
  build/asan/qwen3moe_tests
fi

# pytest runs against the installed package (python/ is not on sys.path).
$PY -m pytest -q tests_py "$@"
