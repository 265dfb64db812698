"""The CUDA kernels' integer decompositions, checked on the CPU (no GPU needed).

The Q8K matvec kernel splits each 256-value activation block over 8 lanes (nibble / high-bit
extraction, __dp4a byte dots, bsums corrections); the f32-activation kernels dequantise one
value at a time. Both are written as host+device functions, and CUDA builds export host runs
of them (``_core.cuda_host_model_*``). These tests compare them bit for bit with the CPU
engine (``qwen3moe.quant``) on every weight type, so a wrong bit offset is caught on any
machine that builds the CUDA code, GPU or not. Skipped in builds without CUDA.
"""
from __future__ import annotations

import numpy as np
import pytest

from qwen3moe import _core, quant

import test_cuda_ops as ops  # helpers only (a star import would also take its cuda marker)

ALL_TYPES, QUANT_TYPES = ops.ALL_TYPES, ops.QUANT_TYPES
_acts, _q8k_bytes, _seed, _weights, assert_bits_equal = (ops._acts, ops._q8k_bytes, ops._seed, ops._weights,
                                                         ops.assert_bits_equal)

pytestmark = pytest.mark.skipif(not _core.built_with_cuda, reason="qwen3moe was built without the CUDA backend")


@pytest.mark.parametrize("typ", QUANT_TYPES)
@pytest.mark.parametrize("n_rows,n", [(3, 256), (5, 768), (4, 2048), (2, 256 * 40)])
@pytest.mark.parametrize("random_blocks", [False, True])
def test_host_model_matvec_q8k(typ, n_rows, n, random_blocks):
    rng = np.random.default_rng(_seed("hm", typ, n_rows, n, random_blocks))
    w = _weights(rng, typ, n_rows, n, random_blocks)
    x = _acts(rng, (3, n))
    x[2, :256] = 0.0
    got = _core.cuda_host_model_matvec_q8k(quant.type_id(typ), w, n, _q8k_bytes(x))
    want = np.asarray(quant.dot_q8k(w, typ, x), dtype=np.float32)
    assert_bits_equal(got, want, f"host model of matvec_q8k {typ} rows={n_rows} n={n} random={random_blocks}")


@pytest.mark.parametrize("typ", QUANT_TYPES)
def test_host_model_matvec_q8k_extreme_activations(typ):
    # Saturated activations (q = +-127 everywhere) stress the integer ranges of the split.
    rng = np.random.default_rng(_seed("hm-ext", typ))
    n = 512
    w = _weights(rng, typ, 4, n, random_blocks=True)
    x = np.where(rng.random((2, n)) < 0.5, -1.0, 1.0).astype(np.float32)
    got = _core.cuda_host_model_matvec_q8k(quant.type_id(typ), w, n, _q8k_bytes(x))
    want = np.asarray(quant.dot_q8k(w, typ, x), dtype=np.float32)
    assert_bits_equal(got, want, f"host model of matvec_q8k {typ} with saturated activations")


@pytest.mark.parametrize("typ", ALL_TYPES)
def test_host_model_dequant(typ):
    rng = np.random.default_rng(_seed("hm-dq", typ))
    n = 1024
    for random_blocks in (False, True):
        raw = _weights(rng, typ, 6, n, random_blocks)
        got = _core.cuda_host_model_dequant(quant.type_id(typ), raw, n)
        want = quant.dequantize(raw, typ, (6, n))
        assert_bits_equal(got, want, f"host model of the device dequantiser {typ} random={random_blocks}")
