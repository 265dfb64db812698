"""Prefill matvec shapes of the 30B model through ``_core.cuda_ops_matvec_q8k``, for timing the
int8 tensor-core kernel (cuda/matvec-mma.cu) against the dp4a tiled kernel under a profiler.

Expert launches with ``group=True`` take the tensor-core path, ``group=False`` (ids without a
grouping) the dp4a tiled kernel; both are checked to give the same bits. Dense launches always
take the tensor-core path. Run under ``ncu`` or ``nsys`` to read the kernel times, e.g.
``ncu --metrics gpu__time_duration.sum python3 bench/matvec_mma_bench.py``.
"""
from __future__ import annotations

import sys

import numpy as np

from qwen3moe import _core, quant

sys.path.insert(0, "tests_py")
from test_cuda_ops import _q8k_bytes, _weights  # noqa: E402


def main() -> None:
    """Runs the expert (gate/up, down) and dense (q, o) shapes once each and compares the bits."""
    rng = np.random.default_rng(0)
    n_tok, k, n_exp = 512, 8, 128
    logits = rng.standard_normal((n_tok, n_exp)) + np.linspace(0, 2, n_exp)  # uneven routing
    ids = np.argsort(-logits, axis=1)[:, :k].astype(np.int32)
    for typ, n_rows, n in (("Q4_K", 768, 2048), ("Q6_K", 2048, 768), ("Q4_K", 2048, 768)):
        w = _weights(rng, typ, n_rows * n_exp, n).reshape(n_exp, n_rows, -1)
        aps = n == 768
        x = rng.standard_normal((n_tok * k if aps else n_tok, n)).astype(np.float32)
        xq = _q8k_bytes(x)
        got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, xq, ids, aps, True)
        old = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, xq, ids, aps, False)
        same = np.array_equal(got.view(np.uint32), old.view(np.uint32))
        print(f"experts {typ} {n_exp}x{n_rows}x{n} slots={n_tok * k}: mma == dp4a bits: {same}", flush=True)
    for typ, n_rows, n in (("Q4_K", 4096, 2048), ("Q6_K", 512, 2048), ("Q4_K", 2048, 4096)):
        w = _weights(rng, typ, n_rows, n)
        x = rng.standard_normal((n_tok, n)).astype(np.float32)
        got = _core.cuda_ops_matvec_q8k(quant.type_id(typ), w, n, _q8k_bytes(x))
        want = np.asarray(quant.dot_q8k(w, typ, x), dtype=np.float32)
        print(f"dense {typ} {n_rows}x{n} tokens={n_tok}: == CPU bits: "
              f"{np.array_equal(got.view(np.uint32), want.view(np.uint32))}", flush=True)


if __name__ == "__main__":
    main()
